#!/usr/bin/env bash
# Chaos run: Redis, 2 game servers and 2 gateways on this machine, under
# load from `test-client chaos` (sessions incrementing their counters,
# retrying with the same sequence id, resuming through the other gateway),
# while this script breaks things:
#
#   kill -9 and restart each game server, SIGSTOP/SIGCONT one, restart
#   Redis, kill -9 a gateway (its clients resume through the other).
#
# Then it prints the chaos table, and the kill-to-served table (how long
# after each fault every session's next request was answered: the
# failover time), and exits non-zero if any must-be-zero (hung, executed
# twice, acknowledged increments lost, sessions left doubled) is not zero.
# The cluster and the schedule live in scripts/cluster.sh (soak.sh runs
# the same schedule again and again).
#
#   ./scripts/chaos.sh                     # 50 sessions, 60 s
#   ./scripts/chaos.sh --sessions 100 --duration 90
set -euo pipefail

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
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

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
parse_run_options "sessions duration" "$@"
at_least duration 50 "the fault schedule takes 45 s"

start_cluster_run chaos gamemesh-game-server game-server
# shellcheck source=scripts/cluster.sh
source "$root/scripts/cluster.sh"
trap cluster_cleanup EXIT

start_cluster

say "load: $sessions sessions for $duration s through both gateways"
NO_COLOR=1 "$bin/test-client" --addr "127.0.0.1:${port[gw1_client]}" chaos \
    --addr2 "127.0.0.1:${port[gw2_client]}" --sessions "$sessions" \
    --duration "$duration" --redis "redis://127.0.0.1:${port[redis]}" \
    --deadline-ms 5000 --faults-file "$faults" \
    >"$out/chaos.out" 2>"$out/chaos.log" &
client=$!

fault_schedule

status=0
wait "$client" || status=$?
cat "$out/chaos.out"
if ((status != 0)); then
    say "FAILED: a must-be-zero is not zero (or the load could not run): see $out/chaos.log and the logs in $out"
    tail -n 5 "$out/chaos.log" >&2 || true
    exit 1
fi
say "PASSED: logs in $out"
