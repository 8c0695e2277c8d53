# shellcheck shell=bash
# A local cluster for the chaos and soak runs (sourced, not run): Redis
# with an append-only file, 2 game servers and 2 gateways on free ports,
# and the fault schedule of chaos.sh. Needs, set by the sourcing script:
# `say`, `die`, `out` (logs dir), `bin` (binaries dir) and `gs_bin` (the
# game server binary: game-server, or arena-server for the arena).
#
# Every fault is first written to "$faults" as `<unix ms> <name>`: the
# chaos client (`test-client chaos --faults-file`) measures from it how
# long after each fault every session is served again (kill-to-served).

faults="$out/faults.log"
: >"$faults"

# A free port below the kernel's ephemeral range (32768 and up on Linux):
# a node restarted on its old port must find it free, and an ephemeral
# port can meanwhile be taken by any outbound connection on the machine.
free_port() {
    python3 - <<'PY'
import random, socket
for _ in range(1000):
    p = random.randint(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
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

cluster_cleanup() {
    for name in "${!pid[@]}"; do
        kill -CONT "${pid[$name]}" 2>/dev/null || true
        kill -KILL "${pid[$name]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}

# Waits up to 20 s for $2 to appear in log $1 after line $3 (default 0).
wait_log() {
    local log=$1 text=$2 mark=${3:-0}
    for _ in $(seq 200); do
        tail -n +"$((mark + 1))" "$log" 2>/dev/null | grep -qF -- "$text" && return 0
        sleep 0.1
    done
    die "no \"$text\" in $log within 20 s; its tail:
$(tail -n 20 "$log")"
}

# Lines in log $1 so far (0 if none), to wait for what comes after.
log_mark() {
    if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi
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
    local mark
    mark=$(log_mark "$log")
    RUST_LOG=info NO_COLOR=1 "$gs_bin" --node-id "$n" \
        --p2p-port "${port[gs${n}_p2p]}" --mesh-port "${port[gs${n}_mesh]}" \
        --admin-port "${port[gs${n}_admin]}" \
        --redis "127.0.0.1:${port[redis]}" --session-store redis \
        --heartbeat-ms 250 --peer-timeout-ms 1500 --flush-interval-ms 50 \
        --redis-timeout-ms 500 --shutdown-grace-secs 3 \
        --login-attempts-per-user-per-min 100000 --login-attempts-per-ip-per-min 100000 \
        >>"$log" 2>&1 &
    pid[gs$n]=$!
    wait_log "$log" "Game server $n ready" "$mark"
}

start_gateway() {
    local n=$1 log="$out/gateway-$1.log"
    local mark
    mark=$(log_mark "$log")
    RUST_LOG=info NO_COLOR=1 "$bin/gateway" --node-id "$n" --client-bind 127.0.0.1 \
        --client-port "${port[gw${n}_client]}" --p2p-port "${port[gw${n}_p2p]}" \
        --admin-port "${port[gw${n}_admin]}" \
        --game-servers "127.0.0.1:${port[gs1_p2p]},127.0.0.1:${port[gs2_p2p]}" \
        --heartbeat-ms 250 --peer-timeout-ms 1500 --request-timeout-ms 3000 \
        --max-connects-per-ip-per-sec 100000 --max-packets-per-sec 1000 \
        >>"$log" 2>&1 &
    pid[gw$n]=$!
    wait_log "$log" "Linked to game server 1" "$mark"
    wait_log "$log" "Linked to game server 2" "$mark"
}

start_cluster() {
    say "starting Redis on ${port[redis]}, game servers ($(basename "$gs_bin")), gateways"
    start_redis
    start_game_server 1
    start_game_server 2
    start_gateway 1
    start_gateway 2
}

# Writes fault $1 (a name) with the time, for kill-to-served.
fault() {
    printf '%s %s\n' "$(date +%s%3N)" "$1" >>"$faults"
}

kill9() {
    say "kill -9 $1 (pid ${pid[$1]})"
    kill -KILL "${pid[$1]}" 2>/dev/null || true
    wait "${pid[$1]}" 2>/dev/null || true
    unset 'pid[$1]'
}

# The fault schedule (about 45 s): kill -9 and restart each game server,
# SIGSTOP/SIGCONT one, kill -9 and restart Redis, kill -9 gateway 1 (its
# clients resume through gateway 2). With $1 = restart, gateway 1 comes
# back at the end, so the schedule can run again.
fault_schedule() {
    sleep 5
    fault "kill -9 game server 1"
    kill9 gs1
    sleep 3
    say "restart game server 1"
    start_game_server 1
    sleep 4
    fault "kill -9 game server 2"
    kill9 gs2
    sleep 3
    say "restart game server 2"
    start_game_server 2
    sleep 4
    # Longer than the client's 5 s deadline: only the gateways' own answers
    # (DOWN after 1.5 s, or --request-timeout-ms 3 s) keep its clients unhung.
    say "SIGSTOP game server 1 for 6 s"
    fault "SIGSTOP game server 1 (6 s)"
    kill -STOP "${pid[gs1]}"
    sleep 6
    say "SIGCONT game server 1"
    kill -CONT "${pid[gs1]}"
    sleep 4
    fault "kill -9 Redis, restart"
    kill9 redis
    say "restart Redis"
    start_redis
    sleep 5
    fault "kill -9 gateway 1"
    kill9 gw1
    say "gateway 1 is gone: its clients resume through gateway 2"
    if [[ ${1:-} == restart ]]; then
        sleep 3
        say "restart gateway 1"
        start_gateway 1
    fi
}

# "<RSS kB> <open fds>" of process $1 (a pid), or "- -" if it is gone.
proc_stats() {
    local rss fds
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null) || true
    fds=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) || true
    if [[ -z $rss ]]; then echo "- -"; else echo "$rss $fds"; fi
}
