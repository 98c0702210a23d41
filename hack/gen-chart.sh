#!/usr/bin/env bash
# Writes the parts of the Helm chart (deploy/helm/berth) that come from elsewhere, so that
# there is one source for each: the CRDs from config/crd, the ServiceAccounts and RBAC from
# deploy/base/rbac.yaml (in the release's namespace). `make generate` runs it; `make lint`
# runs it into a temporary directory and fails when the committed files differ.
#
#   hack/gen-chart.sh [CHART_DIR]     default: deploy/helm/berth
set -euo pipefail
cd "$(dirname "$0")/.."
chart=${1:-deploy/helm/berth}
mkdir -p "$chart/crds" "$chart/templates"
rm -f "$chart"/crds/*.yaml
cp config/crd/berth.dev_*.yaml "$chart/crds/"
{
	echo "# Generated from deploy/base/rbac.yaml by hack/gen-chart.sh (make generate): edit that file."
	grep -v '^#' deploy/base/rbac.yaml | sed 's/namespace: berth-system/namespace: {{ .Release.Namespace }}/'
} >"$chart/templates/rbac.yaml"
