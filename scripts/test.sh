#!/usr/bin/env bash
# The one command that runs every check and test of the workspace, on a fresh
# Debian machine or in CI:
#
#   ./scripts/test.sh            # fmt --check, clippy -D warnings, all tests
#   ./scripts/test.sh -E 'test(redis)'   # extra args go to the test runner
#
# Tests that need Redis start their own redis-server (gamemesh-test-support)
# and FAIL when it is missing, so this script installs it first. Debug builds
# only: nothing here builds --release.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# CI logs are not terminals: no colour codes in them.
# (rustfmt ignores CARGO_TERM_COLOR, hence its own flag.)
fmt_color=()
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_TERM_COLOR=never NO_COLOR=1
    fmt_color=(--color never)
fi

step_no=0
step() {
    step_no=$((step_no + 1))
    printf '\n==== [%d] %s ====\n' "$step_no" "$*"
}

die() {
    printf 'test.sh: %s\n' "$*" >&2
    exit 1
}

# Runs a command as root: directly if we are root, via sudo if it can work
# (non-interactively unless a terminal can answer a password prompt).
# shellcheck source=scripts/lib.sh
source scripts/lib.sh # we are at the repository root (cd above)

step "prerequisites"

if ! command -v redis-server >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        die "redis-server is not on PATH and apt-get is unavailable: install redis-server (Redis >= 6) with your package manager, then rerun"
    fi
    if [[ "$(id -u)" -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
        die "redis-server is not on PATH and I am not root and have no sudo: run 'apt-get install redis-server' as root, then rerun"
    fi
    echo "redis-server missing: installing it with apt-get"
    if ! { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }; then
        die "could not install redis-server: run 'sudo apt-get install redis-server' yourself, then rerun"
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after installing it"
fi
echo "redis-server: $(command -v redis-server) ($(redis-server --version | cut -d' ' -f3))"
# The Redis TLS tests (tests/redis_security.rs) need a redis-server built
# with TLS, and fail without one. Asked for a TLS port with a certificate
# that does not exist, a build with TLS tries to load it (and exits); a
# build without TLS refuses the directives instead. Nothing is started.
tls_probe=$(timeout 10 redis-server --port 0 --tls-port 1 --tls-cert-file /nonexistent/gamemesh.crt \
    --tls-key-file /nonexistent/gamemesh.key --tls-ca-cert-file /nonexistent/ca.crt \
    --save "" --appendonly no 2>&1 || true)
if ! grep -qi "certificate" <<<"$tls_probe"; then
    die "$(command -v redis-server) was built without TLS, which the Redis TLS tests need.
Debian's and Ubuntu's redis-server package has it (apt-get install redis-server); a source
build needs 'make BUILD_TLS=yes'. Put a redis-server with TLS first on PATH, then rerun.
What it said: $(tail -n 2 <<<"$tls_probe")"
fi
echo "redis-server has TLS"

# The deploy_manifests test checks deploy/systemd/ with systemd-analyze
# verify and the gateway pod's shell script with shellcheck, and fails
# without them; the arena client's tests (test-client/tests/arena_*.rs)
# play it in tmux. Tool, then the Debian package that ships it:
for tool_package in systemd-analyze:systemd shellcheck:shellcheck tmux:tmux; do
    tool="${tool_package%%:*}" package="${tool_package#*:}"
    if ! command -v "$tool" >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 ||
            die "$tool is not on PATH and apt-get is unavailable: install $package, then rerun"
        echo "$tool missing: installing $package with apt-get"
        if ! { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package"; }; then
            die "could not install $package: run 'sudo apt-get install $package' yourself, then rerun"
        fi
    fi
    echo "$tool: $(command -v "$tool")"
done
# The Redis TLS tests make their certificates with the openssl command line
# (tests/redis_security.rs); redis-server's own --sentinel mode needs nothing.
if ! command -v openssl >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
        die "openssl is not on PATH and apt-get is unavailable: install openssl, then rerun"
    echo "openssl missing: installing it with apt-get"
    { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; } ||
        die "could not install openssl: run 'sudo apt-get install openssl' yourself, then rerun"
fi

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    # rustup installed but this shell never sourced ~/.cargo/env.
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    die "cargo not found: install Rust with
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\"
then rerun"
fi
for component in fmt clippy; do
    if ! cargo "$component" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 ||
            die "cargo $component is missing and rustup is not available to add it: install rustfmt and clippy for your toolchain"
        case "$component" in
            fmt) rustup component add rustfmt ;;
            clippy) rustup component add clippy ;;
        esac
    fi
done
echo "cargo: $(cargo --version)"

step "cargo fmt --all -- --check"
cargo fmt --all -- --check "${fmt_color[@]}"

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# --no-fail-fast: one run should show every failure, not just the first.
if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace"
    cargo nextest run --workspace --no-fail-fast "$@"
    # nextest does not run doctests.
    step "cargo test --workspace --doc"
    cargo test --workspace --doc --no-fail-fast
else
    step "cargo test --workspace"
    cargo test --workspace --no-fail-fast "$@"
fi

# The client libraries (clients/): each suite starts its own redis-server,
# game server and gateway, from this checkout's debug binaries (built above).
step "client libraries: Python (pytest) and TypeScript (node --test)"
command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH: install python3 and python3-venv (Python >= 3.10), then rerun"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    die "node or npm is not on PATH: install Node.js >= 20 with npm (apt-get install nodejs npm), then rerun"
fi
if [[ ! -x clients/python/.venv/bin/python ]]; then
    python3 -m venv clients/python/.venv ||
        die "python3 could not make a venv: install python3-venv, then rerun"
fi
clients/python/.venv/bin/python -c 'import gamemesh_client, grpc_tools, pytest' 2>/dev/null ||
    clients/python/.venv/bin/pip install -q -e 'clients/python[dev]'
clients/python/.venv/bin/python clients/python/gen_proto.py --check
(cd clients/python && .venv/bin/python -m pytest -q)
[[ -d clients/typescript/node_modules ]] || (cd clients/typescript && npm ci --no-audit --no-fund)
(cd clients/typescript && npm test)

printf '\n==== all checks passed (%ds) ====\n' "$SECONDS"
