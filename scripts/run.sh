#!/usr/bin/env bash
# Builds Kestrel (release) and starts a durable single-node database:
# SQL on 127.0.0.1:5433, HTTP on 127.0.0.1:8433, data in ./kestrel-data. Extra arguments go to
# `kestrel start` (see `kestrel start --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release -p kestrel-server
exec "${CARGO_TARGET_DIR:-target}/release/kestrel" start "$@"
