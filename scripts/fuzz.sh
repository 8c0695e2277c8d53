#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (the wire contract under bad input),
# one after the other, each for a given time:
#
#   ./scripts/fuzz.sh                  # every target, 600 s each
#   ./scripts/fuzz.sh 60 frame_decoder # one target, 60 s
#
# Targets: frame_decoder (FrameCodec fed arbitrary bytes in arbitrary
# chunks), client_packet (ClientPacket::decode + peek_sequence_id),
# internal_envelope (GatewayToServer, ServerToGateway, MeshMessage,
# ReplyCache from garbage).
#
# Prints one line per target and exits non-zero if any target crashed.
# Corpora grow in fuzz/corpus/<target> and are reused by the next run;
# crashing inputs land in fuzz/artifacts/<target>/, next to that target's
# full libFuzzer log (fuzz.log). All three are gitignored.
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer); RUSTC_BOOTSTRAP=1
# lets the stable toolchain accept them, so no nightly install is needed.
# Builds are release with debug assertions (-a), so integer overflow panics.
# Extra libFuzzer flags can be passed in FUZZ_ARGS (e.g. FUZZ_ARGS=-jobs=2).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
    printf 'fuzz.sh: %s\n' "$*" >&2
    exit 2
}

seconds="${1:-600}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] \
    || die "usage: $0 [SECONDS (default 600)] [TARGET...]; got seconds '$seconds'"
shift || true

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked
fi

mapfile -t all_targets < <(cargo fuzz list)
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all_targets[@]}")
fi
for t in "${targets[@]}"; do
    printf '%s\n' "${all_targets[@]}" | grep -qx -- "$t" \
        || die "unknown target '$t'; known: ${all_targets[*]}"
done

# A few valid inputs so each run starts from real messages rather than from
# nothing (libFuzzer finds the rest). Written only into an empty corpus.
seed() {
    local dir="fuzz/corpus/$1"
    mkdir -p "$dir"
    [[ -z "$(ls -A "$dir")" ]] || return 0
    case "$1" in
    frame_decoder)
        # [max selector: 0xffff -> max 4095][chunk plan: 8 sizes][frames]
        printf '\xff\xff\x00\x01\x02\x03\x07\x0f\x1f\x3f\x00\x00\x00\x03abc\x00\x00\x00\x05defgh' >"$dir/seed-two-frames"
        printf '\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07\x08\x01\x62\x03\x0a\x01x' >"$dir/seed-default-max"
        printf '\x05\x00\x01\x01\x01\x01\x01\x01\x01\x01\x00\x00\x01\x00' >"$dir/seed-oversize"
        ;;
    client_packet)
        # seq 1, Echo{data: "x"}; seq 300, Login{user_id 7, token "t"}
        printf '\x08\x01\x62\x03\x0a\x01x' >"$dir/seed-echo"
        printf '\x08\xac\x02\x52\x05\x08\x07\x12\x01t' >"$dir/seed-login"
        ;;
    internal_envelope)
        # GatewayToServer{ClientFrame{socket_id: 16 bytes, session_id 5, body: Echo}}
        printf '\x1a\x1f\x0a\x10AAAAAAAAAAAAAAAA\x10\x05\x1a\x07\x08\x01\x62\x03\x0a\x01x' >"$dir/seed-client-frame"
        # ReplyCache{[CachedReply{seq 1, body "\x08\x01"}]}
        printf '\x0a\x06\x08\x01\x12\x02\x08\x01' >"$dir/seed-reply-cache"
        ;;
    esac
}

echo "fuzz.sh: building targets" >&2
cargo fuzz build -a >&2

failed=0
results=()
for t in "${targets[@]}"; do
    seed "$t"
    mkdir -p "fuzz/artifacts/$t"
    log="fuzz/artifacts/$t/fuzz.log"
    echo "fuzz.sh: $t for ${seconds}s (log: $log)" >&2
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    cargo fuzz run -a "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -malloc_limit_mb=256 \
        -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    stats=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9a-zA-Z]*' | tail -n1)
    if [[ $rc -eq 0 ]]; then
        line="$t: ok, ${execs:-?} execs in ${seconds}s, ${stats:-no stats}"
    else
        failed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | head -n1)
        line="$t: CRASHED (exit $rc) after ${execs:-?} execs, ${stats:-no stats}, input: ${artifact:-see $log}"
        grep -m1 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | sed 's/^/    /' >&2 || true
    fi
    echo "$line" >&2
    results+=("$line")
done

echo
printf '%s\n' "${results[@]}"
if [[ $failed -ne 0 ]]; then
    echo "fuzz.sh: a target crashed. Reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -a TARGET INPUT;" \
        "minimize: RUSTC_BOOTSTRAP=1 cargo fuzz tmin -a TARGET INPUT" >&2
    exit 1
fi
