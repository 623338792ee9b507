#!/usr/bin/env bash
# CPU per request of one kvd member's core process and of its front-ends (issue 16's scaling model).
# Usage (after `npm run build`): bash bench/frontends-cpu.sh [FRONTENDS=2] [REQUESTS=30000] [workloads: put range-s range-l]
# Starts one member with `--frontends FRONTENDS` on free loopback ports and a temporary data dir,
# runs etcd's benchmark (--conns=8 --clients=64) for each workload, and prints req/s and the CPU
# (user + system, from /proc) the core and its front-end children spent per request. Stops the
# member it started (by PID) when done or interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
FRONTENDS=${1:-2}
REQUESTS=${2:-30000}
shift $(( $# > 2 ? 2 : $# ))
WORKLOADS=${*:-put range-s range-l}
TOOL=${KVD_BENCH_TOOL:-../shared/tools/etcd-benchmark}
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
CLIENT=$(free_port); PEER=$(free_port)
DIR=$(mktemp -d)
node dist/cli/kvd.js --name f1 --data-dir "$DIR/data" --listen-client-urls "http://127.0.0.1:$CLIENT" --advertise-client-urls "http://127.0.0.1:$CLIENT" \
  --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" --initial-cluster "f1=http://127.0.0.1:$PEER" \
  --log-level warn --frontends "$FRONTENDS" > "$DIR/log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$CLIENT" put foo bar >/dev/null 2>&1 && break; sleep 0.2; done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
children_ticks() { local sum=0; for child in $(pgrep -P "$PID" || true); do sum=$((sum + $(ticks "$child"))); done; echo "$sum"; }
HZ=$(getconf CLK_TCK)
for workload in $WORKLOADS; do
  case $workload in
    put) args=(put --key-size=8 --val-size=256 --sequential-keys --key-space-size=100000 "--total=$REQUESTS") ;;
    range-s) args=(range foo --consistency=s "--total=$REQUESTS") ;;
    range-l) args=(range foo --consistency=l "--total=$REQUESTS") ;;
    *) echo "unknown workload $workload" >&2; exit 2 ;;
  esac
  core0=$(ticks "$PID"); fe0=$(children_ticks)
  rate=$("$TOOL" --endpoints="127.0.0.1:$CLIENT" --conns=8 --clients=64 "${args[@]}" 2>/dev/null | awk '/Requests\/sec/ {print $2}')
  core1=$(ticks "$PID"); fe1=$(children_ticks)
  echo "$workload frontends=$FRONTENDS req/s=$rate core_us/req=$(( (core1 - core0) * 1000000 / HZ / REQUESTS )) frontends_us/req=$(( (fe1 - fe0) * 1000000 / HZ / REQUESTS ))"
done
