#!/usr/bin/env bash
# Installs the system packages Kestrel's build and tests need (Debian), if missing.
#   libclang-dev   RocksDB's Rust bindings (bindgen)
#   postgresql-15  the oracle the .slt files are checked against (tests only)
#   python3-psycopg, npm + tests/clients/node  real client libraries (tests only)
#   python3-venv + tests/clients/.venv   SQLAlchemy 2 (pinned, from PyPI) over Debian's psycopg
#   libpostgresql-jdbc-java              the JDBC driver (java 17 is on the machine)
set -euo pipefail
cd "$(dirname "$0")/.."
want=(libclang-dev)
[ "${1:-}" = "--test" ] && want+=(postgresql-15 postgresql-client-15 python3-psycopg python3-venv libpostgresql-jdbc-java)
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
if [ "${1:-}" = "--test" ] && [ ! -x tests/clients/.venv/bin/python ]; then
  echo "installing SQLAlchemy into tests/clients/.venv"
  /usr/bin/python3 -m venv --system-site-packages tests/clients/.venv
  tests/clients/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi
