#!/usr/bin/env bash
# Builds the pinned helm (hack/helm/go.mod) from the Go module proxy into a version-keyed
# cache outside the repository, only when it is missing. Prints the binary's path.
#
#   hack/helm/build.sh            build if missing, print the path
#   hack/helm/build.sh --path     only print the path
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1=="require" && $2=="helm.sh/helm/v4" {print $3}' "$here/go.mod")
cache=${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}
bin=$cache/helm-$version/helm
[ "${1:-}" = --path ] && { echo "$bin"; exit 0; }
[ -x "$bin" ] && { echo "$bin"; exit 0; }
echo "building helm $version into $(dirname "$bin")" >&2
mkdir -p "$(dirname "$bin")"
go build -C "$here" -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" -o "$bin.tmp.$$" helm.sh/helm/v4/cmd/helm
mv "$bin.tmp.$$" "$bin"
echo "$bin"
