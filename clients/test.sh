#!/usr/bin/env bash
# Unit tests of the Python and TypeScript clients (OAP/1 vectors, client session, TLS against a
# scripted server). Installs the TypeScript build tools with `npm ci` when they are missing.
set -euo pipefail
cd "$(dirname "$0")"
echo "== clients/python"
(cd python && PYTHONPATH=src python3 -W error::ResourceWarning -m unittest discover -s tests)
echo "== clients/ts"
cd ts
[ -x node_modules/.bin/tsc ] || npm ci --no-audit --no-fund
npm run --silent build
node --test test/
