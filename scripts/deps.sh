#!/usr/bin/env bash
# Installs the system packages Kestrel's build and tests need (Debian), if missing.
#   libclang-dev   RocksDB's Rust bindings (bindgen)
#   postgresql-15  the oracle the .slt files are checked against (tests only)
set -euo pipefail
want=(libclang-dev)
[ "${1:-}" = "--test" ] && want+=(postgresql-15 postgresql-client-15)
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
