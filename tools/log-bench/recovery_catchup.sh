#!/usr/bin/env bash
# Restart recovery and wiped-node catch-up of a 3-node cluster on 127.0.0.1.
#
#   tools/log-bench/recovery_catchup.sh BIN DIR [KEYS] [PORT_BASE]
#
# BIN: a release rarakoon-bin; DIR: a scratch directory (wiped first); KEYS: keys prefilled
# with `rarakoon-bin bench --workload get` (16 B keys, 100 B values; default 3000000).
# The collapse threshold is raised so that everything stays in the log (recovery replays the
# whole WAL; catch-up streams the whole log, never a snapshot).
# LOAD=set (environment) instead writes for LOAD_SECS (default 20) seconds with the `set`
# workload from LOAD_CLIENTS (default 8) clients: small entries, a few updates each.
# Prints: WAL bytes (raw entry bytes, archives decompressed), recovery time of node_2 after a
# SIGTERM (from the process start to its "recovered from disk" line, and the part after
# "opened write-ahead log"),
# and the time a wiped node_2 takes until its applied index reaches the master's.
set -euo pipefail
BIN=$(realpath "$1"); DIR=$2; KEYS=${3:-3000000}; BASE=${4:-4700}
rm -rf "$DIR"; mkdir -p "$DIR"; DIR=$(realpath "$DIR")
{
  printf '[cluster]\nid = "log-bench"\nmaster_mode = "elected"\nlease_period_secs = 3.0\n'
  for i in 0 1 2; do
    printf '\n[[nodes]]\nname = "node_%d"\naddresses = ["127.0.0.1:%d"]\nclient_port = %d\n' \
      "$i" $((BASE + 10 + i)) $((BASE + i))
    printf 'home_dir = "node_%d"\ncollapse_threshold_entries = 100000000\nfsync = true\n' "$i"
    printf 'metrics_address = "127.0.0.1:%d"\n' $((BASE + 20 + i))
  done
} > "$DIR/cluster.toml"
declare -A PID
start() { "$BIN" --config "$DIR/cluster.toml" --node "node_$1" >> "$DIR/node_$1.log" 2>&1 & PID[$1]=$!; }
stop() { kill -TERM "${PID[$1]}"; wait "${PID[$1]}" || true; }
applied() { curl -s "http://127.0.0.1:$((BASE + 20 + $1))/metrics" | awk '/^[a-z_]*applied_index /{print $2}'; }
trap 'for p in "${PID[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait' EXIT
for i in 0 1 2; do start $i; done
if [ "${LOAD:-prefill}" = set ]; then
  "$BIN" bench --cluster-config "$DIR/cluster.toml" --workload set --keys "$KEYS" \
    --clients "${LOAD_CLIENTS:-8}" --warmup 0s --duration "${LOAD_SECS:-20}s" --json > "$DIR/bench.json"
else
  "$BIN" bench --cluster-config "$DIR/cluster.toml" --workload get --keys "$KEYS" \
    --warmup 0s --duration 1s --json > "$DIR/bench.json"
fi
sleep 2
echo "uptime: $(uptime)"
stop 2
RAW=0
for f in "$DIR"/node_2/wal/*.wal; do [ -e "$f" ] && RAW=$((RAW + $(stat -c %s "$f"))); done
for f in "$DIR"/node_2/wal/*.wal.zst; do [ -e "$f" ] && RAW=$((RAW + $(zstd -dc "$f" | wc -c))); done
echo "wal_bytes: $RAW  on disk: $(du -sb "$DIR/node_2/wal" | cut -f1)"
ts() { date -d "$1" +%s.%N; }
for run in 1 2; do
  : > "$DIR/node_2.log"; t0=$(date +%s.%N); start 2
  until grep -q "recovered from disk" "$DIR/node_2.log"; do sleep 0.05; done
  topen=$(grep "opened write-ahead log" "$DIR/node_2.log" | cut -d' ' -f1)
  t1=$(grep "recovered from disk" "$DIR/node_2.log" | cut -d' ' -f1)
  echo "recovery run $run: log opened after $(echo "$(ts "$topen") - $t0" | bc) s, replayed $(echo "$(ts "$t1") - $(ts "$topen")" | bc) s, total $(echo "$(ts "$t1") - $t0" | bc) s from process start"
  grep "recovered from disk" "$DIR/node_2.log" | sed 's/^/  /'
  stop 2
done
TARGET=$(applied 0); T1=$(applied 1); [ "${T1:-0}" -gt "${TARGET:-0}" ] && TARGET=$T1
rm -rf "$DIR/node_2"
: > "$DIR/node_2.log"
t0=$(date +%s.%N); start 2
until [ "$(applied 2 || echo 0)" -gt 0 ] 2>/dev/null; do sleep 0.02; done
tf=$(date +%s.%N)
until [ "$(applied 2 || echo 0)" -ge "$TARGET" ] 2>/dev/null; do sleep 0.02; done
t1=$(date +%s.%N)
s=$(echo "$t1 - $t0" | bc); sf=$(echo "$t1 - $tf" | bc)
echo "catch-up: index $TARGET in $s s from process start, $sf s from the first applied entry"
echo "  $(echo "$RAW / $s / 1000000" | bc -l | cut -c1-6) MB/s from start, $(echo "$RAW / $sf / 1000000" | bc -l | cut -c1-6) MB/s from the first entry"
grep -i "catch" "$DIR/node_2.log" | tail -3 | sed 's/^/  /'
