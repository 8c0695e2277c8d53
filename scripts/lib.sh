# shellcheck shell=bash
# Shared by run-sample.sh and the scripts under scripts/ (sourced, not
# run). `ensure` needs the sourcing script's own `say` and `die`.

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

# Installs the Debian packages that provide $2.. if command $1 is missing.
ensure() {
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "$cmd is missing and apt-get is not available: install $*"
    say "$cmd missing: installing $* with apt-get"
    as_root apt-get update -qq >&2 || die "cannot run apt-get (not root, no sudo): install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "installing $* failed"
}
