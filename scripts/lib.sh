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

# Starts a cluster run named NAME (chaos.sh, soak.sh) in $root, after
# parse_run_options: its logs go to .NAME/ (`out`), emptied first; its
# `say` and `die` (which `ensure` and cluster.sh use) are prefixed [NAME];
# what a local cluster needs is put on PATH; the gateway, the test client
# and GS_PACKAGE are built in `profile` (unless `build` is 0) and their
# binaries checked. Sets `bin` to the binaries' directory and `gs_bin` to
# the game server binary GS_BINARY in it, as cluster.sh wants.
#   start_cluster_run NAME GS_PACKAGE GS_BINARY
start_cluster_run() {
    run_name=$1
    local gs_package=$2 gs_binary=$3
    say() { printf '[%s] %s: %s\n' "$run_name" "$(date +%T)" "$*" >&2; }
    die() { printf '[%s] ERROR: %s\n' "$run_name" "$*" >&2; exit 1; }
    cd "$root"
    out="$root/.$run_name"
    mkdir -p "$out"
    rm -rf "${out:?}"/*
    ensure redis-server redis-server
    ensure redis-cli redis-tools
    ensure python3 python3
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"
    if ((build)); then
        say "building $profile binaries"
        local flags=(-q -p gamemesh-gateway -p "$gs_package" -p gamemesh-test-client)
        [[ $profile == release ]] && flags+=(--release)
        cargo build "${flags[@]}"
    fi
    bin="$root/target/$profile"
    # shellcheck disable=SC2034 # read by cluster.sh
    gs_bin="$bin/$gs_binary"
    local b
    for b in gateway "$gs_binary" test-client; do
        [[ -x $bin/$b ]] || die "$bin/$b is missing: run without --no-build"
    done
}

# Refuses (usage error, exit 2) a `--NAME` option below MIN, saying WHY
# when given.
#   at_least NAME MIN [WHY]
at_least() {
    local name=$1 min=$2 why=${3:+ ($3)}
    ((${!name} >= min)) || {
        echo "$(basename "$0"): --$name must be at least $min$why" >&2
        exit 2
    }
}

# The command line of a cluster run (chaos.sh, soak.sh). Each `--NAME N`
# whose NAME is one of VALUES (space-separated) sets the variable NAME to
# N, so the caller sets its defaults first; --release sets `profile` to
# release (else debug), --no-build sets `build` to 0 (else 1); -h/--help
# prints the caller's `usage` and exits; anything else is a usage error
# (exit 2).
#   parse_run_options "sessions duration" "$@"
parse_run_options() {
    local values=" $1 " script name
    script=$(basename "$0")
    shift
    profile=debug
    build=1
    while [[ $# -gt 0 ]]; do
        name=${1#--}
        case "$1" in
            --release) profile=release; shift ;;
            --no-build) build=0; shift ;;
            -h | --help) usage; exit 0 ;;
            *)
                if [[ $1 == --* && $values == *" $name "* ]]; then
                    [[ $# -ge 2 ]] || { echo "$script: $1 needs a value" >&2; exit 2; }
                    printf -v "$name" '%s' "$2"
                    shift 2
                else
                    usage >&2
                    echo "$script: unknown option $1" >&2
                    exit 2
                fi
                ;;
        esac
    done
}
