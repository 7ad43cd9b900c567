#!/usr/bin/env bash
# Installs the system packages Kestrel's build and tests need (Debian), if missing.
#   libclang-dev   RocksDB's Rust bindings (bindgen)
#   postgresql-15  the oracle the .slt files are checked against (tests only)
#   python3-psycopg, npm + tests/clients/node  real client libraries (tests only)
set -euo pipefail
cd "$(dirname "$0")/.."
want=(libclang-dev)
[ "${1:-}" = "--test" ] && want+=(postgresql-15 postgresql-client-15 python3-psycopg)
[ "${1:-}" = "--test" ] && ! command -v npm >/dev/null && want+=(npm)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = "--test" ] && [ ! -d tests/clients/node/node_modules/pg ]; then
  echo "installing node-postgres (npm ci)"
  (cd tests/clients/node && npm ci --silent --no-audit --no-fund)
fi
