#!/usr/bin/env bash
# Runs tests/slt/*.slt against a throw-away PostgreSQL 15.
#   scripts/slt-oracle.sh           rewrite the expected results from PostgreSQL
#   scripts/slt-oracle.sh --check   only check that the files match PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL 15 not found in $PGBIN (scripts/deps.sh --test installs it)"; exit 1; }
tmp=$(mktemp -d /tmp/kestrel-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" -eq 0 ]; then chown postgres "$tmp"; as_pg=(runuser -u postgres --); fi
cleanup() { "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
"${as_pg[@]}" "$PGBIN/initdb" -D "$tmp/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$tmp/data" -o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c TimeZone=UTC" -l "$tmp/log" -w start >/dev/null
export KESTREL_SLT_TARGET="host=127.0.0.1 port=$port user=postgres"
if [ "${1:-}" = "--check" ]; then export KESTREL_SLT_COMPLETE=0; else export KESTREL_SLT_COMPLETE=1; fi
cargo test -p kestrel-server --test slt -- --nocapture
