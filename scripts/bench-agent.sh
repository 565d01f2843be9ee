#!/usr/bin/env bash
# Throughput of `inlong agent --once` (files -> DataProxy, acks, checkpoints) against `inlong send` on the same
# files, both to a local `inlong receive --count-only` on 127.0.0.1, with a release build.
#
#   scripts/bench-agent.sh [FILES] [MB_PER_FILE] [RUNS]      defaults: 4 files x 250 MB, 3 runs each
#
# Generates FILES files of 200-byte log-like lines (199 bytes and a newline; timestamp, level, words, ids, so that
# Snappy compresses them about as much as real logs), then per run: a fresh receiver, the agent with a fresh state
# directory (all files at once), a fresh receiver, `inlong send` with the files as arguments. Prints, per run,
# wall seconds, MB/s and lines/s over the files' bytes (newlines included, MB = 10^6 bytes), CPU seconds, peak
# RSS, the receiver's CPU seconds, and each tool's own summary; then the medians and agent/send. The files are deleted at the end.
#
# AGENT_ARGS adds arguments to the agent's command line only (e.g. AGENT_ARGS="--multiline-pattern ^[[:space:]] --exclude DEBUG"
# for multiline records and a filter). NO_COMPRESSION=1 passes --no-compression to both. INLONG=path/to/inlong uses that executable instead of building one (`swift build -c release` into
# .build-release). BENCH_DIR sets where the files go (default: a new directory under ${TMPDIR:-/tmp}); KEEP=1
# keeps them (for profiling).
set -euo pipefail

files=${1:-4}
mb_per_file=${2:-250}
runs=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)

if [[ -z "${INLONG:-}" ]]; then
    swift build -c release --product inlong --scratch-path "$root/.build-release" >&2
    INLONG="$root/.build-release/release/inlong"
fi
[[ -x "$INLONG" ]] || { echo "no inlong executable at $INLONG" >&2; exit 2; }
extra=()
[[ -n "${NO_COMPRESSION:-}" ]] && extra=(--no-compression)
time_v=()
if /usr/bin/time -v true >/dev/null 2>&1; then time_v=(/usr/bin/time -v); fi

