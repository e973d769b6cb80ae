#!/usr/bin/env bash
# Optional: checks a live daemon against docs/openapi.json with schemathesis (property-based
# requests generated from the description; every answer must be a documented status with a
# documented body and content type, and no 5xx other than the documented 503s).
#
#   scripts/openapi-fuzz.sh [MAX_EXAMPLES]      (default 50 per operation)
#
# Starts `svc-overlay` (dev mode, loopback only: 127.0.0.1, a free port), fetches the
# description from its `GET /v1/openapi.json`, and runs `st run` on every operation except
# `POST /v1/dial` (it would dial generated addresses: traffic must stay on loopback) and
# `GET /v1/gossip` (a stream that does not end). schemathesis comes from PyPI into a private
# virtual environment (about 95 MB, half a minute) unless `st` is already on PATH.
# Not a CI gate: the Rust tests in overlay-driver-tokio/tests/http_router.rs (`openapi::…`)
# keep the file true to the code; this adds generated requests against a real process.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
examples="${1:-50}"
work="$(mktemp -d)"
daemon_pid=""
cleanup() {
    if [[ -n "$daemon_pid" ]]; then kill "$daemon_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

st="$(command -v st || true)"
if [[ -z "$st" ]]; then
    venv="${OPENAPI_FUZZ_VENV:-${TMPDIR:-/tmp}/svc-overlay-schemathesis}"
    if [[ ! -x "$venv/bin/st" ]]; then
        echo "installing schemathesis into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "schemathesis>=4,<5"
    fi
    st="$venv/bin/st"
fi

target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build --quiet -p svc-overlay --bin svc-overlay)
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
(cd "$work" && exec "$target/debug/svc-overlay" --bind "127.0.0.1:$port" \
    --metrics-addr 127.0.0.1:0 >"$work/daemon.log" 2>&1) &
daemon_pid=$!
for _ in $(seq 1 100); do
    if curl -fsS "$base/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { cat "$work/daemon.log" >&2; exit 1; }

"$st" run "$base/v1/openapi.json" \
    --exclude-path /v1/dial \
    --exclude-path /v1/gossip \
    --max-examples "$examples" \
    --request-timeout 5 \
    --generation-with-security-parameters false
