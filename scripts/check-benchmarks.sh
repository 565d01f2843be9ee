#!/usr/bin/env bash
# Runs the benchmarks that have committed thresholds (Benchmarks/Thresholds/) and checks them: the transport's
# echo (InLongTransportBenchmarks) and the SDK's batch append-and-seal paths (InLongDataProxyBenchmarks,
# BatchAppend-*). A run whose allocations or instructions per request or record grew past the tolerances in the
# benchmarks' code fails. Not part of .ci/run: a release build and the runs take several minutes. Instructions
# are counted only where the kernel offers hardware counters (not in most VMs); elsewhere the allocations are
# checked alone.
#
#   scripts/check-benchmarks.sh            # check
#   scripts/check-benchmarks.sh --update   # after a deliberate change: write new thresholds, then commit them
#
# BENCHMARKS_SCRATCH_PATH, when set, is the build directory (by default Benchmarks/.build).
set -euo pipefail
cd "$(dirname "$0")/../Benchmarks"

# The malloc interposer counts allocations without jemalloc.
export BENCHMARK_DISABLE_JEMALLOC=true
# Each target with the benchmarks of it that have thresholds (a regular expression).
checked=("InLongTransportBenchmarks:Echo-.*" "InLongDataProxyBenchmarks:BatchAppend-.*")
scratch=(${BENCHMARKS_SCRATCH_PATH:+--scratch-path "$BENCHMARKS_SCRATCH_PATH"})
metrics=(--metric mallocCountTotal)
if perf_event_counts_instructions=$(perf stat -x, -e instructions true 2>&1) \
    && ! grep -q "not supported\|not counted" <<<"$perf_event_counts_instructions"; then
    metrics+=(--metric instructions)
else
    echo "no hardware instruction counter here: checking allocations only"
fi

if [ "${1:-}" = "--update" ]; then
    for entry in "${checked[@]}"; do
        swift package "${scratch[@]}" --allow-writing-to-package-directory benchmark thresholds update \
            --target "${entry%%:*}" --filter "${entry#*:}" "${metrics[@]}" --no-progress
    done
    exit 0
fi

status=0
for entry in "${checked[@]}"; do
    set +e
    swift package "${scratch[@]}" benchmark thresholds check --target "${entry%%:*}" --filter "${entry#*:}" "${metrics[@]}" --no-progress
    result=$?
    set -e
    case $result in
        0) echo "${entry%%:*}: within its thresholds" ;;
        4) echo "${entry%%:*}: improved on its thresholds: consider scripts/check-benchmarks.sh --update" ;;
        *) echo "${entry%%:*}: regressed past its thresholds (exit $result)"; status=$result ;;
    esac
done
exit $status
