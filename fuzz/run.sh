#!/usr/bin/env bash
# Runs one cargo-fuzz target for a given time; exits non-zero when it finds a crash.
#
#   fuzz/run.sh TARGET SECONDS [libFuzzer options...]
#   fuzz/run.sh all SECONDS            # every target in turn, SECONDS each
#
# Installs cargo-fuzz when missing (scripts/ci-tools.sh). Uses the nightly toolchain with
# AddressSanitizer when one is installed, otherwise stable without a sanitizer; override with
# FUZZ_TOOLCHAIN=stable|nightly and FUZZ_SANITIZER=address|none. The run reads the committed
# seeds (fuzz/seeds/TARGET) and grows the git-ignored corpus (fuzz/corpus/TARGET); a crash
# lands in fuzz/artifacts/TARGET/ and is reproduced with `cargo fuzz run TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(frame_decode token_verify node_input gossip_decode node_sequence)

usage() {
    echo "usage: fuzz/run.sh TARGET|all SECONDS [libFuzzer options...]" >&2
    echo "targets: ${TARGETS[*]}" >&2
    exit 2
}

[ $# -ge 2 ] || usage
target=$1
seconds=$2
shift 2
[[ "$seconds" =~ ^[0-9]+$ ]] || usage

if [ "$target" = all ]; then
    for t in "${TARGETS[@]}"; do
        "$0" "$t" "$seconds" "$@"
    done
    exit 0
fi
case " ${TARGETS[*]} " in
    *" $target "*) ;;
    *) usage ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    scripts/ci-tools.sh fuzz
fi

if [ -z "${FUZZ_TOOLCHAIN:-}" ]; then
    if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        FUZZ_TOOLCHAIN=nightly
    else
        FUZZ_TOOLCHAIN=stable
    fi
fi
if [ -z "${FUZZ_SANITIZER:-}" ]; then
    if [ "$FUZZ_TOOLCHAIN" = nightly ]; then FUZZ_SANITIZER=address; else FUZZ_SANITIZER=none; fi
fi
if [ "$FUZZ_TOOLCHAIN" = stable ] && [ "$FUZZ_SANITIZER" != none ]; then
    # The sanitizer flag is nightly-only; stable accepts it when unlocked.
    export RUSTC_BOOTSTRAP=1
fi

corpus=fuzz/corpus/$target
seeds=fuzz/seeds/$target
mkdir -p "$corpus" "fuzz/artifacts/$target"
dirs=("$corpus")
[ -d "$seeds" ] && dirs+=("$seeds")

echo "fuzz: $target for ${seconds}s (toolchain $FUZZ_TOOLCHAIN, sanitizer $FUZZ_SANITIZER)"
start=$SECONDS
status=0
cargo "+$FUZZ_TOOLCHAIN" fuzz run --sanitizer "$FUZZ_SANITIZER" "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -max_len="${FUZZ_MAX_LEN:-8192}" -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 "$@" 2>"fuzz/artifacts/$target/last-run.log" \
    || status=$?
grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' \
    "fuzz/artifacts/$target/last-run.log" || true
if [ "$status" -ne 0 ]; then
    tail -n 60 "fuzz/artifacts/$target/last-run.log" >&2
    echo "fuzz: $target FAILED (exit $status) after $((SECONDS - start)) s; see fuzz/artifacts/$target/" >&2
    exit "$status"
fi
echo "fuzz: $target ok, 0 crashes in $((SECONDS - start)) s (build included)"
