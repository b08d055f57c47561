#!/usr/bin/env bash
# Rarakoon, etcd and ZooKeeper side by side: 3 nodes of each on 127.0.0.1 (temporary
# directories, fsync on), one system at a time, the same workloads from the same load generator
# (tools/compare), plus `rarakoon-bin bench` against the same Rarakoon cluster. Prints one
# markdown table at the end; the raw JSON lines stay in $OUT (default: a temp directory).
#
#   tools/compare/run.sh                 # 10 s per workload after 3 s of warm-up
#   DURATION=3 WARMUP=1 tools/compare/run.sh   # a short trial
#   SYSTEMS="rarakoon etcd" tools/compare/run.sh
#
# Needs: etcd 3.4 (`apt-get install etcd-server`), ZooKeeper 3.8 (`apt-get install zookeeper`,
# Java), protoc for building the generator (`apt-get install protobuf-compiler`). Not part of CI.
# Every server this script starts is stopped by its PID when it ends (also on error or Ctrl-C).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
KEYS=${KEYS:-1000}
SYSTEMS=${SYSTEMS:-"rarakoon etcd zookeeper"}
WORK=$(mktemp -d /tmp/rarakoon-compare.XXXXXX)
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
PIDS=()

stop_all() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_all
    # Keep the results; drop the servers' data.
    rm -rf "$WORK/rarakoon" "$WORK/etcd" "$WORK/zookeeper"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "# building (release): rarakoon-bin and tools/compare" >&2
cargo build --release -q -p rarakoon-bin --manifest-path "$ROOT/Cargo.toml"
cargo build --release -q --manifest-path "$ROOT/tools/compare/Cargo.toml"
BIN="$ROOT/target/release/rarakoon-bin"
GEN="$ROOT/tools/compare/target/release/rarakoon-compare"

# The workloads: (workload clients connections). Every system gets the same list.
WORKLOADS=(
    "set 1 1"
    "set 64 16"
    "get 1 1"
    "get 64 16"
    "get-local 64 16"
)

wait_port() { # host:port
    local hp=$1
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "nothing listens on $hp" >&2
    return 1
}

generate() { # system endpoints [extra args]
    local system=$1 endpoints=$2
    shift 2
    local w c n
    for spec in "${WORKLOADS[@]}"; do
        read -r w c n <<<"$spec"
        echo "# $system $w clients=$c connections=$n" >&2
        "$GEN" run --system "$system" --endpoints "$endpoints" --workload "$w" \
            --clients "$c" --connections "$n" --keys "$KEYS" --key-size 16 --value-size 100 \
            --warmup "$WARMUP" --duration "$DURATION" --json "$@" | tee -a "$OUT/$system.jsonl" >&2
    done
}

run_rarakoon() {
    mkdir -p "$WORK/rarakoon"
    "$BIN" local --dir "$WORK/rarakoon" >"$WORK/rarakoon-local.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 300); do
        grep -q '^Ready:' "$WORK/rarakoon-local.out" && break
        sleep 0.2
    done
    grep -q '^Ready:' "$WORK/rarakoon-local.out" || { cat "$WORK/rarakoon-local.out" >&2; return 1; }
    if grep -q 'fsync *= *false' "$WORK/rarakoon/cluster.toml"; then
        echo "the local cluster's config turns fsync off" >&2
        return 1
    fi
    local endpoints
    endpoints=$(sed -n 's/^  \(node_[0-9]*\): client \([0-9.:]*\).*/\1=\2/p' "$WORK/rarakoon-local.out" | paste -sd,)
    echo "# rarakoon: $endpoints ($(grep '^Ready:' "$WORK/rarakoon-local.out"))" >&2
    generate rarakoon "$endpoints"
    # The project's own load generator, same workloads, same cluster.
    local w c n consistency workload
    for spec in "${WORKLOADS[@]}"; do
        read -r w c n <<<"$spec"
        workload=$w consistency=consistent
        if [ "$w" = get-local ]; then workload=get consistency=any; fi
        echo "# rarakoon-bin bench $w clients=$c connections=$n" >&2
        "$BIN" bench --dir "$WORK/rarakoon" --workload "$workload" --consistency "$consistency" \
            --clients "$c" --connections "$n" --keys "$KEYS" --key-size 16 --value-size 100 \
            --warmup "${WARMUP}s" --duration "${DURATION}s" --json | tee -a "$OUT/rarakoon-bench.jsonl" >&2
    done
    stop_all
}

