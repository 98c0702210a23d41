#!/usr/bin/env bash
# Prints the packages that have test files only with the given build tags: the ones
# `make test-integration` must run, since `make test-unit` already ran every other test
# with the same flags. With --run, prints instead the -run pattern of the tests those
# files define, so that the untagged tests of the same packages do not run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
run=false
if [ "${1:-}" = --run ]; then
	run=true
	shift
fi
tags=${1:?usage: hack/tagged-packages.sh [--run] TAGS}
files='{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}'
plain=$(go list -f "$files" ./...)
# One line per package whose tagged test files differ: "path dir file...", tagged build.
lines=$(diff <(echo "$plain") <(go list -tags "$tags" -f "$files" ./...) | sed -n 's/^> //p' || true)
if ! $run; then
	cut -d' ' -f1 <<<"$lines"
	exit 0
fi
declare -A untagged
while read -r path _ rest; do
	untagged[$path]=" $rest "
done <<<"$plain"
names=()
while read -r path dir rest; do
	for f in $rest; do
		case ${untagged[$path]:-} in *" $f "*) continue ;; esac
		while read -r name; do names+=("$name"); done < <(sed -n 's/^func \(Test[A-Za-z0-9_]*\)(.*/\1/p' "$dir/$f" | grep -vx TestMain || true)
	done
done <<<"$lines"
[ ${#names[@]} -gt 0 ] || { echo "no tagged tests found for tags $tags" >&2; exit 1; }
(IFS='|'; echo "^(${names[*]})\$")
