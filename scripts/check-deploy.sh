#!/usr/bin/env bash
# Checks the deployment files under docs/deploy/ (cheap; run by .ci/run):
#  - Prometheus alert rules and scrape config with `promtool` when it is installed or can be
#    installed from the Debian archive (package `prometheus`); otherwise a YAML structure check
#    (every rule has alert, expr, labels.severity, annotations.summary);
#  - the Grafana dashboard parses as JSON and every panel target has an expression;
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

scripts/render-diagrams.sh --check
