#!/usr/bin/env bash
# Writes the parts of the Helm chart (deploy/helm/berth) that come from elsewhere, so that
# there is one source for each: the CRDs from config/crd, the ServiceAccounts and RBAC from
# deploy/base/rbac.yaml (in the release's namespace), the PodMonitor, PrometheusRule and
# Grafana dashboard from deploy/observability. `make generate` runs it; `make lint`
# runs it into a temporary directory and fails when the committed files differ.
#
#   hack/gen-chart.sh [CHART_DIR]     default: deploy/helm/berth
set -euo pipefail
cd "$(dirname "$0")/.."
chart=${1:-deploy/helm/berth}
mkdir -p "$chart/crds" "$chart/templates"
rm -f "$chart"/crds/*.yaml "$chart"/files/*
cp config/crd/berth.dev_*.yaml "$chart/crds/"
{
	echo "# Generated from deploy/base/rbac.yaml by hack/gen-chart.sh (make generate): edit that file."
	grep -v '^#' deploy/base/rbac.yaml | sed 's/namespace: berth-system/namespace: {{ .Release.Namespace }}/'
} >"$chart/templates/rbac.yaml"
# The observability objects, as deploy/observability has them; templates/observability.yaml
# renders them when their values turn them on.
mkdir -p "$chart/files"
cp deploy/observability/podmonitor.yaml deploy/observability/prometheus-rules.yaml \
	deploy/observability/grafana-dashboard.json "$chart/files/"
