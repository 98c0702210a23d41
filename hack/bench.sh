#!/usr/bin/env bash
# Runs berth's benchmarks alone on the machine and writes bench/REPORT.md (`make bench`):
#
#   go     the Go benchmarks of every package (untagged), 6 runs each  → bench/raw/go.txt
#   scale  the lab scale scenarios (scale/, tag scale), once each      → bench/raw/scale.txt
#   slo    the timing SLO tests, each p99 judged against its goal      → bench/raw/slo.txt
#
#   hack/bench.sh [go] [scale] [slo]     those steps only (default all)
#   BENCH_SCALE=L2 hack/bench.sh scale   those scale scenarios only (a -bench pattern); the
#                                        others' results stay in scale.txt; BERTH_SCALE_*
#                                        (docs/bench.md) go into the step's command
#
# A step not run keeps its previous raw file. Logs go beside the raw files (*.log, not
# committed); each step's command, start, wall time, load average and exit status go to
# bench/raw/steps.tsv, one row per step. Last, hack/bench-report writes bench/REPORT.md from
# bench/raw, also when a step failed (it marks it); the exit status is non-zero then.
# Needs root: the scale scenarios and the SLO tests bring up labs.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
raw=bench/raw

if [ "$(id -u)" != 0 ]; then
	echo "hack/bench.sh: needs root (the lab scale scenarios and the SLO tests): sudo make bench" >&2
	exit 1
fi
steps=()
for a in "$@"; do
	case $a in
	go | scale | slo) steps+=("$a") ;;
	*)
		echo "usage: hack/bench.sh [go] [scale] [slo]" >&2
		exit 2
		;;
	esac
done
[ ${#steps[@]} -gt 0 ] || steps=(go scale slo)
mkdir -p "$raw" || exit 1

# Figures taken beside other work are noise: say so (each step's load is in steps.tsv).
load=$(cut -d' ' -f1 /proc/loadavg)
cpus=$(nproc)
if awk -v l="$load" -v c="$cpus" 'BEGIN { b = c / 4; if (b < 0.5) b = 0.5; exit !(l > b) }'; then
	echo "hack/bench.sh: warning: load average $load on $cpus CPUs: something else is running, the figures will be noisy" >&2
fi

# The scale scenarios and the SLO tests run a control plane: build it when missing.
if [[ " ${steps[*]} " == *" scale "* || " ${steps[*]} " == *" slo "* ]]; then
	hack/controlplane/build.sh >/dev/null || echo "hack/bench.sh: building the control plane failed: the lab steps will fail" >&2
fi

failed=()
# run NAME RAW LOG COMMAND: runs the shell command line COMMAND from the repository's root
# with its output to bench/raw/LOG, prints its wall time, and records it in steps.tsv as the
# step that wrote bench/raw/RAW.
run() {
	local name=$1 out=$2 log=$3 cmd=$4 started load begin rc secs tsv=$raw/steps.tsv
	started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	load=$(cut -d' ' -f1 /proc/loadavg)
	echo "bench $name: $cmd"
	begin=$SECONDS
	eval "$cmd" >"$raw/$log" 2>&1
	rc=$?
	secs=$((SECONDS - begin))
	echo "bench $name: ${secs}s (rc $rc)"
	[ $rc = 0 ] || failed+=("$name")
	{
		printf 'step\traw\tlog\trc\tseconds\tstarted\tload\tcommand\n'
		# A step replaces its earlier row; a whole scale run also the partial ones.
		[ -f "$tsv" ] && awk -F'\t' -v n="$name" 'NR > 1 && $1 != n && !(n == "scale" && $1 ~ /^scale /)' "$tsv"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$out" "$log" "$rc" "$secs" "$started" "$load" "$cmd"
	} >"$tsv.new" && mv "$tsv.new" "$tsv"
	return $rc
}

for step in "${steps[@]}"; do
	case $step in
	go)
		run go go.txt go.txt "go test -run '^\$' -bench . -benchmem -count 6 -timeout 30m ./..."
		;;
	scale)
		# BENCH_SCALE picks scenarios (a -bench pattern); the others keep their results.
		sel=${BENCH_SCALE:-.}
		name=scale log=scale.log
		if [ "$sel" != . ]; then
			name="scale $sel" log="scale-$(printf %s "$sel" | tr -c 'A-Za-z0-9' _).log"
		fi
		# The scenarios' sizes set in the environment (BERTH_SCALE_*) belong to the command.
		sizes=""
		while IFS= read -r kv; do
			sizes+="${kv%%=*}=$(printf %q "${kv#*=}") "
		done < <(env | grep -E '^BERTH_SCALE_[A-Z_]+=' | sort)
		run "$name" scale.txt "$log" "${sizes}go test -tags scale -run '^\$' -bench '$sel' -benchtime 1x -count 1 -timeout 100m -v ./scale"
		# benchstat's part of the log: the header and the result lines, after the results of
		# the scenarios this run left out.
		result='^Benchmark[^[:space:]]*[[:space:]]+[0-9]+[[:space:]]'
		fresh=$(grep -E "$result" "$raw/$log" | awk '{ sub(/-[0-9]+$/, "", $1); print $1 }')
		{
			grep -E '^(goos|goarch|pkg|cpu):' "$raw/$log"
			[ -f "$raw/scale.txt" ] && grep -E "$result" "$raw/scale.txt" |
				awk -v fresh="$fresh" 'BEGIN { n = split(fresh, f, "\n"); for (i = 1; i <= n; i++) skip[f[i]] = 1 }
					{ name = $1; sub(/-[0-9]+$/, "", name); if (!(name in skip)) print }'
			grep -E "$result" "$raw/$log"
		} >"$raw/scale.txt.new" && mv "$raw/scale.txt.new" "$raw/scale.txt"
		;;
	slo)
		# lab.SLO appends a line per goal to $BERTH_BENCH_SLO_OUT and judges p99.
		{
			echo "goos: $(go env GOOS)"
			echo "goarch: $(go env GOARCH)"
			echo "cpu: $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
		} >"$raw/slo.txt"
		# TestSpeakerMemorySLO is a memory goal, not a timing one: the scale step's
		# BenchmarkBGP10kServices measures the speakers' memory at 10,000 Services.
		run slo slo.txt slo.log "BERTH_BENCH_SLO_OUT=\$PWD/$raw/slo.txt BERTH_CONTROLPLANE_DIR=\$(hack/controlplane/build.sh --dir) go test -count=1 -p 1 -timeout 25m -tags integration,privileged,timing -run 'SLO\$' -skip 'MemorySLO\$' -v ./..."
		run e2e-slo slo.txt e2e-slo.log "BERTH_BENCH_SLO_OUT=\$PWD/$raw/slo.txt BERTH_CONTROLPLANE_DIR=\$(hack/controlplane/build.sh --dir) go test -count=1 -timeout 15m -tags e2e -run 'SLO\$' -v ./e2e"
		;;
	esac
done

echo "bench report: go run ./hack/bench-report -raw $raw -out bench/REPORT.md"
go run ./hack/bench-report -raw "$raw" -out bench/REPORT.md || failed+=(report)
# Root made them: leave them to the checkout's owner.
chown -R "$(stat -c %u:%g .)" bench
if [ ${#failed[@]} -gt 0 ]; then
	echo "bench: failed: ${failed[*]} (see bench/raw/*.log and bench/REPORT.md)" >&2
	exit 1
fi
