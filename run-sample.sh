#!/usr/bin/env bash
# Starts a local gamemesh cluster (Redis, game servers, gateways), runs the
# test client's scenario through every gateway, has two scripted chat
# clients talk across gateways and game servers, puts two players in one
# arena across gateways and game servers, serves the arena in a browser
# (over the gateways' WebSocket ports), prints the logs and stops everything
# it started. One command:
#
#   ./run-sample.sh                              # 1 gateway, 1 game server
#   ./run-sample.sh --gateways 2 --game-servers 3
#
# See --help. Logs go to .run/ (gitignored).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: ./run-sample.sh [--gateways N] [--game-servers M] [--daily-reset-cron EXPR]
                       [--no-build] [--keep] [--help]

Builds the release binaries, starts M game servers and N gateways on
127.0.0.1, runs `test-client scenario` once per gateway, then two scripted
`test-client chat` clients (first and last gateway, game servers 1 and M)
that chat in `general` and whisper, then two scripted arena players
(`test-client arena-demo`, same gateways and game servers) in one arena
that must see each other and every tick, and prints the logs. Exits
non-zero if any of these fails. Everything started is stopped on exit
(and on Ctrl-C).

Each gateway also takes WebSocket clients (--ws-port), and `test-client
web` serves the arena in a browser on http://127.0.0.1:8080/, playing
through gateway 1's WebSocket port: the URL is printed; with --keep the
cluster stays up so you can play (open two tabs, two user ids, one room).
The page is built with npm (clients/typescript, `npm run build:web`);
without Node and npm the sample runs without it, and says so.

The game servers are `arena-server` (examples/arena): the stock game
server plus the arena sample module, with every game-server flag.

With Redis, it then shows background jobs and cluster events: one client
per gateway stays logged in and prints the notices pushed to it, the daily
reset fires on a short schedule, and `test-client admin event schedule`
schedules a timed in-game event (start and end notices).

Options:
  --gateways N       gateways to start (default 1); client ports 5000..5000+N-1
  --game-servers M   game servers to start (default 1); ports 9001..900M
  --daily-reset-cron EXPR
                     when the daily reset job runs (six fields, seconds
                     first, UTC; default '*/10 * * * * *' so the sample
                     shows it; production default '0 0 0 * * *')
  --redis-cluster    start a local Redis Cluster (3 primaries + 3 replicas on
                     the first free block of 7000..7099, data in
                     .run/redis-cluster/) and run the sample on it
                     (--redis redis+cluster://...); REDIS_CONNECTION is
                     ignored
  --no-build         skip `cargo build --release` and the page's npm build
                     (reuse target/release and clients/typescript/dist/browser)
  --keep             after the scenarios, keep the cluster running until
                     Ctrl-C (watch it with scripts/top.sh)
  -h, --help         show this help

Environment:
  REDIS_CONNECTION   Redis to use (host:port or redis:// URL); when unset or
                     unreachable a private redis-server is started on the
                     first free port of 6390..6399. Without any Redis the
                     game server runs with --session-store memory (1 only).
  RUST_LOG           log filter for all processes (default: info, plus
                     per-packet lines)

Ports: gateway N: client 5000+N-1, WebSocket 5100+N-1, p2p 8000+N, admin
9200+N; game server N: p2p 9000+N, mesh 9100+N, admin 9300+N; the browser
arena's page: 8080. The admin ports (/metrics, /healthz,
/readyz) are also written to .run/admin-ports for scripts/top.sh.
EOF
}

say() { printf '[run-sample] %s\n' "$*"; }
warn() { printf '[run-sample] WARNING: %s\n' "$*" >&2; }
die() {
    printf '[run-sample] ERROR: %s\n' "$*" >&2
    exit 1
}

# ---- flags ---------------------------------------------------------------

gateways=1
game_servers=1
build=1
daily_reset_cron='*/10 * * * * *'
keep=0
redis_cluster=0

