#!/usr/bin/env bash
# Chaos run: Redis, 2 game servers and 2 gateways on this machine, under
# load from `test-client chaos` (sessions incrementing their counters,
# retrying with the same sequence id, resuming through the other gateway),
# while this script breaks things:
#
#   kill -9 and restart each game server, SIGSTOP/SIGCONT one, restart
#   Redis, kill -9 a gateway (its clients resume through the other).
#
# Then it prints the chaos table and exits non-zero if any must-be-zero
# (hung, executed twice, acknowledged increments lost, sessions left
# doubled) is not zero.
#
#   ./scripts/chaos.sh                     # 50 sessions, 60 s
#   ./scripts/chaos.sh --sessions 100 --duration 90
set -euo pipefail

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF2'

Options:
  --sessions N   concurrent sessions (default 50)
  --duration S   seconds of load, at least 50 (default 60)
  --release      build and use release binaries (default: debug)
  --no-build     use the binaries already built
  -h, --help     this help
Logs: .chaos/*.log (kept).
EOF2
}

sessions=50
duration=60
profile=debug
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sessions) sessions=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --release) profile=release; shift ;;
        --no-build) build=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; echo "chaos.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
((duration >= 50)) || { echo "chaos.sh: --duration must be at least 50 (the fault schedule takes 45 s)" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out="$root/.chaos"
mkdir -p "$out"
rm -rf "${out:?}"/*

say() { printf '[chaos] %s: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[chaos] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

ensure redis-server redis-server
ensure redis-cli redis-tools
ensure python3 python3
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"

if ((build)); then
    say "building $profile binaries"
    if [[ $profile == release ]]; then
        cargo build --release -q -p gamemesh-gateway -p gamemesh-game-server -p gamemesh-test-client
    else
        cargo build -q -p gamemesh-gateway -p gamemesh-game-server -p gamemesh-test-client
    fi
fi
bin="$root/target/$profile"
for b in gateway game-server test-client; do
    [[ -x $bin/$b ]] || die "$bin/$b is missing: run without --no-build"
done

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

declare -A pid=()
declare -A port=()
# Every port of every node is its own: two game servers (or gateways) on
# one machine cannot share the default admin port (9191 / 9190), and a
# restarted node comes back on the same ports.
for p in redis gs1_p2p gs1_mesh gs1_admin gs2_p2p gs2_mesh gs2_admin \
    gw1_client gw1_p2p gw1_admin gw2_client gw2_p2p gw2_admin; do
    port[$p]=$(free_port)
done

cleanup() {
    for name in "${!pid[@]}"; do
        kill -CONT "${pid[$name]}" 2>/dev/null || true
        kill -KILL "${pid[$name]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# Waits up to 20 s for $2 to appear in log $1.
wait_log() {
    local log=$1 text=$2
    for _ in $(seq 200); do
        grep -qF -- "$text" "$log" 2>/dev/null && return 0
        sleep 0.1
    done
    die "no \"$text\" in $log within 20 s; its tail:
$(tail -n 20 "$log")"
}

start_redis() {
    # An append-only file synced on every write: a restarted Redis comes
    # back with every session, as a production Redis with persistence does.
    redis-server --port "${port[redis]}" --bind 127.0.0.1 --save "" \
        --appendonly yes --appendfsync always --dir "$out" --daemonize no \
        >>"$out/redis.log" 2>&1 &
    pid[redis]=$!
    for _ in $(seq 100); do
        redis-cli -p "${port[redis]}" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "redis-server did not answer PING; see $out/redis.log"
}

start_game_server() {
    local n=$1 log="$out/game-server-$1.log"
    local mark=0
    [[ -f $log ]] && mark=$(wc -l <"$log")
    RUST_LOG=info NO_COLOR=1 "$bin/game-server" --node-id "$n" \
        --p2p-port "${port[gs${n}_p2p]}" --mesh-port "${port[gs${n}_mesh]}" \
        --admin-port "${port[gs${n}_admin]}" \
        --redis "127.0.0.1:${port[redis]}" --session-store redis \
        --heartbeat-ms 250 --peer-timeout-ms 1500 --flush-interval-ms 50 \
        --redis-timeout-ms 500 --shutdown-grace-secs 3 \
        --login-attempts-per-user-per-min 100000 --login-attempts-per-ip-per-min 100000 \
        >>"$log" 2>&1 &
    pid[gs$n]=$!
    for _ in $(seq 200); do
        tail -n +"$((mark + 1))" "$log" | grep -qF "Game server $n ready" && return 0
        sleep 0.1
    done
    die "game server $n not ready within 20 s; see $log"
}

start_gateway() {
    local n=$1 log="$out/gateway-$1.log"
    RUST_LOG=info NO_COLOR=1 "$bin/gateway" --node-id "$n" --client-bind 127.0.0.1 \
        --client-port "${port[gw${n}_client]}" --p2p-port "${port[gw${n}_p2p]}" \
        --admin-port "${port[gw${n}_admin]}" \
        --game-servers "127.0.0.1:${port[gs1_p2p]},127.0.0.1:${port[gs2_p2p]}" \
        --heartbeat-ms 250 --peer-timeout-ms 1500 --request-timeout-ms 3000 \
        --max-connects-per-ip-per-sec 100000 --max-packets-per-sec 1000 \
        >>"$log" 2>&1 &
    pid[gw$n]=$!
    wait_log "$log" "Linked to game server 1"
    wait_log "$log" "Linked to game server 2"
}

kill9() {
    say "kill -9 $1 (pid ${pid[$1]})"
    kill -KILL "${pid[$1]}" 2>/dev/null || true
    wait "${pid[$1]}" 2>/dev/null || true
    unset 'pid[$1]'
}

say "starting Redis on ${port[redis]}, game servers, gateways"
start_redis
start_game_server 1
start_game_server 2
start_gateway 1
start_gateway 2

say "load: $sessions sessions for $duration s through both gateways"
NO_COLOR=1 "$bin/test-client" --addr "127.0.0.1:${port[gw1_client]}" chaos \
    --addr2 "127.0.0.1:${port[gw2_client]}" --sessions "$sessions" \
    --duration "$duration" --redis "redis://127.0.0.1:${port[redis]}" \
    --deadline-ms 5000 \
    >"$out/chaos.out" 2>"$out/chaos.log" &
client=$!

sleep 5
kill9 gs1
sleep 3
say "restart game server 1"
start_game_server 1
sleep 4
kill9 gs2
sleep 3
say "restart game server 2"
start_game_server 2
sleep 4
# Longer than the client's 5 s deadline: only the gateways' own answers
# (DOWN after 1.5 s, or --request-timeout-ms 3 s) keep its clients unhung.
say "SIGSTOP game server 1 for 6 s"
kill -STOP "${pid[gs1]}"
sleep 6
say "SIGCONT game server 1"
kill -CONT "${pid[gs1]}"
sleep 4
kill9 redis
say "restart Redis"
start_redis
sleep 5
kill9 gw1
say "gateway 1 is gone: its clients resume through gateway 2"

status=0
wait "$client" || status=$?
cat "$out/chaos.out"
if ((status != 0)); then
    say "FAILED: a must-be-zero is not zero (or the load could not run): see $out/chaos.log and the logs in $out"
    tail -n 5 "$out/chaos.log" >&2 || true
    exit 1
fi
say "PASSED: logs in $out"
