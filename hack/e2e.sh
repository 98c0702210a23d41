#!/usr/bin/env bash
# Runs the end-to-end suite (e2e/, build tag e2e) over one lab site per run: first the
# functional tests with -race, then the timed SLO tests (names ending in SLO) without it.
# Prints every test's result and measured figures; on failure, the whole log.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
rc=0
for tier in functional slo; do
	log=$(mktemp /tmp/berth-e2e.XXXXXX.log)
	begin=$SECONDS
	if [ $tier = functional ]; then
		go test -race -count=1 -timeout 15m -tags e2e -skip 'SLO$' -v ./e2e >"$log" 2>&1
	else
		go test -count=1 -timeout 15m -tags e2e -run 'SLO$' -v ./e2e >"$log" 2>&1
	fi
	trc=$?
	grep -E '^(--- |ok|FAIL|PASS|panic|e2e:)|^\s+--- |^\s+\S+_test\.go:[0-9]+:' "$log" || true
	echo "e2e $tier: $((SECONDS - begin))s (rc $trc)"
	if [ $trc -ne 0 ]; then
		echo "e2e $tier failed; full log follows:"
		cat "$log"
		rc=$trc
	fi
	rm -f "$log"
done
exit $rc
