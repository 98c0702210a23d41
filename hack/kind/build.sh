#!/usr/bin/env bash
# Builds the pinned kind (hack/kind/go.mod) from the Go module proxy into a version-keyed
# cache outside the repository, only when it is missing. Prints the binary's path.
# deploy/kind/demo.sh runs it.
#
#   hack/kind/build.sh            build if missing, print the path
#   hack/kind/build.sh --path     only print the path
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1=="require" && $2=="sigs.k8s.io/kind" {print $3}' "$here/go.mod")
cache=${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}
bin=$cache/kind-$version/kind
[ "${1:-}" = --path ] && { echo "$bin"; exit 0; }
[ -x "$bin" ] && { echo "$bin"; exit 0; }
echo "building kind $version into $(dirname "$bin")" >&2
mkdir -p "$(dirname "$bin")"
# kind's version is a constant of the release; nothing to stamp.
go build -C "$here" -trimpath -ldflags "-s -w" -o "$bin.tmp.$$" sigs.k8s.io/kind
mv "$bin.tmp.$$" "$bin"
echo "$bin"
