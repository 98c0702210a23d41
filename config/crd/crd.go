// Package crd holds berth's CustomResourceDefinitions, as controller-gen writes them, for
// programs that need the schemas themselves (berthctl check).
package crd

import "embed"

// FS holds the CRD manifests, one per kind.
//
//go:embed berth.dev_*.yaml
var FS embed.FS
