#!/usr/bin/env bash
# Builds Kestrel (release) and runs the side-by-side benchmark against PostgreSQL 15.
#   bench/run.sh            full run (scale 10, 30 s per run, 3 pairs, COPY of 1M rows)
#   bench/run.sh --quick    under 5 minutes once built: proves the harness works
# Other options: see `python3 bench/run.py --help`. Results: bench/results/<date>.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test
cargo build --release -p kestrel-server
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
exec python3 bench/run.py --binary "$CARGO_TARGET_DIR/release/kestrel" "$@"
