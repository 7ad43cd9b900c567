#!/usr/bin/env bash
# Runs the whole test suite: unit tests, end-to-end tests against the real binary, kill -9
# crash tests, the sqllogictest corpus against Kestrel, and a check that the corpus's expected
# results still match real PostgreSQL 15. Every step runs even if an earlier one failed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test
# Everything but the corpus, then the corpus with its output shown (per-file counts and the
# pass rate against PostgreSQL-verified expectations).
status=0
cargo test --workspace --no-fail-fast -- --skip sqllogictest_files || status=$?
cargo test --workspace --test slt -- --nocapture || status=$?
./scripts/slt-oracle.sh --check || status=$?
exit $status
