#!/usr/bin/env bash
# A/B of the link bench: two builds of benches/link (OLD: a checkout of
# the commit before batching with old_api.rs copied over api.rs; NEW: this
# tree), both consumers, alternating within every round, so that the noise
# of a shared machine hits both alike. Summarize with summarize.py.
#
#   OLD=/path/link-old NEW=/path/link-new ab.sh ROUNDS SECS > ab.txt
#   python3 summarize.py ab.txt
#
# Cargo names both builds' binary the same (target/release/deps/link-*):
# copy each out right after building it.
set -euo pipefail
rounds=${1:-9}
secs=${2:-3}
for r in $(seq 1 "$rounds"); do
  echo "round=$r load=$(cut -d' ' -f1 /proc/loadavg)"
  for v in old:simple new:simple old:batch new:batch; do
    which=${v%%:*}
    consumer=${v##*:}
    if [ "$which" = old ]; then bin=$OLD; else bin=$NEW; fi
    timeout 120 "$bin" --secs "$secs" --consumer "$consumer" 2>&1 | grep '^case=' |
      sed "s/^/round=$r link=$which consumer=$consumer /"
  done
done