work=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/inlong-bench-agent.XXXXXX")}
mkdir -p "$work/logs"
receiver_pid=
cleanup() {
    [[ -n "$receiver_pid" ]] && kill "$receiver_pid" 2>/dev/null || true
    [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

# One 4 MB block of distinct lines, repeated with a per-copy prefix so that no two lines are equal and Snappy's
# 64 KB window never sees a copy.
echo "generating $files x $mb_per_file MB of 200-byte lines in $work/logs" >&2
awk -v n=20000 'BEGIN {
    srand(42)
    split("GET POST PUT DELETE", verbs, " ")
    split("INFO INFO INFO WARN ERROR DEBUG", levels, " ")
    split("user order cart payment session search item stock invoice login", words, " ")
    for (i = 0; i < n; i++) {
        line = sprintf("2026-01-%02d %02d:%02d:%02d.%03d %-5s [worker-%02d] %s /api/v1/%s/%d took %d ms id=%08x%08x",
            1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 1000, levels[1 + int(rand() * 6)], int(rand() * 32),
            verbs[1 + int(rand() * 4)], words[1 + int(rand() * 10)], int(rand() * 100000), int(rand() * 2000),
            int(rand() * 4294967296), int(rand() * 4294967296))
        while (length(line) < 188) line = line " " words[1 + int(rand() * 10)]
        print substr(line, 1, 188)
    }
}' > "$work/block"
block_bytes=$(( $(wc -c < "$work/block") + 20000 * 11 ))
copies=$(( (mb_per_file * 1000000 + block_bytes - 1) / block_bytes ))
for f in $(seq 0 $((files - 1))); do
    for c in $(seq 0 $((copies - 1))); do
        # 11 more bytes per line, "f<file>c<copy> ": lines are 200 bytes with the newline.
        awk -v p="$(printf 'f%02dc%06d ' "$f" "$c")" '{ print p $0 }' "$work/block"
    done > "$work/logs/app-$f.log"
done
rm "$work/block"
total_bytes=$(cat "$work"/logs/*.log | wc -c)
total_lines=$(cat "$work"/logs/*.log | wc -l)
echo "data: $files files, $total_lines lines, $total_bytes bytes; $(nproc) cores; $INLONG ${extra[*]}" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" >&2

# Starts a receiver on a free port below the ephemeral range; sets receiver_pid and port.
start_receiver() {
    for _ in $(seq 1 50); do
        port=$(( 20000 + RANDOM % 10000 ))
        "$INLONG" receive --count-only --listen "127.0.0.1:$port" > /dev/null 2> "$work/receiver.err" &
        receiver_pid=$!
        for _ in $(seq 1 100); do
            grep -q "listening on" "$work/receiver.err" 2>/dev/null && return 0
            kill -0 "$receiver_pid" 2>/dev/null || break
            sleep 0.05
        done
        kill "$receiver_pid" 2>/dev/null || true
        wait "$receiver_pid" 2>/dev/null || true
    done
    echo "no receiver could listen" >&2
    return 1
}

stop_receiver() {
    # The receiver's CPU seconds, from /proc (Linux).
    receiver_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$receiver_pid/stat" 2>/dev/null || echo -)
    kill -TERM "$receiver_pid"
    wait "$receiver_pid" || true
    receiver_pid=
    grep "received" "$work/receiver.err" | sed 's/^/    receiver: /' >&2
}

# Runs a command under /usr/bin/time -v; sets wall (s), cpu (user + system s) and rss (KB).
measure() {
    local out=$1
    shift
    local start end
    start=$(date +%s.%N)
    "${time_v[@]}" "$@" > "$out" 2> "$out.time" < /dev/null || echo "FAILED (exit $?): $*" >&2
    end=$(date +%s.%N)
    cpu=-
    rss=-
    if [[ ${#time_v[@]} -gt 0 ]]; then
        cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f", u + s}' "$out.time")
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out.time")
    fi
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}')
}

results=()
printf '%-6s %3s %8s %8s %12s %8s %9s %14s\n' tool run wall_s MB/s lines/s cpu_s rss_MB receiver_cpu_s
for run in $(seq 1 "$runs"); do
    for tool in agent send; do
        start_receiver
        if [[ $tool == agent ]]; then
            rm -rf "$work/state"
            measure "$work/$tool.out" "$INLONG" agent --path "$work/logs/*.log" --group g --stream s \
                --proxy "127.0.0.1:$port" --state-dir "$work/state" --once "${extra[@]}" ${AGENT_ARGS:-}
        else
            measure "$work/$tool.out" "$INLONG" send --group g --stream s --proxy "127.0.0.1:$port" "${extra[@]}" "$work"/logs/*.log
        fi
        stop_receiver
        sed 's/^/    /' "$work/$tool.out" >&2
        rate=$(awk -v b="$total_bytes" -v s="$wall" 'BEGIN {printf "%.1f", b / 1e6 / s}')
        lines=$(awk -v l="$total_lines" -v s="$wall" 'BEGIN {printf "%.0f", l / s}')
        rss_mb=$([[ $rss == - ]] && echo - || awk -v k="$rss" 'BEGIN {printf "%.0f", k / 1024}')
        printf '%-6s %3d %8s %8s %12s %8s %9s %14s\n' "$tool" "$run" "$wall" "$rate" "$lines" "$cpu" "$rss_mb" "$receiver_cpu"
        results+=("$tool $rate")
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" >&2
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
agent=$(printf '%s\n' "${results[@]}" | awk '$1 == "agent" {print $2}' | median)
send=$(printf '%s\n' "${results[@]}" | awk '$1 == "send" {print $2}' | median)
echo "median MB/s: agent $agent, send $send; agent/send $(awk -v a="$agent" -v s="$send" 'BEGIN {printf "%.0f %%", 100 * a / s}')"
