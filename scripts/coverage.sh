#!/usr/bin/env bash
# Line coverage of overlay-proto and overlay-driver-tokio together, from their own tests.
#
#   scripts/coverage.sh            # last line: `line coverage: NN.N%`
#   COVERAGE_MIN=85 scripts/coverage.sh   # also fails below 85 %
#
# Uses cargo-llvm-cov when the toolchain has llvm-tools (`rustup component add llvm-tools`),
# cargo-tarpaulin (LLVM engine) otherwise; scripts/ci-tools.sh installs whichever is missing.
# Instrumented builds go to target/coverage so they do not evict the normal build.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ci-tools.sh coverage >&2
export CARGO_TARGET_DIR=${COVERAGE_TARGET_DIR:-target/coverage}
out=$CARGO_TARGET_DIR/coverage-report
mkdir -p "$out"
packages=(-p overlay-proto -p overlay-driver-tokio)
# Library code of the two crates only: no tests, benches, examples or other crates.
ignore='(overlay-sim|tests|fuzz)/|/(tests|benches|examples)/'

sysroot=$(rustc --print sysroot)
if compgen -G "$sysroot/lib/rustlib/*/bin/llvm-profdata" >/dev/null; then
    cargo llvm-cov "${packages[@]}" --ignore-filename-regex "$ignore" --summary-only \
        --json --output-path "$out/llvm-cov.json" >&2
    pct=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.1f" % d["data"][0]["totals"]["lines"]["percent"])' "$out/llvm-cov.json")
else
    cargo tarpaulin "${packages[@]}" --engine llvm --skip-clean --timeout 600 \
        --exclude-files 'overlay-sim/*' 'tests/*' 'fuzz/*' '*/tests/*' '*/benches/*' '*/examples/*' \
        --out Json --output-dir "$out" >&2
    pct=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
covered = sum(1 for f in d["files"] for t in f["traces"] if t["stats"]["Line"] > 0)
total = sum(len(f["traces"]) for f in d["files"])
print("%.1f" % (100.0 * covered / max(total, 1)))' "$out/tarpaulin-report.json")
fi
echo "line coverage: ${pct}%"
if [ -n "${COVERAGE_MIN:-}" ]; then
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$pct" "$COVERAGE_MIN" \
        || { echo "coverage ${pct}% is below ${COVERAGE_MIN}%" >&2; exit 1; }
fi
