// Package scale holds the lab scale scenarios of `make bench` (docs/bench.md): berth
// installed from deploy/ on a lab site, driven to 10,000 Services in BGP mode, 50 nodes in
// L2 mode, and a create/delete churn, each measured from the outside (the router's kernel
// table, the client's neighbour table, the audit log, /proc) and reported as a Go benchmark
// with custom units, so that benchstat compares two runs. The files carry the build tag
// scale and need root; the scenarios take minutes each and run only under make bench.
package scale
