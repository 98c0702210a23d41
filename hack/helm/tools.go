//go:build tools

// Package tools pins the helm command that renders and checks berth's chart.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
