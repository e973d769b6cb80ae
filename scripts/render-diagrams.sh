#!/usr/bin/env bash
# Renders every docs/**/*.mmd to an .svg beside it with @mermaid-js/mermaid-cli (mmdc), using
# the system Chromium (Debian package `chromium`): no browser is downloaded.
#
#   scripts/render-diagrams.sh           render every diagram
#   scripts/render-diagrams.sh --check   only check that each .mmd has an .svg newer than
#                                        nothing-to-render (cheap; what CI runs)
#
# Setup, once per machine (as root):
#   apt-get install -y chromium nodejs npm
#   PUPPETEER_SKIP_DOWNLOAD=true npm install --prefix "$MMDC_PREFIX" @mermaid-js/mermaid-cli@11
# MMDC_PREFIX defaults to /opt/svc-overlay-tools/mermaid; MMDC may name the mmdc binary directly.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -d '' sources < <(find docs -name '*.mmd' -print0 | sort -z)

if [[ "${1:-}" == "--check" ]]; then
    missing=0
    for src in "${sources[@]}"; do
        svg="${src%.mmd}.svg"
        if [[ ! -s "$svg" ]]; then
            echo "missing rendered diagram: $svg (run scripts/render-diagrams.sh)" >&2
            missing=1
        elif ! grep -q '<svg' "$svg"; then
            echo "not an SVG: $svg" >&2
            missing=1
        fi
    done
    if [[ $missing -ne 0 ]]; then
        exit 1
    fi
    echo "diagrams: ${#sources[@]} .mmd, each with its .svg"
    exit 0
fi

prefix="${MMDC_PREFIX:-/opt/svc-overlay-tools/mermaid}"
mmdc="${MMDC:-$prefix/node_modules/.bin/mmdc}"
if [[ ! -x "$mmdc" ]]; then
    echo "mmdc not found at $mmdc; install it with:" >&2
    echo "  PUPPETEER_SKIP_DOWNLOAD=true npm install --prefix $prefix @mermaid-js/mermaid-cli@11" >&2
    exit 2
fi
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
    echo "Chromium not found at $chromium (apt-get install chromium)" >&2
    exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/puppeteer.json" <<JSON
{ "executablePath": "$chromium", "args": ["--no-sandbox", "--disable-gpu"] }
JSON

export PUPPETEER_SKIP_DOWNLOAD=true
for src in "${sources[@]}"; do
    svg="${src%.mmd}.svg"
    echo "rendering $src -> $svg"
    "$mmdc" --quiet --puppeteerConfigFile "$tmp/puppeteer.json" \
        --input "$src" --output "$svg" --backgroundColor white
done
