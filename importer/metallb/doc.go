// Package metallb converts MetalLB's configuration (the metallb.io custom resources of
// MetalLB 0.13 and later, and the MetalLB annotations of Services) into berth's objects.
//
// It is pure: Convert takes objects already read from manifests, as plain maps, and returns
// berth's objects and what it could not carry over, as Findings that name the MetalLB
// object and field. It reads no files and talks to no cluster; `berthctl import metallb`
// does that. MetalLB's Go types are not imported: each kind is decoded into a small local
// struct, and every field the importer does not know is reported, so that nothing a newer
// MetalLB adds is dropped silently.
//
// MetalLB's objects live in its namespace; berth's are cluster-scoped. Objects of one kind
// that share a name in several namespaces are renamed "<namespace>-<name>", and references
// (pools, peers, community aliases, password Secrets) are resolved within the namespace of
// the object that makes them.
//
// docs/migrating-from-metallb.md maps every MetalLB field to berth's and explains the
// differences in behaviour.
package metallb
