#!/usr/bin/env bash
# pgbench as issue 3 asks for it, against a release build: `pgbench -i -s $SCALE` (default
# init steps), TPC-B `-c 8 -j 2 -T $SECS --max-tries=20`, the balance sums, then `-S`.
# Usage: cargo build --release -p kestrel-server && SCALE=10 SECS=60 scripts/pgbench-check.sh
set -u
BIN=${KESTREL_BIN:-${CARGO_TARGET_DIR:-target}/release/kestrel}
PGB=/usr/lib/postgresql/15/bin/pgbench
PSQL=/usr/lib/postgresql/15/bin/psql
store=$(mktemp -d /tmp/kpgb.XXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$BIN start --store "$store" --listen-addr 127.0.0.1:$port --http-addr 127.0.0.1:$hport > /tmp/kpgb.log 2>&1 &
kpid=$!
trap 'kill -9 $kpid; rm -rf "$store"' EXIT
for i in $(seq 50); do $PSQL -h 127.0.0.1 -p $port -U root -d defaultdb -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
C="-h 127.0.0.1 -p $port -U root"
echo "== init -s ${SCALE:-10}"; /usr/bin/time -v $PGB $C -i -s ${SCALE:-10} defaultdb 2>&1 | egrep -v "^\s+(Page|Minor|Major|Vol|Invol|Swaps|File|Socket|Signals|Average|Exit|Percent)" | tail -25
echo "== TPC-B -c 8 -j 2 -T ${SECS:-60} --max-tries=20"; $PGB $C -c 8 -j 2 -T ${SECS:-60} --max-tries=20 defaultdb 2>&1 | tail -25
echo "== sums"; $PSQL $C -d defaultdb -Atc "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(delta) FROM pgbench_history), (SELECT count(*) FROM pgbench_history), (SELECT count(*) FROM pgbench_accounts)"
echo "== select-only -S -c 8 -j 2 -T ${SECS:-60}"; $PGB $C -S -c 8 -j 2 -T ${SECS:-60} defaultdb 2>&1 | tail -15
echo "== server RSS"; grep VmHWM /proc/$kpid/status
