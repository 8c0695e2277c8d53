#!/usr/bin/env bash
# Live cluster view in the terminal: nodes, connections, sessions,
# packets/s and p99 handler latency, refreshed every second, read from the
# nodes' admin ports (/metrics). A thin wrapper over `test-client top`.
#
#   scripts/top.sh                          # the nodes run-sample.sh started
#   scripts/top.sh 10.0.0.5:9190,10.0.0.6:9191
#   GAMEMESH_ADMIN=host:9190 scripts/top.sh --count 5
#
# Admin ports, first found: the first argument (if it is not a flag),
# $GAMEMESH_ADMIN, .run/admin-ports (written by run-sample.sh), then the
# defaults 127.0.0.1:9190 (gateway) and 127.0.0.1:9191 (game server).
# Other arguments go to `test-client top` (--interval-ms, --count).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

admin=""
if [[ $# -gt 0 && "$1" != -* ]]; then
    admin=$1
    shift
elif [[ -n "${GAMEMESH_ADMIN:-}" ]]; then
    admin=$GAMEMESH_ADMIN
elif [[ -s "$root/.run/admin-ports" ]]; then
    admin=$(<"$root/.run/admin-ports")
else
    admin="127.0.0.1:9190,127.0.0.1:9191"
fi

# The release build run-sample.sh makes, else whatever cargo builds.
bin="$root/target/release/test-client"
if [[ -x "$bin" ]]; then
    exec "$bin" top --admin "$admin" "$@"
fi
cd "$root"
exec cargo run -q -p gamemesh-test-client -- top --admin "$admin" "$@"
