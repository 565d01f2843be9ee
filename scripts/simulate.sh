#!/usr/bin/env bash
# Runs the seeded simulations of the pure machines (Tests/InLongSimulationTests) long: the delivery rules of the
# client, instances sharing the agent's read-ahead budget, a file tail under copytruncate at any moment, and the
# agent's file set (rotation, deletion, inode reuse, slots, crashes), one transport connection, reconnection and
# endpoint health.
#
#   scripts/simulate.sh [--seeds N] [--steps M] [--seed S]      defaults: 200 seeds, 2000 steps
#
# Prints each simulation's events, then one line `N events, 0 violations` (and exits 0), or every violation
# with its seed, invariant, last events and the command that replays it (and exits 1). --seed S replays one seed.
# CONFIGURATION=release (with testing enabled) runs several times faster after a longer first build.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=200
steps=2000
seed=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seeds) seeds=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        *) echo "usage: scripts/simulate.sh [--seeds N] [--steps M] [--seed S]" >&2; exit 64 ;;
    esac
done

build=()
if [[ "${CONFIGURATION:-debug}" == release ]]; then
    build=(-c release -Xswiftc -enable-testing --scratch-path .build-simulation)
fi
swift build --build-tests "${build[@]}" >&2
export INLONG_SIMULATION_SEEDS=$seeds INLONG_SIMULATION_STEPS=$steps
[[ -n "$seed" ]] && export INLONG_SIMULATION_SEED=$seed
start=$(date +%s.%N)
set +e
output=$(swift test --skip-build "${build[@]}" --filter InLongSimulationTests 2>&1)
status=$?
set -e
seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
echo "$output" | grep -E '^simulation ' || true
events=$(echo "$output" | awk '/^simulation .* events over/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "events") n += $i } END { print n + 0 }')
violations=$(echo "$output" | grep -c 'Caught error' || true)
if [[ $status -ne 0 || $violations -ne 0 ]]; then
    echo "$output" | grep -E -A40 'Caught error' | grep -vE '^(◇|↳)' >&2
    echo "$events events, $violations violations"
    exit 1
fi
awk -v n="$events" -v s="$seconds" 'BEGIN { printf "%d events in %.1f s (%.0f events/s)\n", n, s, n / s }' >&2
echo "$events events, 0 violations"
