// Package version reports the build's version, set at link time by the Makefile.
package version

// Version is the berth version; `make build` sets it from git describe.
var Version = "dev"
