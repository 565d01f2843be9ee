#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/) with address sanitizer and runs each for SECONDS (default 60), one after
# the other on one core, from the checked-in seeds. Prints executions, coverage and findings per target; a
# finding is copied into the target's corpus directory, where `swift test` replays it from then on.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: frameDecoder framer binaryAck heartbeat attributes
#                                                       snappyDecompress snappyRoundTrip receiverRequest
#                                                       httpForm receiverHTTPRequest
# Linux (or a swift.org toolchain on macOS): Xcode's toolchain has no libFuzzer.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
all=(frameDecoder framer binaryAck heartbeat attributes snappyDecompress snappyRoundTrip receiverRequest httpForm receiverHTTPRequest)
seconds=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
for target in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $target "* ]] || { echo "unknown target '$target' (one of: ${all[*]})" >&2; exit 2; }
done

corpus="$root/Tests/InLongFuzzReplayTests/Corpus"
scratch="$root/Fuzz/.build"
# Same dependency versions as the main package, without resolving again.
if [[ -f "$root/Package.resolved" && ! -f "$root/Fuzz/Package.resolved" ]]; then
    cp "$root/Package.resolved" "$root/Fuzz/Package.resolved"
fi
# `--sanitize=fuzzer` stops SwiftPM renaming `main` (libFuzzer provides it); the -Xswiftc flag, passed last,
# is what gives the compiler both sanitizers together, with coverage instrumentation.
swift build -c release --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address \
    --package-path "$root/Fuzz" --scratch-path "$scratch"
bin="$scratch/release"

max_len() {
    case $1 in
        framer) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

summary=()
found=0
for target in "${targets[@]}"; do
    executable="$bin/Fuzz${target^}"
    work="$scratch/fuzz-work/$target"
    rm -rf "$work"
    mkdir -p "$work/corpus"
    cp "$corpus/$target"/* "$work/corpus/"
    echo "== $target: ${seconds}s, working corpus $work/corpus"
    # The Swift backtracer would hold the crashing process; libFuzzer reports and saves the input itself.
    set +e
    SWIFT_BACKTRACE=enable=no "$executable" "$work/corpus" \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/" >"$work/log" 2>&1
    status=$?
    set -e
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
    coverage=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$work/log" | tail -1)
    corpus_size=$(grep -Eo 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$work/log" | tail -1)
    findings=()
    for artifact in "$work"/crash-* "$work"/timeout-* "$work"/oom-* "$work"/leak-*; do
        [[ -e $artifact ]] || continue
        cp "$artifact" "$corpus/$target/"
        findings+=("$(basename "$artifact")")
    done
    if [[ ${#findings[@]} -gt 0 || $status -ne 0 ]]; then
        found=1
        echo "!! $target: finding (exit $status), saved as $corpus/$target/${findings[*]:-?}"
        grep -E -m1 -B2 -A40 'Fatal error|ERROR: (libFuzzer|AddressSanitizer)' "$work/log" || tail -40 "$work/log"
    fi
    summary+=("$(printf '%-18s %12s %9s/s  %-22s %-16s %s' "$target" "${executions:-?}" "${rate:-?}" \
        "${coverage:-?}" "${corpus_size:-?}" "${findings[*]:-none}")")
done

echo
printf '%-18s %12s %11s  %-22s %-16s %s\n' target executions rate coverage corpus findings
printf '%s\n' "${summary[@]}"
exit $found
