#!/usr/bin/env bash
# Runs the whole test suite: unit tests, end-to-end tests against the real binary, kill -9
# crash tests, the sqllogictest corpus against Kestrel, and a check that the corpus's expected
# results still match real PostgreSQL 15.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test
cargo test --workspace --no-fail-fast
./scripts/slt-oracle.sh --check
