#!/usr/bin/env bash
# svc-overlay vs rust-libp2p gossipsub, side by side in one run (issue #10).
#
#   bench/compare.sh                 # mesh N=32 and pair, signed and unsigned
#   NODES=16 MESSAGES=1000 bench/compare.sh
#   MODES="pair" bench/compare.sh
#   OURS_BIN=target/release/deps/overlay_bench-HASH THEIRS_BIN=... bench/compare.sh   # no build
#
# Builds overlay_bench (cargo bench profile) and bench/peers/gossipsub (its own workspace and
# Cargo.lock, release profile), runs each mode with the same arguments for both, prints both
# JSON lines and the ratios (ours / gossipsub), and appends everything to $OUT
# (default target/compare.jsonl). Not part of CI: it takes minutes and needs a quiet machine.
# The machine load (`uptime`) is printed before each run; figures from a loaded machine are
# not comparable. REMOVE_GOSSIPSUB_TARGET=1 deletes the gossipsub build afterwards (~1 GB).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
NODES="${NODES:-32}"
MESSAGES="${MESSAGES:-2000}"
RATE="${RATE:-200}"
SIZE="${SIZE:-1024}"
DEGREE="${DEGREE:-4}"
SEED="${SEED:-1}"
PAIR_MESSAGES="${PAIR_MESSAGES:-100000}"
MODES="${MODES:-mesh pair}"
SIGNED="${SIGNED:-1 0}"
OUT="${OUT:-$root/target/compare.jsonl}"
mkdir -p "$(dirname "$OUT")"

export CARGO_INCREMENTAL=0
# OURS_BIN / THEIRS_BIN: use binaries built earlier instead of building here.
ours_bin="${OURS_BIN:-}"
theirs_bin="${THEIRS_BIN:-}"
if [ -z "$ours_bin" ]; then
  echo "building overlay_bench..." >&2
  cargo bench -p overlay-driver-tokio --bench overlay_bench --no-run >&2
  ours_bin="$(cargo bench -p overlay-driver-tokio --bench overlay_bench --no-run --message-format=json 2>/dev/null \
    | jq -r 'select(.reason == "compiler-artifact" and .target.name == "overlay_bench") | .executable // empty' | tail -1)"
fi
if [ -z "$theirs_bin" ]; then
  echo "building bench/peers/gossipsub..." >&2
  (cd bench/peers/gossipsub && cargo build --release --locked >&2)
  theirs_bin="$root/bench/peers/gossipsub/target/release/gossipsub-peer-bench"
fi

run() { # label, binary, args...
  local label="$1" bin="$2"
  shift 2
  echo "[$label] load: $(uptime | sed 's/.*load average: //')  args: $*" >&2
  local line
  line="$("$bin" "$@" | tail -1)"
  echo "$line"
  jq -c --arg impl "$label" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    '. + {impl: $impl, load_before: $load}' <<<"$line" >>"$OUT"
}

ratio() { # ours-json, theirs-json, key...
  local ours="$1" theirs="$2"
  shift 2
  for key in "$@"; do
    jq -rn --argjson a "$ours" --argjson b "$theirs" --arg k "$key" \
      'if ($a[$k] == null or $b[$k] == null or $b[$k] == 0) then "  \($k): ours \($a[$k]) gossipsub \($b[$k])"
       else "  \($k): ours \($a[$k]) gossipsub \($b[$k])  ratio \((($a[$k] / $b[$k]) * 1000 | round) / 1000)" end'
  done
}

for signed in $SIGNED; do
  for mode in $MODES; do
    case "$mode" in
      mesh) args=(mesh --nodes "$NODES" --messages "$MESSAGES" --rate "$RATE" --size "$SIZE"
                  --degree "$DEGREE" --seed "$SEED" --signed "$signed")
            keys=(delivered p50_ms p95_ms p99_ms reach_all_p99_ms cpu_own_pct peak_rss_kb) ;;
      pair) args=(pair --messages "$PAIR_MESSAGES" --size "$SIZE" --signed "$signed")
            keys=(msgs_per_s mb_per_s p50_ms p99_ms peak_rss_kb) ;;
      *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    ours="$(run svc-overlay "$ours_bin" "${args[@]}")"
    theirs="$(run gossipsub "$theirs_bin" "${args[@]}")"
    echo "== $mode signed=$signed"
    echo "svc-overlay: $ours"
    echo "gossipsub:   $theirs"
    ratio "$ours" "$theirs" "${keys[@]}"
  done
done
if [ "${REMOVE_GOSSIPSUB_TARGET:-0}" = 1 ]; then
  rm -rf bench/peers/gossipsub/target
fi
