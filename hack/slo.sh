#!/usr/bin/env bash
# Runs the SLO tests (timing and memory; names ending in SLO) alone: no -race, one package
# at a time. Prints each test's result and measured figures; on failure, the whole log.
set -uo pipefail
log=$(mktemp /tmp/berth-slo.XXXXXX.log)
go test -count=1 -p 1 -timeout 25m -tags "$1" -run 'SLO$' -v ./... >"$log" 2>&1
rc=$?
grep -E '^(--- |ok|FAIL|panic)|^\s+--- |samples|MiB|bound|took|created|decided|SLO' "$log" | grep -v '^=== ' || true
if [ $rc -ne 0 ]; then
	echo "SLO tests failed (rc $rc); full log follows:"
	cat "$log"
fi
rm -f "$log"
exit $rc
