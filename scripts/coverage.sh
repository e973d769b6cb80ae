#!/usr/bin/env bash
# Line coverage of overlay-proto and svc-overlay (the driver, overlay-driver-tokio/) together, from those two crates' own
# tests (unit and integration tests, and the daemon binary those tests start).
#
#   scripts/coverage.sh                    # last line: `line coverage: NN.N%`
#   COVERAGE_MIN=85 scripts/coverage.sh    # also fails below 85 %
#   COVERAGE_KEEP=1 scripts/coverage.sh    # keep target/coverage (instrumented build, report)
#                                          # and reuse it next time
#
# LLVM source-based coverage (`-C instrument-coverage`) applied to the workspace crates only,
# through RUSTC_WORKSPACE_WRAPPER: dependencies are not instrumented, so their normal build is
# reused. target/coverage starts as a hard-linked copy of target/debug (no disk, no rebuild of
# dependencies when a test build exists) and is removed at the end. Profiles are read with
# llvm-profdata / llvm-cov: the toolchain's llvm-tools component when installed, else the
# system's LLVM (19 or newer reads rustc 1.95's profiles); scripts/ci-tools.sh coverage
# installs Debian's llvm-19 when neither is there. Doc tests are not run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS

find_llvm_tool() { # name -> path of llvm-<name>, or nothing
    local name=$1 sysroot v
    sysroot=$(rustc --print sysroot)
    for p in "$sysroot"/lib/rustlib/*/bin/llvm-"$name"; do
        [ -x "$p" ] && { echo "$p"; return; }
    done
    for v in 25 24 23 22 21 20 19; do
        for p in "/usr/lib/llvm-$v/bin/llvm-$name" "$(command -v "llvm-$name-$v" || true)"; do
            [ -n "$p" ] && [ -x "$p" ] && { echo "$p"; return; }
        done
    done
}

profdata=$(find_llvm_tool profdata)
if [ -z "$profdata" ]; then
    scripts/ci-tools.sh coverage >&2
    profdata=$(find_llvm_tool profdata)
fi
llvm_cov=$(find_llvm_tool cov)
[ -n "$profdata" ] && [ -n "$llvm_cov" ] || {
    echo "coverage: no llvm-profdata / llvm-cov (LLVM >= 19) found" >&2
    exit 1
}

target=$root/target/coverage
report=$target/report
# COVERAGE_KEEP=1 keeps target/coverage after the run and reuses it on the next one.
[ -n "${COVERAGE_KEEP:-}" ] || rm -rf "$target"
rm -rf "$report"
mkdir -p "$target" "$report/profraw"
if [ -d target/debug ] && [ ! -d "$target/debug" ]; then
    # Hard links: the dependencies' artifacts are reused as they are. The instrumented
    # workspace crates get other artifact names (cargo hashes the workspace wrapper into
    # them), but cargo rewrites fingerprints, dep-info files and its lock file in place:
    # those are copied, so that nothing written here changes target/debug.
    cp -al target/debug "$target/debug"
    rm -rf "$target/debug/.fingerprint"
    cp -a target/debug/.fingerprint "$target/debug/.fingerprint"
    find "$target/debug" -maxdepth 1 -type f \( -name '*.d' -o -name .cargo-lock \) -exec sh -c \
        'for f; do cp -p "$f" "$f.cov-new" && mv -f "$f.cov-new" "$f"; done' sh {} +
    [ -e target/.rustc_info.json ] && cp target/.rustc_info.json "$target/"
fi
cleanup() {
    [ -n "${COVERAGE_KEEP:-}" ] || rm -rf "$target"
}
trap cleanup EXIT

export CARGO_TARGET_DIR=$target
export CARGO_INCREMENTAL=0
export RUSTC_WORKSPACE_WRAPPER=$root/scripts/coverage-rustc.sh
# %8m: one pool of 8 files per binary, merged online (disk stays small however many
# processes the tests start).
export LLVM_PROFILE_FILE=$report/profraw/cov-%8m.profraw
packages=(-p overlay-proto -p svc-overlay)
targets=(--lib --bins --tests)

build_start=$SECONDS
cargo test "${packages[@]}" "${targets[@]}" --no-run --message-format=json-render-diagnostics \
    >"$report/build.json"
echo "coverage: instrumented build $((SECONDS - build_start)) s" >&2
test_start=$SECONDS
# Every test binary runs even when one fails (the figure is still printed); a failure fails
# the script at the end.
tests_status=0
cargo test "${packages[@]}" "${targets[@]}" --no-fail-fast >&2 || tests_status=$?
echo "coverage: tests $((SECONDS - test_start)) s" >&2

# Every instrumented executable: the test binaries and the daemon binary the tests start.
mapfile -t objects < <(python3 - "$report/build.json" <<'EOF'
import json, sys
seen = set()
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe and exe not in seen:
        seen.add(exe)
        print(exe)
EOF
)
[ ${#objects[@]} -gt 0 ] || { echo "coverage: no test executables were built" >&2; exit 1; }
object_args=()
for o in "${objects[@]}"; do object_args+=(-object "$o"); done

"$profdata" merge -sparse "$report"/profraw/*.profraw -o "$report/merged.profdata"
"$llvm_cov" export -summary-only -instr-profile "$report/merged.profdata" "${object_args[@]}" \
    >"$report/export.json"

# Lines of the two crates' src/ trees (unit-test modules inside them included, as cargo-llvm-cov
# counts them); per-file figures, lowest first, in target/coverage/report/files.txt.
pct=$(python3 - "$report/export.json" "$root" "$report/files.txt" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
root = sys.argv[2].rstrip("/") + "/"
crates = ("overlay-proto/src/", "overlay-driver-tokio/src/")
files = {}
for f in data["data"][0]["files"]:
    name = f["filename"]
    rel = name[len(root):] if name.startswith(root) else name
    if rel.startswith(crates):
        lines = f["summary"]["lines"]
        files[rel] = (lines["covered"], lines["count"])
covered = sum(c for c, _ in files.values())
total = sum(n for _, n in files.values())
with open(sys.argv[3], "w") as out:
    rows = sorted(files.items(), key=lambda kv: (kv[1][0] / max(kv[1][1], 1), kv[0]))
    for rel, (c, n) in rows:
        out.write("%6.1f%% %6d/%-6d %s\n" % (100.0 * c / max(n, 1), c, n, rel))
    out.write("total %d/%d lines in %d files\n" % (covered, total, len(files)))
print("%.1f" % (100.0 * covered / max(total, 1)))
EOF
)
tail -n 1 "$report/files.txt" >&2
if [ -n "${COVERAGE_KEEP:-}" ]; then
    echo "coverage: per-file figures in $report/files.txt" >&2
fi
echo "coverage: $((SECONDS - start)) s in all" >&2
echo "line coverage: ${pct}%"
if [ "$tests_status" -ne 0 ]; then
    echo "coverage: some tests failed (exit $tests_status)" >&2
    exit "$tests_status"
fi
if [ -n "${COVERAGE_MIN:-}" ]; then
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' \
        "$pct" "$COVERAGE_MIN" || {
        echo "coverage ${pct}% is below ${COVERAGE_MIN}%" >&2
        exit 1
    }
fi
