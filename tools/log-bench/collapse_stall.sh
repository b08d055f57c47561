#!/usr/bin/env bash
# Single-client write latency and node memory during a collapse of the master, against the
# same workload without a collapse, on a 3-node cluster on 127.0.0.1.
#
#   tools/log-bench/collapse_stall.sh BIN DIR [KEYS] [PORT_BASE]
#
# BIN: a release rarakoon-bin; DIR: a scratch directory (wiped first); KEYS: keys prefilled
# with `rarakoon-bin bench --workload get` (16 B keys, 100 B values; default 3000000).
# Automatic collapses are off (a huge threshold); the script asks the master for one.
# Prints: each node's VmRSS after the prefill (and per key), a steady 12 s single-client set
# run (p50, p99, max), the same run with `admin collapse` of the master 3 s in (and how long
# the collapse took), and each node's VmRSS peak during that run (sampled every 0.1 s).
set -euo pipefail
BIN=$(realpath "$1"); DIR=$2; KEYS=${3:-3000000}; BASE=${4:-4800}
rm -rf "$DIR"; mkdir -p "$DIR"; DIR=$(realpath "$DIR")
CFG=$DIR/cluster.toml
{
  printf '[cluster]\nid = "collapse-bench"\nmaster_mode = "elected"\nlease_period_secs = 3.0\n'
  for i in 0 1 2; do
    printf '\n[[nodes]]\nname = "node_%d"\naddresses = ["127.0.0.1:%d"]\nclient_port = %d\n' \
      "$i" $((BASE + 10 + i)) $((BASE + i))
    printf 'home_dir = "node_%d"\ncollapse_threshold_entries = 100000000\nfsync = true\n' "$i"
  done
} > "$CFG"
declare -A PID
for i in 0 1 2; do
  "$BIN" --config "$CFG" --node "node_$i" >> "$DIR/node_$i.log" 2>&1 &
  PID[$i]=$!
done
trap 'for p in "${PID[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait' EXIT
rss() { awk '/^VmRSS/{print $2 * 1024}' "/proc/$1/status"; }
lat() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); l=d["latency_us"]; print("%8.0f ops/s  p50 %.3f ms  p99 %.3f ms  max %.1f ms  errors %d" % (d["ops_per_sec"], l["p50"]/1e3, l["p99"]/1e3, l["max"]/1e3, d["errors"]))' "$1"; }
"$BIN" bench --cluster-config "$CFG" --workload get --keys "$KEYS" --warmup 0s --duration 1s \
  --json > "$DIR/prefill.json"
sleep 2
echo "uptime: $(uptime)"
for i in 0 1 2; do
  r=$(rss "${PID[$i]}"); echo "node_$i VmRSS after prefill: $r B, $((r / KEYS)) B/key"
done
BENCH=(bench --cluster-config "$CFG" --workload set --clients 1 --keys 1000 --warmup 1s --duration 12s --json)
"$BIN" "${BENCH[@]}" > "$DIR/steady.json"
echo "steady:          $(lat "$DIR/steady.json")"
MASTER=$("$BIN" admin --cluster-config "$CFG" who-master | awk '{print $2}')
declare -A PEAK BEFORE
for i in 0 1 2; do BEFORE[$i]=$(rss "${PID[$i]}"); PEAK[$i]=${BEFORE[$i]}; done
"$BIN" "${BENCH[@]}" > "$DIR/collapse.json" &
B=$!
sleep 4
t0=$(date +%s.%N)
"$BIN" admin --cluster-config "$CFG" collapse --node "$MASTER" > "$DIR/collapse.out" 2>&1 &
C=$!
while kill -0 "$B" 2>/dev/null; do
  for i in 0 1 2; do r=$(rss "${PID[$i]}"); [ "$r" -gt "${PEAK[$i]}" ] && PEAK[$i]=$r; done
  if [ -n "${C:-}" ] && ! kill -0 "$C" 2>/dev/null; then
    wait "$C"; echo "collapse of $MASTER took $(echo "$(date +%s.%N) - $t0" | bc | cut -c1-5) s (to +0.1 s)"; C=
  fi
  sleep 0.1
done
wait "$B"
[ -n "${C:-}" ] && { wait "$C"; echo "collapse of $MASTER ended after the run"; }
echo "during collapse: $(lat "$DIR/collapse.json")"
for i in 0 1 2; do
  echo "node_$i VmRSS before ${BEFORE[$i]} B, peak during $((PEAK[$i])) B (+$(( (PEAK[$i] - BEFORE[$i]) * 1000 / BEFORE[$i] ))‰)"
done
