//go:build tools

// Package tools pins the kind command that runs berth's demo cluster (deploy/kind).
package tools

import _ "sigs.k8s.io/kind"
