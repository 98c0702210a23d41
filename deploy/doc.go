// Package deploy holds berth's installation manifests (kustomize under base/, default/ and
// lab/, the Helm chart under helm/berth) and the tests that render them, hold them equal
// and apply them to a real kube-apiserver. There is no Go code to import.
package deploy
