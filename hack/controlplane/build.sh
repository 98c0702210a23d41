#!/usr/bin/env bash
# Builds the pinned control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, kubectl) from the Go module proxy into a version-keyed cache
# outside the repository, only when they are missing. Prints the directory on stdout.
#
#   hack/controlplane/build.sh            build if missing, print the directory
#   hack/controlplane/build.sh --dir      only print the directory
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s_version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")
etcd_version=$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")
cache=${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}
dir=$cache/controlplane-k8s-$k8s_version-etcd-$etcd_version
[ "${1:-}" = --dir ] && { echo "$dir"; exit 0; }

cmds=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
missing=0
for b in etcd "${cmds[@]}"; do [ -x "$dir/$b" ] || missing=1; done
if [ $missing = 0 ]; then echo "$dir"; exit 0; fi

tmp=$dir.tmp.$$
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
echo "building etcd $etcd_version into $dir" >&2
go build -C "$here/etcd" -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3

# Without these the binaries report v0.0.0-master and version-skew checks misfire.
minor=${k8s_version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
echo "building kubernetes $k8s_version (${cmds[*]}) into $dir" >&2
# One go build for all commands, so the shared packages compile once.
go build -C "$here/kubernetes" -trimpath -ldflags "$ldflags" -o "$tmp/" \
	"${cmds[@]/#/k8s.io/kubernetes/cmd/}"
mkdir -p "$dir"
mv "$tmp"/* "$dir"/
echo "$dir"
