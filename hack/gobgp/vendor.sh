#!/usr/bin/env bash
# Writes third_party/gobgp: GoBGP v3.37.0 from the module proxy, cut to the packages berth
# builds, with the patches in this directory applied. go.mod replaces the module with it.
# Run it after changing a patch; `make lint` checks the copy is what this script writes.
#
# Why a patched copy: v3.37.0 is the last v3 release, and a peer that sends a message of
# an unknown type crashes it (a nil dereference in fsmHandler.handlingError, on GoBGP's own
# goroutine, so the whole speaker dies). v4 fixed it (osrg/gobgp#3325); moving to v4 is a
# larger change. bgp.TestHostilePeerUnknownMessageType guards the fix.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=v3.37.0
out=${1:-third_party/gobgp}
src=$(GOFLAGS=-mod=mod go mod download -json "github.com/osrg/gobgp/v3@$version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
[ -d "$src" ] || { echo "gobgp: module $version not downloaded" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
for p in LICENSE go.mod go.sum api internal/pkg/table internal/pkg/version pkg/apiutil pkg/config/oc pkg/log \
	pkg/packet/bgp pkg/packet/bmp pkg/packet/mrt pkg/packet/rtr pkg/server pkg/zebra; do
	mkdir -p "$out/$(dirname "$p")"
	cp -r "$src/$p" "$out/$p"
done
chmod -R u+w "$out"
find "$out" -name '*_test.go' -delete
find "$out" -type d -name testdata -prune -exec rm -rf {} +
for patch in hack/gobgp/*.patch; do
	patch -s -d "$out" -p1 <"$patch"
done
cat >"$out/BERTH.md" <<EOT
# GoBGP $version, patched for berth

Written by hack/gobgp/vendor.sh from the module proxy: only the packages berth builds,
without tests, with hack/gobgp/*.patch applied. Do not edit by hand. GoBGP's license:
LICENSE.
EOT
