#!/usr/bin/env bash
# Soak: the chaos cluster (Redis, 2 game servers running the arena
# sample's arena-server, 2 gateways) under mixed load for N minutes while
# the fault schedule of chaos.sh repeats (kill -9 and restart each game
# server, SIGSTOP one, kill -9 and restart Redis, kill -9 and restart
# gateway 1). The load:
#
#   test-client chaos --mix: sessions incrementing counters (retried with
#     the same sequence id, resuming through the other gateway, and
#     resuming on their own now and then), players who log in, echo and
#     leave, and chat rooms (a post seen twice is counted);
#   test-client bench --mode arena: arena rooms, in rounds, through each
#     gateway in turn.
#
# At the end it prints one table: requests, hung, executed twice,
# acknowledged writes lost, sessions doubled, kicks by reason, the arena's
# counts, kill-to-served per fault, and the RSS and open fds of every
# process at the start and at the end. Exits non-zero if a must-be-zero is
# not zero.
#
#   ./scripts/soak.sh --minutes 30
set -euo pipefail

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF2'

Options:
  --minutes N    minutes of load (default 10, at least 1)
  --sessions N   incrementing sessions (default 50; a fifth as many
                 churning players and chat members run beside them)
  --arena N      arena players per round (default 16)
  --release      build and use release binaries (default: debug)
  --no-build     use the binaries already built
  -h, --help     this help
Logs: .soak/*.log (kept), process samples every cycle in .soak/stats.tsv.
EOF2
}

minutes=10
sessions=50
arena=16

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
parse_run_options "minutes sessions arena" "$@"
at_least minutes 1

start_cluster_run soak gamemesh-arena arena-server
# shellcheck source=scripts/cluster.sh
source "$root/scripts/cluster.sh"
arena_loop=
cleanup() {
    [[ -n $arena_loop ]] && kill "$arena_loop" 2>/dev/null
    cluster_cleanup
}
trap cleanup EXIT

roles=(redis gs1 gs2 gw1 gw2)
declare -A start_stats=()

# One line per process to .soak/stats.tsv: when, role, pid, RSS kB, fds.
sample() {
    local now name
    now=$(date +%s)
    for name in "${roles[@]}" client; do
        local p=${pid[$name]:-}
        [[ $name == client ]] && p=$client
        [[ -n $p ]] || continue
        printf '%s\t%s\t%s\t%s\n' "$now" "$name" "$p" "$(proc_stats "$p" | tr ' ' '\t')" >>"$out/stats.tsv"
    done
}

start_cluster
seconds=$((minutes * 60))
end=$((SECONDS + seconds))

say "load: $sessions sessions (mixed) and $arena arena players for $minutes min"
NO_COLOR=1 "$bin/test-client" --addr "127.0.0.1:${port[gw1_client]}" chaos \
    --addr2 "127.0.0.1:${port[gw2_client]}" --sessions "$sessions" --mix \
    --duration "$seconds" --redis "redis://127.0.0.1:${port[redis]}" \
    --deadline-ms 5000 --faults-file "$faults" \
    >"$out/chaos.out" 2>"$out/chaos.log" &
client=$!
pid[client]=$client

# Arena rounds of 30 s, alternating gateways, until the end. A round whose
# gateway or game server is killed under it ends with errors: counted, not
# a failure (the arena's rooms are not resumed; its failover has its own
# test, integration-tests/tests/arena_failover.rs).
(
    round=0
    while ((SECONDS + 35 < end)); do
        gw=gw$((round % 2 + 1))
        NO_COLOR=1 "$bin/test-client" --addr "127.0.0.1:${port[${gw}_client]}" bench \
            --mode arena --conns "$arena" --room-size 8 --duration 30 \
            >>"$out/arena.jsonl" 2>>"$out/arena.log" || true
        round=$((round + 1))
        sleep 1
    done
) &
arena_loop=$!

sleep 5
for name in "${roles[@]}" client; do
    p=${pid[$name]}
    start_stats[$name]=$(proc_stats "$p")
done
sample

cycle=0
while ((SECONDS + 50 < end)); do
    cycle=$((cycle + 1))
    say "fault schedule, cycle $cycle"
    fault_schedule restart
    sample
done

status=0
wait "$client" || status=$?
wait "$arena_loop" 2>/dev/null || true
arena_loop=

# The end: every process as it is now (restarted ones under their new pid).
declare -A end_stats=()
for name in "${roles[@]}" client; do
    p=${pid[$name]:-$client}
    end_stats[$name]=$(proc_stats "$p")
done
# The client has exited: its end is its last sample.
end_stats[client]=$(awk -F'\t' '$2=="client" {r=$4" "$5} END {print r}' "$out/stats.tsv")

mib() { [[ $1 == - ]] && echo - || awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
row() { printf '| %-34s | %9s | %-16s |\n' "$1" "$2" "${3:-}"; }
{
    echo "soak: $minutes min, $cycle fault cycles, $sessions incrementing sessions + mixed load, $arena arena players per round"
    echo
    # The chaos client's table (requests, must-be-zeros, kicks by reason,
    # kill-to-served per fault), then the rest of the soak's rows.
    sed -n '2,$p' "$out/chaos.out" | sed '/^$/,$d'
    python3 - "$out/arena.jsonl" <<'PY'
import json, sys
rounds = states = moves = errors = disorder = 0
for line in open(sys.argv[1], errors="replace"):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    rounds += 1
    states += r.get("msgs", 0)
    moves += r.get("moves", 0)
    errors += r.get("errors", 0)
    disorder += r.get("ticks_out_of_order", 0)
row = lambda n, v, z="": print(f"| {n:<34} | {v:>9} | {z:<16} |")
row("arena rounds (30 s each)", rounds)
row("arena states received", states)
row("arena moves answered", moves)
row("arena errors (rounds hit by faults)", errors)
row("arena states out of order", disorder, "ok (must be 0)" if disorder == 0 else "FAIL (must be 0)")
PY
    for name in "${roles[@]}" client; do
        read -r rss0 fd0 <<<"${start_stats[$name]}"
        read -r rss1 fd1 <<<"${end_stats[$name]}"
        row "$name RSS MiB, start -> end" "$(mib "$rss0")->$(mib "$rss1")"
        row "$name open fds, start -> end" "$fd0->$fd1"
    done
    echo
    sed -n '/^| fault/,$p' "$out/chaos.out"
} | tee "$out/table.md"

disorder=$(grep -F 'arena states out of order' "$out/table.md" | grep -c FAIL || true)
if ((status != 0 || disorder != 0)); then
    say "FAILED: a must-be-zero is not zero (or the load could not run): see $out/chaos.log and the logs in $out"
    tail -n 5 "$out/chaos.log" >&2 || true
    exit 1
fi
say "PASSED: logs in $out"
