#!/usr/bin/env bash
# Prints the packages that have test files only with the given build tags: the ones
# `make test-integration` must run, since `make test-unit` already ran every other test
# with the same flags.
set -euo pipefail
cd "$(dirname "$0")/.."
tags=${1:?usage: hack/tagged-packages.sh TAGS}
files='{{.ImportPath}} {{join .TestGoFiles ","}} {{join .XTestGoFiles ","}}'
diff <(go list -f "$files" ./...) <(go list -tags "$tags" -f "$files" ./...) | sed -n 's/^> \([^ ]*\) .*/\1/p'