need_value() {
    [[ $# -ge 2 && -n "$2" ]] || {
        usage >&2
        die "$1 needs a value"
    }
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --gateways)
            need_value "$@"
            gateways=$2
            shift 2
            ;;
        --gateways=*)
            gateways=${1#*=}
            shift
            ;;
        --game-servers)
            need_value "$@"
            game_servers=$2
            shift 2
            ;;
        --game-servers=*)
            game_servers=${1#*=}
            shift
            ;;
        --daily-reset-cron)
            need_value "$@"
            daily_reset_cron=$2
            shift 2
            ;;
        --daily-reset-cron=*)
            daily_reset_cron=${1#*=}
            shift
            ;;
        --no-build)
            build=0
            shift
            ;;
        --keep)
            keep=1
            shift
            ;;
        --redis-cluster)
            redis_cluster=1
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
    esac
done

# Upper bound 99: game server p2p (9000+N) and mesh (9100+N) ports would
# overlap from 100 on.
for pair in "gateways:$gateways" "game-servers:$game_servers"; do
    value=${pair#*:}
    [[ "$value" =~ ^[1-9][0-9]?$ ]] || die "--${pair%%:*} must be a number from 1 to 99 (got '$value')"
done

# ---- environment ---------------------------------------------------------

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
run_dir="$root/.run"
mkdir -p "$run_dir"
rm -rf "$run_dir"/*.log "$run_dir/redis" "$run_dir/redis-cluster"

# INFO everywhere, plus the per-packet lines (gateway "Packet received" at
# DEBUG, game server "Packet processed" at TRACE) so the sample shows the
# whole path of a packet.
export RUST_LOG="${RUST_LOG:-info,gamemesh_gateway::connection=debug,gamemesh_game_server::middleware::timing=trace}"

command -v timeout >/dev/null 2>&1 || die "'timeout' (coreutils) is required"

# ---- process bookkeeping and cleanup -------------------------------------

pids=()  # every process this script started, killed on exit
names=() # same index: a name for messages
client_pid="" # the running test client (its `timeout`), if any
pair_pids=()  # the running chat clients or arena players, if any

# Starts "$@" in the background with its output in $2; records the pid.
# NO_COLOR keeps ANSI escapes out of the log files.
start_proc() {
    local name=$1 logfile=$2
    shift 2
    NO_COLOR=1 "$@" >"$logfile" 2>&1 &
    pids+=("$!")
    names+=("$name")
    say "started $name (pid $!), log ${logfile#"$root"/}"
}

# Drops a process that ended as planned from the bookkeeping, so
# check_alive (and --keep's watch) does not take its end for a crash.
forget_proc() {
    local i
    for i in "${!pids[@]}"; do
        if [[ "${pids[$i]}" == "$1" ]]; then
            unset 'pids[i]' 'names[i]'
        fi
    done
}

cleanup() {
    if [[ -n "$client_pid" ]]; then
        pids+=("$client_pid")
        names+=("test-client")
    fi
    local pair_pid
    for pair_pid in "${pair_pids[@]}"; do
        pids+=("$pair_pid")
        names+=("test-client")
    done
    [[ ${#pids[@]} -gt 0 ]] || return 0
    say "stopping ${#pids[@]} process(es)"
    local pid i
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 5)) alive=1
    while ((alive && SECONDS < deadline)); do
        alive=0
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then
                alive=1
                break
            fi
        done
        ((alive)) && sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            warn "${names[$i]} (pid ${pids[$i]}) ignored TERM for 5 s: sending KILL"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
        wait "${pids[$i]}" 2>/dev/null || true
    done
    pids=()
}
trap cleanup EXIT
# Exiting from INT/TERM runs the EXIT trap once, with the usual 128+N status.
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers --------------------------------------------------------------

# True if something accepts TCP connections on host:port.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# True if host:port answers PING (NOAUTH counts: the server is up).
tcp_ping() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "PING\r\n" >&3
        IFS= read -r -t 2 line <&3 || exit 1
        [[ $line == "+PONG"* || $line == "-NOAUTH"* ]]' "$1" "$2" 2>/dev/null
}

# The body of an HTTP/1.0 GET of http://$1:$2$3 (no curl needed).
http_get() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$0" >&3
        sed "1,/^\r\{0,1\}$/d" <&3' "$1" "$2" "$3" 2>/dev/null
}

# Prints the last lines of every server log, for failure messages.
dump_logs() {
    local lines=$1 f
    for f in "$run_dir"/redis*.log "$run_dir"/game-server-*.log "$run_dir"/gateway-*.log; do
        [[ -f "$f" ]] || continue
        printf -- '---- %s (last %d lines) ----\n' "${f#"$root"/}" "$lines"
        tail -n "$lines" "$f"
    done
}

# Dies (with logs) if a started process has exited.
check_alive() {
    local i
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            dump_logs 20 >&2
            die "${names[$i]} (pid ${pids[$i]}) exited early; see its log above"
        fi
    done
}

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

# Makes redis-server available if we can; false if not.
ensure_redis_server() {
    command -v redis-server >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || return 1
    if [[ "$(id -u)" -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
        return 1
    fi
    say "redis-server not found: installing it with apt-get"
    as_root apt-get update -qq >&2 || return 1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2 || return 1
    command -v redis-server >/dev/null 2>&1
}

# Starts a private redis-server on the first free port of 6390..6399 and
# sets redis_addr; false if none came up. (Not called in $(...): the pid
# must be recorded in this shell for cleanup.)
#
# It persists as gamemesh needs Redis to (docs/OPERATIONS.md, "Redis
# persistence"): an append-only file, fsynced every second, in
# .run/redis/, which it owns. A Redis restarted within a run (kill it
# under --keep and start it again with the same flags) comes back with
# every session; with the old `--appendonly no` it came back empty and
# every player had to log in again. No RDB snapshots (`--save ""`): the
# append-only file is the one copy. Each run of this script starts from an
# empty .run/redis/, so one sample's users do not meet the last one's.
start_private_redis() {
    local port pid deadline
    mkdir -p "$run_dir/redis"
    for port in {6390..6399}; do
        port_open 127.0.0.1 "$port" && continue
        start_proc "redis-server" "$run_dir/redis.log" \
            redis-server --port "$port" --bind 127.0.0.1 --save "" \
            --appendonly yes --appendfsync everysec \
            --daemonize no --dir "$run_dir/redis"
        pid=${pids[-1]}
        deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            if tcp_ping 127.0.0.1 "$port"; then
                redis_addr="127.0.0.1:$port"
                return 0
            fi
            sleep 0.1
        done
        # Died (port raced away?) or hung: forget it and try the next port.
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset 'pids[-1]' 'names[-1]'
        warn "redis-server on port $port did not come up: $(tail -n 1 "$run_dir/redis.log")"
    done
    return 1
}

# Starts a local Redis Cluster: six redis-servers with --cluster-enabled
# on the first block of six free ports in 7000..7099 (their bus ports are
# those plus 10000), joined by `redis-cli --cluster create
# --cluster-replicas 1` into 3 primaries with a replica each, and waits
# until every node says cluster_state:ok. Sets redis_addr to the
# redis+cluster:// address. Persistence as for the private redis-server.
start_private_cluster() {
    local base port pid n ok deadline
    local -a cluster_ports
    command -v redis-cli >/dev/null 2>&1 || {
        warn "redis-cli not found (it comes with redis-server / redis-tools)"
        return 1
    }
    for ((base = 7000; base <= 7094; base += 6)); do
        ok=1
        for ((n = 0; n < 6; n++)); do
            if port_open 127.0.0.1 $((base + n)) || port_open 127.0.0.1 $((base + n + 10000)); then
                ok=0
                break
            fi
        done
        ((ok)) && break
    done
    ((ok)) || {
        warn "no six free ports in 7000..7099 for the Redis Cluster"
        return 1
    }
    cluster_ports=()
    for ((n = 0; n < 6; n++)); do
        port=$((base + n))
        cluster_ports+=("127.0.0.1:$port")
        mkdir -p "$run_dir/redis-cluster/$port"
        start_proc "redis-cluster-$port" "$run_dir/redis-cluster-$port.log" \
            redis-server --port "$port" --bind 127.0.0.1 --save "" \
            --appendonly yes --appendfsync everysec \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 2000 --repl-diskless-sync-delay 0 \
            --daemonize no --dir "$run_dir/redis-cluster/$port"
        pid=${pids[-1]}
        deadline=$((SECONDS + 10))
        until tcp_ping 127.0.0.1 "$port"; do
            if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
                warn "redis-server on port $port did not come up: $(tail -n 1 "$run_dir/redis-cluster-$port.log")"
                return 1
            fi
            sleep 0.1
        done
    done
    redis-cli --cluster create "${cluster_ports[@]}" --cluster-replicas 1 --cluster-yes \
        >"$run_dir/redis-cluster-create.log" 2>&1 || {
        warn "redis-cli --cluster create failed: $(tail -n 3 "$run_dir/redis-cluster-create.log")"
        return 1
    }
    deadline=$((SECONDS + 30))
    for ((n = 0; n < 6; n++)); do
        until [[ "$(redis-cli -p $((base + n)) cluster info 2>/dev/null)" == *cluster_state:ok* ]]; do
            ((SECONDS < deadline)) || {
                warn "the Redis Cluster did not become ok within 30 s (node $((base + n)))"
                return 1
            }
            sleep 0.2
        done
    done
    local IFS=,
    redis_addr="redis+cluster://${cluster_ports[*]}"
}

# ---- build ----------------------------------------------------------------

bin_dir="$root/target/release"
if ((build)); then
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust (https://rustup.rs), or pass --no-build with binaries in target/release"
    say "building release binaries (cargo build --release)"
    cargo build --release -p gamemesh-gateway -p gamemesh-arena -p gamemesh-test-client
fi
for bin in gateway arena-server test-client; do
    [[ -x "$bin_dir/$bin" ]] || die "missing $bin_dir/$bin: run without --no-build"
done

# The browser arena's page (clients/typescript/web), bundled by esbuild
# into clients/typescript/dist/browser, which `test-client web` serves.
# Without Node and npm the sample runs without it.
web_dir="$root/clients/typescript/dist/browser"
web_port=8080
web=0
build_page() {
    cd "$root/clients/typescript" &&
        { { [[ -d node_modules ]] && npm ls --depth=0 >/dev/null 2>&1; } || npm ci --no-audit --no-fund; } &&
        npm run build:web
}
if ((build)); then
    if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
        say "building the browser arena's page (npm run build:web in clients/typescript)"
        if (build_page) >"$run_dir/web-build.log" 2>&1; then
            web=1
        else
            tail -n 15 "$run_dir/web-build.log" >&2
            warn "the browser arena's page did not build (log: .run/web-build.log): running without it"
        fi
    else
        warn "node or npm not found: running without the browser arena (install Node.js >= 20 with npm to get it)"
    fi
elif [[ -f "$web_dir/index.html" && -f "$web_dir/arena.js" ]]; then
    web=1
else
    warn "--no-build and no built page in ${web_dir#"$root"/}: running without the browser arena"
fi

# ---- ports must be free ---------------------------------------------------

ports=()
for ((n = 1; n <= gateways; n++)); do ports+=($((5000 + n - 1)) $((5100 + n - 1)) $((8000 + n)) $((9200 + n))); done
((web)) && ports+=("$web_port")
for ((n = 1; n <= game_servers; n++)); do ports+=($((9000 + n)) $((9100 + n)) $((9300 + n))); done
for port in "${ports[@]}"; do
    if port_open 127.0.0.1 "$port"; then
        die "port $port is already in use (a previous run still alive? check: ss -ltnp 'sport = :$port')"
    fi
done

# ---- redis ----------------------------------------------------------------

redis_args=() # --redis <addr> for the game servers
redis_addr=""
store_args=() # --session-store memory when there is no Redis at all

if ((redis_cluster)); then
    if ! { ensure_redis_server && start_private_cluster; }; then
        die "could not start a local Redis Cluster (see the warnings above and .run/redis-cluster-*.log)"
    fi
    say "local Redis Cluster (3 primaries, 3 replicas) at $redis_addr"
    redis_args=(--redis "$redis_addr")
elif [[ -n "${REDIS_CONNECTION:-}" ]]; then
    # Accept host:port or redis://[user:pass@]host[:port][/db].
    hostport=${REDIS_CONNECTION#*://}
    hostport=${hostport##*@}
    hostport=${hostport%%/*}
    redis_host=${hostport%:*}
    redis_port=${hostport##*:}
    [[ "$hostport" == *:* ]] || redis_port=6379
    reachable=0
    if command -v redis-cli >/dev/null 2>&1; then
        url=$REDIS_CONNECTION
        [[ "$url" == *://* ]] || url="redis://$url"
        # redis-cli authenticates with the URL's password, so PONG means usable.
        if [[ "$(timeout 3 redis-cli -u "$url" PING 2>/dev/null)" == *PONG* ]]; then reachable=1; fi
    elif tcp_ping "$redis_host" "$redis_port"; then
        reachable=1
    fi
    if ((reachable)); then
        say "using Redis from REDIS_CONNECTION=$REDIS_CONNECTION"
        redis_args=(--redis "$REDIS_CONNECTION")
    else
        warn "REDIS_CONNECTION=$REDIS_CONNECTION does not answer PING: starting a private redis-server instead"
    fi
fi

if [[ ${#redis_args[@]} -eq 0 ]]; then
    if ensure_redis_server && start_private_redis; then
        say "private redis-server at $redis_addr"
        redis_args=(--redis "$redis_addr")
    else
        warn "no Redis available (redis-server missing and not installable, or it failed to start): game servers use --session-store memory"
        store_args=(--session-store memory)
        if ((game_servers > 1)); then
            warn "memory session store cannot be shared: running 1 game server instead of $game_servers"
            game_servers=1
        fi
    fi
fi
# The address is passed explicitly from here on; don't let the servers'
# env twin pick up an unreachable one.
unset REDIS_CONNECTION

# ---- game servers and gateways --------------------------------------------

# Every node proves the same cluster secret on the internal ports
# (SECURITY.md); a sample run makes one up unless CLUSTER_SECRET is set.
if [[ -z "${CLUSTER_SECRET:-}" ]]; then
    CLUSTER_SECRET=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
fi
export CLUSTER_SECRET

upstreams=()
admins=() # admin ports, gateways' and game servers', for scripts/top.sh
for ((n = 1; n <= game_servers; n++)); do
    start_proc "game-server-$n" "$run_dir/game-server-$n.log" \
        "$bin_dir/arena-server" --node-id "$n" --p2p-port $((9000 + n)) --mesh-port $((9100 + n)) \
        --admin-port $((9300 + n)) "${redis_args[@]}" "${store_args[@]}" --daily-reset-cron "$daily_reset_cron"
    upstreams+=("127.0.0.1:$((9000 + n))")
    admins+=("127.0.0.1:$((9300 + n))")
done
game_server_list=$(
    IFS=,
    echo "${upstreams[*]}"
)

for ((n = 1; n <= gateways; n++)); do
    start_proc "gateway-$n" "$run_dir/gateway-$n.log" \
        "$bin_dir/gateway" --node-id "$n" --client-port $((5000 + n - 1)) --ws-port $((5100 + n - 1)) \
        --p2p-port $((8000 + n)) --admin-port $((9200 + n)) --game-servers "$game_server_list"
    admins+=("127.0.0.1:$((9200 + n))")
done
admin_list=$(
    IFS=,
    echo "${admins[*]}"
)
echo "$admin_list" >"$run_dir/admin-ports"
say "admin ports (/metrics, /healthz, /readyz): $admin_list"

# ---- wait until ready -----------------------------------------------------

# Waits until 127.0.0.1:PORT accepts connections; past $deadline (20 s
# from the start of the wait), prints the logs and dies saying gateway-N
# does not accept WHAT there.
#   wait_gateway_port N PORT WHAT
wait_gateway_port() {
    local n=$1 port=$2 what=$3
    until port_open 127.0.0.1 "$port"; do
        check_alive
        if ((SECONDS >= deadline)); then
            dump_logs 20 >&2
            die "gateway-$n does not accept $what on 127.0.0.1:$port after 20 s"
        fi
        sleep 0.1
    done
}

say "waiting for gateway client ports (up to 20 s)"
deadline=$((SECONDS + 20))
for ((n = 1; n <= gateways; n++)); do
    port=$((5000 + n - 1))
    wait_gateway_port "$n" "$port" connections
    say "gateway-$n accepts clients on 127.0.0.1:$port"
    port=$((5100 + n - 1))
    wait_gateway_port "$n" "$port" "WebSocket connections"
    say "gateway-$n accepts WebSocket clients on ws://127.0.0.1:$port"
done

say "waiting for gateways to link to game servers (up to 10 s)"
deadline=$((SECONDS + 10))
for ((n = 1; n <= gateways; n++)); do
    log="$run_dir/gateway-$n.log"
    until grep -qi "linked to game server" "$log"; do
        check_alive
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    if grep -qi "linked to game server" "$log"; then
        say "gateway-$n linked to game server(s)"
    else
        warn "gateway-$n never logged 'linked to game server'; running the scenario anyway"
    fi
done

# Chat rooms are spread over the game servers that see each other on the
# mesh: wait until every game server has logged its peers UP (about one
# heartbeat after start), so the chat below sees one cluster.
if ((game_servers >= 2)); then
    say "waiting for the game servers' mesh (up to 10 s)"
    deadline=$((SECONDS + 10))
    for ((n = 1; n <= game_servers; n++)); do
        log="$run_dir/game-server-$n.log"
        until (($(grep -c "Mesh peer game server .* is UP" "$log") >= game_servers - 1)); do
            check_alive
            ((SECONDS < deadline)) || break
            sleep 0.1
        done
    done
fi

# ---- scenarios ------------------------------------------------------------

# Runs one scenario through gateway $1 with extra test-client args ($2..),
# echoing its output and keeping a copy in .run/test-client-$1.log.
# Usage: run_scenario N BEFORE_SUBCOMMAND_ARGS... -- AFTER_SUBCOMMAND_ARGS...
run_scenario() {
    local n=$1 before=() after=() seen_sep=0 status=0 arg
    shift
    for arg in "$@"; do
        if [[ "$arg" == "--" ]]; then
            seen_sep=1
        elif ((seen_sep)); then
            after+=("$arg")
        else
            before+=("$arg")
        fi
    done
    local cmd=("$bin_dir/test-client" --addr "127.0.0.1:$((5000 + n - 1))" "${before[@]}" scenario "${after[@]}")
    say "scenario via gateway-$n: ${cmd[*]#"$root"/}"
    # The client runs in the background and we `wait` for it, because bash
    # defers traps until a foreground command ends: this way TERM/Ctrl-C on
    # the script stops the run at once (cleanup TERMs `timeout`, which
    # passes it on). `timeout`: a hung client must not hang the run.
    local out tee_pid
    exec {out}> >(tee "$run_dir/test-client-$n.log")
    tee_pid=$!
    timeout 120 "${cmd[@]}" >&"$out" 2>&1 &
    client_pid=$!
    wait "$client_pid" || status=$?
    client_pid=""
    exec {out}>&-
    wait "$tee_pid" 2>/dev/null || true # all output shown before we go on
    ((status != 124)) || warn "test client via gateway-$n timed out after 120 s"
    return "$status"
}

failed=0
for ((n = 1; n <= gateways; n++)); do
    status=0
    if ((n == 1 && gateways >= 2)); then
        # Cross-gateway steps: the duplicate login happens on the second
        # gateway (127.0.0.1:5001) and the resume back on the first.
        run_scenario 1 -- --addr2 127.0.0.1:5001 || status=$?
    else
        run_scenario "$n" -- || status=$?
    fi
    if ((status == 0)); then
        say "scenario via gateway-$n: PASSED"
    else
        say "scenario via gateway-$n: FAILED (exit $status)"
        failed=$((failed + 1))
    fi
done

# Waits for the two clients the caller started into pair_pids (chat or
# arena), prints their logs (.run/KIND-USER.log, each line prefixed with
# [KIND user-USER]) and says whether CHECK passed, counting a failure.
#   finish_pair KIND CHECK USER...
finish_pair() {
    local kind=$1 check=$2 status=0 pair_pid user
    shift 2
    for pair_pid in "${pair_pids[@]}"; do
        wait "$pair_pid" || status=1
    done
    pair_pids=()
    for user in "$@"; do
        sed "s/^/[$kind user-$user] /" "$run_dir/$kind-$user.log"
    done
    if ((status == 0)); then
        say "$check: PASSED"
    else
        say "$check: FAILED"
        failed=$((failed + 1))
    fi
}

# ---- chat ------------------------------------------------------------------

# Two scripted chat clients, on the first and the last gateway and (with 2+
# game servers) on game servers 1 and M, talk in the default room
# `general` and whisper to each other. Each script waits (/expect) for the
# other's lines, so the exchange is deterministic; output in
# .run/chat-<user>.log.
run_chat() {
    local user=$1 gw=$2 gs=$3 script=$4 target=()
    ((game_servers >= 2)) && target=(--on-game-server "$gs")
    printf '%s\n' "$script" |
        timeout 60 "$bin_dir/test-client" --addr "127.0.0.1:$((5000 + gw - 1))" --timeout-ms 10000 \
            chat --user "$user" --linger-ms 300 "${target[@]}" >"$run_dir/chat-$user.log" 2>&1
}

say "chat: user 1001 via gateway-1, user 1002 via gateway-$gateways (game servers 1 and $game_servers)"
chat_a=$'/join general\n/expect user-1002\nhello from user-1001\n/expect user-1002: hi user-1001\n/w 1002 psst, this is private\n/expect [whisper] user-1002: got it'
chat_b=$'/join general\n/expect user-1001: hello from user-1001\nhi user-1001\n/expect [whisper] user-1001: psst\n/w 1001 got it\n/list'
run_chat 1001 1 1 "$chat_a" &
pair_pids+=("$!")
run_chat 1002 "$gateways" "$game_servers" "$chat_b" &
pair_pids+=("$!")
finish_pair chat "chat between two clients" 1001 1002

# ---- arena -----------------------------------------------------------------

# Two scripted players (test-client arena-demo) in one arena room, on the
# first and the last gateway and (with 2+ game servers) on game servers 1
# and M: each moves, prints every 20th state it receives, and passes only
# if it saw the other player and every tick once, in order. The room runs
# on one game server for the whole cluster; the other player's moves
# reach it over the mesh. Output in .run/arena-<user>.log.
run_arena() {
    local user=$1 gw=$2 gs=$3 other=$4 moves=$5 target=()
    ((game_servers >= 2)) && target=(--on-game-server "$gs")
    timeout 60 "$bin_dir/test-client" --addr "127.0.0.1:$((5000 + gw - 1))" --timeout-ms 10000 \
        arena-demo --room sample --user "$user" "${target[@]}" --moves "$moves" --see "$other" \
        --secs 3 >"$run_dir/arena-$user.log" 2>&1
}

say "arena: user 2001 via gateway-1, user 2002 via gateway-$gateways (game servers 1 and $game_servers), room 'sample'"
run_arena 2001 1 1 2002 RRRD &
pair_pids+=("$!")
run_arena 2002 "$gateways" "$game_servers" 2001 DDLR &
pair_pids+=("$!")
finish_pair arena "two players in one arena" 2001 2002

# ---- the arena in a browser ------------------------------------------------

# `test-client web` serves the page on 127.0.0.1:8080 for gateway 1's
# WebSocket port; the page logs in and plays the arena in a browser. Checked
# here: the page and its config (naming that port) are served; the page in
# a real browser is clients/typescript/test/browser.test.ts's job.
web_url=""
start_web() {
    local log="$run_dir/web.log" ws="ws://127.0.0.1:5100" pid deadline
    start_proc "web" "$log" "$bin_dir/test-client" web --gateway-ws "$ws" \
        --listen "127.0.0.1:$web_port" --dir "$web_dir"
    pid=${pids[-1]}
    deadline=$((SECONDS + 10))
    until grep -q "open http" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            cat "$log" >&2
            warn "test-client web did not print its URL"
            return 1
        fi
        sleep 0.1
    done
    web_url=$(grep -o "http://[^ ]*" "$log" | head -n 1)
    if ! http_get 127.0.0.1 "$web_port" /config.json | grep -qF "\"gatewayWs\":\"$ws\""; then
        warn "$web_url""config.json does not name $ws"
        return 1
    fi
    if ! http_get 127.0.0.1 "$web_port" / | grep -q 'src="arena.js"'; then
        warn "$web_url does not serve the arena page"
        return 1
    fi
}

if ((web)); then
    if start_web; then
        say "arena in a browser: $web_url serves the page, playing through ws://127.0.0.1:5100 (gateway-1)"
    else
        say "arena in a browser: FAILED"
        failed=$((failed + 1))
    fi
fi

# ---- jobs and events -------------------------------------------------------

# One client per gateway stays logged in for a while and prints the notices
# it gets: the daily reset (every 10 s here) and the start and end of an
# event scheduled by the admin command. Needs Redis (jobs live there).
show_jobs_and_events() {
    local listen=16 n log listeners=() pid status=0 ok=1 deadline want
    local client=("$bin_dir/test-client" --timeout-ms 5000)
    for ((n = 1; n <= gateways; n++)); do
        log="$run_dir/notices-$n.log"
        start_proc "listener-$n" "$log" \
            "${client[@]}" --addr "127.0.0.1:$((5000 + n - 1))" login --user $((9000000 + n)) --listen-secs "$listen"
        listeners+=("${pids[-1]}")
    done
    deadline=$((SECONDS + 10))
    for ((n = 1; n <= gateways; n++)); do
        until grep -q "listening for notices" "$run_dir/notices-$n.log"; do
            if ((SECONDS >= deadline)); then
                cat "$run_dir/notices-$n.log" >&2
                warn "listener-$n did not log in"
                return 1
            fi
            sleep 0.1
        done
    done
    say "admin: scheduling event 'Double XP': starts in 3 s, lasts 5 s"
    "${client[@]}" admin "${redis_args[@]}" event schedule --name "Double XP" --start-in 3s --duration 5s || return 1
    "${client[@]}" admin "${redis_args[@]}" jobs list || return 1
    say "waiting ${listen} s for the listeners' notices"
    for pid in "${listeners[@]}"; do
        wait "$pid" || status=$?
        forget_proc "$pid" # ended as planned: not a death for --keep's watch
    done
    ((status == 0)) || warn "a listener exited with status $status"
    for ((n = 1; n <= gateways; n++)); do
        log="$run_dir/notices-$n.log"
        printf -- '---- %s ----\n' "${log#"$root"/}"
        cat "$log"
        for want in "notice: daily_reset" "notice: event_start" "notice: event_end"; do
            if ! grep -q "$want" "$log"; then
                warn "listener-$n never printed '$want'"
                ok=0
            fi
        done
    done
    "${client[@]}" admin "${redis_args[@]}" jobs failed || return 1
    ((ok && status == 0))
}

if [[ ${#store_args[@]} -eq 0 ]]; then
    if show_jobs_and_events; then
        say "jobs and events: every listener got the daily reset and the event's start and end"
    else
        say "jobs and events: FAILED"
        failed=$((failed + 1))
    fi
else
    warn "no Redis: skipping the jobs and events sample"
fi

# ---- logs and result -------------------------------------------------------

echo "==== logs ===="
dump_logs 40

if [[ -n "$web_url" ]]; then
    say "the arena in a browser: open $web_url (two tabs, two user ids, one room; arrow keys move)"
    ((keep)) || say "(the cluster stops when this script ends: ./run-sample.sh --keep leaves it up to play)"
fi

if ((failed > 0)); then
    say "$failed check(s) FAILED (scenario runs, chat, arena, browser arena, jobs and events)"
    exit 1
fi
page=""
[[ -n "$web_url" ]] && page=", the browser arena's page"
if [[ ${#store_args[@]} -eq 0 ]]; then
    say "all $gateways scenario run(s), the chat, the arena$page, and the jobs and events sample passed"
else
    say "all $gateways scenario run(s), the chat and the arena$page passed (jobs and events need Redis: skipped)"
fi
if ((keep)); then
    say "cluster kept running; watch it: scripts/top.sh (admin ports $admin_list); Ctrl-C stops it"
    [[ -z "$web_url" ]] || say "play the arena in a browser: $web_url"
    while true; do
        check_alive
        sleep 1
    done
fi
