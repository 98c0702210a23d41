#!/usr/bin/env bash
# Runs the end-to-end suite (e2e/, build tag e2e) over one lab site per tier. Tiers, in the
# order given (default: functional slo):
#   functional  every test but the timed SLOs and the faults, with -race
#   slo         the timed SLO tests (names ending in SLO), without -race
#   faults      the fault suite (names starting with TestFault), with -race: `make e2e-faults`
# Prints every test's result and measured figures; on failure, the whole log.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(functional slo)
rc=0
for tier in "${tiers[@]}"; do
	case $tier in
	functional) args=(-race -skip 'SLO$|^TestFault') ;;
	slo) args=(-run 'SLO$') ;;
	faults) args=(-race -run '^TestFault') ;;
	*)
		echo "e2e: unknown tier $tier (functional, slo, faults)" >&2
		exit 2
		;;
	esac
	log=$(mktemp /tmp/berth-e2e.XXXXXX.log)
	begin=$SECONDS
	go test -count=1 -timeout 15m -tags e2e "${args[@]}" -v ./e2e >"$log" 2>&1
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
