# shellcheck shell=bash
# Shared by run-sample.sh, scripts/test.sh and scripts/bench.sh (sourced,
# not run).

# Runs "$@" as root: directly when we are root, else through sudo, which
# prompts for a password only when someone can type it. False when neither
# is possible.
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
    else
        return 1
    fi
}