run_etcd() {
    local cluster="" i
    for i in 0 1 2; do
        cluster+="${cluster:+,}e$i=http://127.0.0.1:$((23800 + i))"
    done
    for i in 0 1 2; do
        mkdir -p "$WORK/etcd/e$i"
        etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
            --listen-client-urls "http://127.0.0.1:$((23790 + i))" \
            --advertise-client-urls "http://127.0.0.1:$((23790 + i))" \
            --listen-peer-urls "http://127.0.0.1:$((23800 + i))" \
            --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token rarakoon-compare \
            >"$WORK/etcd-e$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 0 1 2; do wait_port "127.0.0.1:$((23790 + i))"; done
    # The cluster is usable once a member reports itself healthy (it has a leader).
    for _ in $(seq 1 150); do
        if (exec 3<>/dev/tcp/127.0.0.1/23790 && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && cat <&3) 2>/dev/null | grep -q '"health":"true"'; then
            break
        fi
        sleep 0.2
    done
    echo "# etcd $(etcd --version | head -1)" >&2
    generate etcd "127.0.0.1:23790,127.0.0.1:23791,127.0.0.1:23792"
    stop_all
}

run_zookeeper() {
    local i
    for i in 1 2 3; do
        mkdir -p "$WORK/zookeeper/z$i/data" "$WORK/zookeeper/z$i/conf"
        echo "$i" >"$WORK/zookeeper/z$i/data/myid"
        cat >"$WORK/zookeeper/z$i/conf/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$WORK/zookeeper/z$i/data
clientPort=$((21810 + i))
clientPortAddress=127.0.0.1
forceSync=yes
admin.enableServer=false
4lw.commands.whitelist=srvr
maxClientCnxns=0
server.1=127.0.0.1:28881:38881
server.2=127.0.0.1:28882:38882
server.3=127.0.0.1:28883:38883
EOF
        cp /etc/zookeeper/conf/log4j.properties "$WORK/zookeeper/z$i/conf/" 2>/dev/null || true
        java -Dzookeeper.log.dir="$WORK/zookeeper/z$i" -Dzookeeper.root.logger=INFO,CONSOLE \
            -cp "$WORK/zookeeper/z$i/conf:/usr/share/java/zookeeper.jar" \
            org.apache.zookeeper.server.quorum.QuorumPeerMain "$WORK/zookeeper/z$i/conf/zoo.cfg" \
            >"$WORK/zookeeper-z$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 1 2 3; do wait_port "127.0.0.1:$((21810 + i))"; done
    # Ready once some server answers srvr as leader.
    for _ in $(seq 1 150); do
        for i in 1 2 3; do
            if (exec 3<>"/dev/tcp/127.0.0.1/$((21810 + i))" && printf srvr >&3 && cat <&3) 2>/dev/null | grep -q 'Mode: leader'; then
                break 2
            fi
        done
        sleep 0.2
    done
    echo "# zookeeper $(java -cp /usr/share/java/zookeeper.jar org.apache.zookeeper.version.VersionInfoMain 2>/dev/null || echo 3.8)" >&2
    generate zookeeper "127.0.0.1:21811,127.0.0.1:21812,127.0.0.1:21813"
    stop_all
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/machine.txt" >&2
for system in $SYSTEMS; do
    "run_$system"
    echo "# load after $system: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt" >&2
done
echo "# results in $OUT" >&2
cat "$OUT/machine.txt"
"$GEN" table "$OUT"/*.jsonl
