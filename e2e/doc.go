// Package e2e holds the end-to-end suite (make e2e): berth installed from deploy/ on a
// lab site (lab.Site.InstallBerth), driven only through the Kubernetes API and observed
// from the outside: clients' replies, the routers' tables, Service status, the audit log.
// Its tests carry the build tag e2e and need root and the control plane (make
// controlplane). Nothing imports this package.
package e2e
