#!/usr/bin/env bash
# Runs the transport benchmarks and checks them against the committed thresholds (Benchmarks/Thresholds/): a
# run whose allocations or instructions per request grew past the tolerances in
# Benchmarks/Benchmarks/InLongTransportBenchmarks fails. Not part of .ci/run: a release build and the runs take
# several minutes. Instructions are counted only where the kernel offers hardware counters (not in most VMs);
# elsewhere the allocations are checked alone.
#
#   scripts/check-benchmarks.sh            # check
#   scripts/check-benchmarks.sh --update   # after a deliberate change: write new thresholds, then commit them
set -euo pipefail
cd "$(dirname "$0")/../Benchmarks"

# The malloc interposer counts allocations without jemalloc.
export BENCHMARK_DISABLE_JEMALLOC=true
target=InLongTransportBenchmarks
metrics=(--metric mallocCountTotal)
if perf_event_counts_instructions=$(perf stat -x, -e instructions true 2>&1) \
    && ! grep -q "not supported\|not counted" <<<"$perf_event_counts_instructions"; then
    metrics+=(--metric instructions)
else
    echo "no hardware instruction counter here: checking allocations only"
fi

if [ "${1:-}" = "--update" ]; then
    swift package --allow-writing-to-package-directory benchmark thresholds update \
        --target "$target" "${metrics[@]}" --no-progress
    exit 0
fi

set +e
swift package benchmark thresholds check --target "$target" "${metrics[@]}" --no-progress
status=$?
set -e
case $status in
    0) echo "benchmarks within their thresholds" ;;
    4) echo "benchmarks improved on their thresholds: consider scripts/check-benchmarks.sh --update"; status=0 ;;
    *) echo "benchmarks regressed past their thresholds (exit $status)" ;;
esac
exit $status
