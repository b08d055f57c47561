#!/usr/bin/env bash
# The write path against its floor, in one run: floor.py (raw fdatasync and loopback RTT),
# then `rarakoon-bin bench --local --workload set` with 1 client, 64 clients on 16
# connections, and 64 clients on 64 connections.
#
#   tools/log-bench/write_path.sh BIN [LABEL] [DURATION]      # e.g. target/release/rarakoon-bin new 8s
set -euo pipefail
BIN=$1; L=${2:-$1}; D=${3:-8s}
echo "== $L $(date +%T) $(uptime | sed 's/.*load/load/')"
python3 "$(dirname "$0")/floor.py"
for args in "--clients 1" "--clients 64 --connections 16" "--clients 64"; do
  # shellcheck disable=SC2086
  "$BIN" bench --local --workload set $args --duration "$D" 2>&1 |
    awk -v a="$args" '/^set /{printf "%-32s ops/s %9s p50 %s p99 %s\n", a, $3, $4, $6}'
done
