#!/usr/bin/env bash
# End-to-end integrity checks of `inlong agent` against `inlong receive`, on 127.0.0.1 only, with the log writer
# and Manager stub of the shared reproducers (logwriter.py, manager_stub.py). Three scenarios:
#
#   a  copytruncate   the agent tails one file that a writer fills at 10,000 lines/s and copytruncates every
#                     8,000 lines; after the writer finished and the receiver's count has been still for 5 s, the
#                     agent gets SIGTERM. Every line id C00-0000000000..C00-0000019999 must have arrived at least
#                     once. Repeated RUNS times (default 10); the summary counts the runs that lost lines.
#   b  budget         4 files x 50,000 lines of 200 B, written before the agent starts; maxUnackedBytes 3 MiB
#                     (3145728) and a receiver that acks each request after 200 ms; `inlong agent --once` must
#                     deliver all 200,000 lines within B_TIMEOUT s (default 120), else STALLED.
#   c  two clusters   Manager discovery (manager_stub.py): group gA goes to a live receiver, group gB to a cluster
#                     whose only proxy port has no listener. Counts the gA lines (50,000) that arrive within
#                     C_WAIT s (default 60). Stage 2: a receiver starts on gB's port; all gB lines (400,000) must
#                     arrive within another C_WAIT s.
#
#   INLONG=path/to/inlong scripts/agent-integrity.sh [a] [b] [c]        (default: all three)
#
# Environment: INLONG (required, the executable), REPRO (the reproducers' folder, default ../../shared/repro from
# this script), RUNS (scenario a's runs, default 10), B_TIMEOUT, C_WAIT, C_B_FILES (gB's 400,000 lines are spread
# over this many files, default 4, 80 MB in all; with 1 file, whose read-ahead stops at the 16 MiB per-file budget,
# well under the client's 64 MiB buffer, gA was not held up at e088a17), WORK_DIR (default: a new directory under
# ${TMPDIR:-/tmp}), KEEP=1 keeps it (logs, receiver output, configurations). INLONG_* settings in the environment
# are removed so that they cannot change the agent's configuration. Every process started here is stopped on exit;
# every wait is bounded.
#
# Prints one line per run and a `SUMMARY <scenario>: ...` line per scenario. Exit status: 0 when every scenario
# delivered every line, 1 when one did not, 2 on a usage or setup error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
REPRO=${REPRO:-$here/../../shared/repro}
RUNS=${RUNS:-10}
B_TIMEOUT=${B_TIMEOUT:-120}
C_WAIT=${C_WAIT:-60}
C_B_FILES=${C_B_FILES:-4}

[[ -n "${INLONG:-}" && -x "${INLONG:-}" ]] || { echo "set INLONG to the inlong executable" >&2; exit 2; }
[[ -f "$REPRO/logwriter.py" && -f "$REPRO/manager_stub.py" ]] || { echo "no logwriter.py/manager_stub.py in $REPRO: set REPRO" >&2; exit 2; }
command -v python3 > /dev/null || { echo "python3 is needed" >&2; exit 2; }
scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(a b c)
for s in "${scenarios[@]}"; do [[ $s == a || $s == b || $s == c ]] || { echo "unknown scenario '$s' (a, b or c)" >&2; exit 2; }; done

# The agent and the receiver read INLONG_* variables over their configuration: none may leak in.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep '^INLONG_' || true)

work=${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/inlong-agent-e2e.XXXXXX")}
mkdir -p "$work"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
    for pid in "${pids[@]}"; do stop_pid "$pid" 5 || true; done
    if [[ -n "${KEEP:-}" ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo interrupted >&2; exit 130' INT TERM

# Seconds since the epoch, with fractions.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

# Remembers a background process for the exit trap.
track() { pids+=("$1"); }

# Runs a command in the background and waits for it, so that SIGINT/SIGTERM reach the trap at once (bash runs
# traps only between foreground commands); returns the command's exit status.
run() {
    "$@" &
    local pid=$! status=0
    track "$pid"
    wait "$pid" || status=$?
    return $status
}

# Sends SIGTERM to PID, waits up to TIMEOUT s, then SIGKILL. Returns the process's exit status (137 when killed).
stop_pid() {
    local pid=$1 timeout=${2:-10} waited=0
    kill -0 "$pid" 2> /dev/null || { wait "$pid" 2> /dev/null; return $?; }
    kill -TERM "$pid" 2> /dev/null || true
    while kill -0 "$pid" 2> /dev/null && (( waited < timeout * 10 )); do sleep 0.1; waited=$((waited + 1)); done
    if kill -0 "$pid" 2> /dev/null; then
        echo "  (pid $pid did not stop within $timeout s: killed)" >&2
        kill -KILL "$pid" 2> /dev/null || true
    fi
    local status=0
    wait "$pid" 2> /dev/null || status=$?
    return $status
}

# Waits up to TIMEOUT s for PID to exit; returns 0 when it did (its status is collected by stop_pid later).
wait_exit() {
    local pid=$1 timeout=$2 waited=0
    while kill -0 "$pid" 2> /dev/null; do
        (( waited < timeout * 10 )) || return 1
        sleep 0.1
        waited=$((waited + 1))
    done
}

# A port on 127.0.0.1 below the ephemeral range that nothing listens on now.
free_port() {
    python3 -c '
import random, socket
for _ in range(500):
    p = random.randint(20000, 29999)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
else:
    raise SystemExit("no free port")'
}

# start_receiver NAME PORT OUT [flags...]: `inlong receive` on 127.0.0.1:PORT (0 picks one) writing JSON lines to
# OUT; sets receiver_pid and receiver_port once it listens.
start_receiver() {
    local name=$1 port=$2 out=$3
    shift 3
    "$INLONG" receive --listen "127.0.0.1:$port" --out "$out" --overwrite "$@" > /dev/null 2> "$work/$name.err" &
    receiver_pid=$!
    track "$receiver_pid"
    for _ in $(seq 1 200); do
        if grep -q "listening on" "$work/$name.err" 2> /dev/null; then
            receiver_port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\).*/\1/p' "$work/$name.err" | head -n 1)
            return 0
        fi
        kill -0 "$receiver_pid" 2> /dev/null || break
        sleep 0.05
    done
    echo "receiver $name did not start:" >&2
    cat "$work/$name.err" >&2
    exit 2
}

# Lines in FILE (0 when absent).
count() { [[ -f $1 ]] && wc -l < "$1" | tr -d ' ' || echo 0; }

# Lines of GROUP in the receiver output FILE.
count_group() { [[ -f $1 ]] && { grep -c "\"group\":\"$2\"" "$1" || true; } || echo 0; }

# check_ids OUT TAG FILES LINES [GROUP]: compares the receiver's JSON lines (of GROUP) with the ids logwriter.py
# wrote (TAG + "%02d-%010d" for FILES files of LINES lines); prints "DISTINCT EXPECTED DUPLICATES UNEXPECTED MISSING"
# where MISSING summarises the missing id ranges ("-" when none).
check_ids() {
    python3 - "$@" << 'EOF'
import base64, collections, json, sys
path, tag, files, lines = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
group = sys.argv[5] if len(sys.argv) > 5 else None
seen = collections.Counter()
with open(path, "rb") as f:
    for raw in f:
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if group and record.get("group") != group:
            continue
        body = record.get("body", "")
        if record.get("encoding") == "base64":
            body = base64.b64decode(body).decode("utf-8", "replace")
        seen[body.split("|", 1)[0]] += 1
distinct = duplicates = 0
missing = []
for f in range(files):
    for i in range(lines):
        n = seen.pop("%s%02d-%010d" % (tag, f, i), 0)
        if n:
            distinct += 1
            duplicates += n - 1
        else:
            missing.append((f, i))
unexpected = sum(seen.values())
ranges = []
for f, i in missing:
    if ranges and ranges[-1][0] == f and ranges[-1][2] == i - 1:
        ranges[-1][2] = i
    else:
        ranges.append([f, i, i])
text = ",".join("%s%02d:%d-%d" % (tag, f, a, b) for f, a, b in ranges[:5]) + (",..." if len(ranges) > 5 else "")
print(distinct, files * lines, duplicates, unexpected, text or "-")
EOF
}

failed=0

# (a) copytruncate while tailing.
scenario_a() {
    local lossy=0 r lines=20000
    echo "== a: copytruncate, $RUNS runs"
    for r in $(seq 1 "$RUNS"); do
        local dir="$work/a$r"
        mkdir -p "$dir/logs"
        start_receiver "a$r-receiver" 0 "$dir/received.jsonl"
        local receiver=$receiver_pid
        "$INLONG" agent --path "$dir/logs/app-*.log" --group gC --stream s --proxy "127.0.0.1:$receiver_port" \
            --state-dir "$dir/state" --shutdown-timeout 10 > "$dir/agent.out" 2> "$dir/agent.err" &
        local agent=$!
        track "$agent"
        sleep 1 # the agent's first scan finds an empty folder: the file is new to it, read from its start
        local start
        start=$(now)
        run timeout 120 python3 "$REPRO/logwriter.py" "$dir/logs" --tag C --files 1 --lines "$lines" --size 100 \
            --rate 10000 --copytruncate 8000 > "$dir/writer.out" 2>&1 || echo "  writer failed: $(cat "$dir/writer.out")" >&2
        # Quiet for 5 s (at most 60 s after the writer) before stopping the agent.
        local last=-1 still=0 waited=0 n
        while (( still < 5 && waited < 60 )); do
            sleep 1
            waited=$((waited + 1))
            n=$(count "$dir/received.jsonl")
            if [[ $n == "$last" ]]; then still=$((still + 1)); else still=0; last=$n; fi
        done
        local agent_status=0
        stop_pid "$agent" 20 || agent_status=$?
        stop_pid "$receiver" 10 || true
        local distinct expected duplicates unexpected missing
        read -r distinct expected duplicates unexpected missing < <(check_ids "$dir/received.jsonl" C 1 "$lines")
        local note=""
        [[ $distinct == "$expected" ]] || { lossy=$((lossy + 1)); note=", missing $missing"; }
        [[ $unexpected == 0 ]] || note+=", $unexpected unexpected records"
        [[ $agent_status == 0 ]] || note+=", agent exit $agent_status"
        echo "copytruncate run $r: $distinct/$expected distinct ids, $duplicates duplicates$note ($(elapsed "$start") s)"
    done
    echo "SUMMARY copytruncate: $lossy of $RUNS runs lost lines"
    (( lossy == 0 )) || failed=1
}

# (b) a small read-ahead budget against slow acks.
scenario_b() {
    local dir="$work/b" files=4 lines=50000
    echo "== b: budget (maxUnackedBytes 3145728, --ack-delay 200ms, timeout $B_TIMEOUT s)"
    mkdir -p "$dir/logs"
    run python3 "$REPRO/logwriter.py" "$dir/logs" --tag B --files "$files" --lines "$lines" --size 200 > /dev/null
    start_receiver b-receiver 0 "$dir/received.jsonl" --ack-delay 200ms
    local receiver=$receiver_pid
    cat > "$dir/agent.yaml" << EOF
stateDirectory: state
proxies: ["127.0.0.1:$receiver_port"]
maxUnackedBytes: 3145728
shutdownTimeout: 5
sources:
  - paths: ["logs/app-*.log"]
    group: gBudget
    stream: s
EOF
    local start status=0
    start=$(now)
    run timeout -k 15 "$B_TIMEOUT" "$INLONG" agent --config "$dir/agent.yaml" --once > "$dir/agent.out" 2> "$dir/agent.err" || status=$?
    local took
    took=$(elapsed "$start")
    stop_pid "$receiver" 10 || true
    local distinct expected duplicates unexpected missing result
    read -r distinct expected duplicates unexpected missing < <(check_ids "$dir/received.jsonl" B "$files" "$lines")
    if [[ $status == 124 || $status == 137 ]]; then
        result="STALLED (no end within $B_TIMEOUT s)"
        failed=1
    elif [[ $status != 0 ]]; then
        result="FAILED (agent exit $status: $(tail -n 1 "$dir/agent.err"))"
        failed=1
    elif [[ $distinct != "$expected" ]]; then
        result="LOST LINES in $took s (missing $missing)"
        failed=1
    else
        result="complete in $took s"
    fi
    echo "SUMMARY budget: $result; $distinct/$expected distinct ids, $duplicates duplicates"
}

# (c) one cluster down must not hold up a group on another cluster.
scenario_c() {
    local dir="$work/c" a_lines=50000 b_total=400000
    local b_lines=$((b_total / C_B_FILES))
    (( b_lines * C_B_FILES == b_total )) || { echo "C_B_FILES must divide $b_total" >&2; exit 2; }
    echo "== c: two clusters via the Manager (gA up, gB's proxy down), ${C_WAIT} s per stage"
    mkdir -p "$dir/logs/a" "$dir/logs/b"
    run python3 "$REPRO/logwriter.py" "$dir/logs/a" --tag A --files 1 --lines "$a_lines" --size 200 > /dev/null
    run python3 "$REPRO/logwriter.py" "$dir/logs/b" --tag B --files "$C_B_FILES" --lines "$b_lines" --size 200 > /dev/null
    start_receiver c-receiver-a 0 "$dir/received-a.jsonl"
    local receiver_a=$receiver_pid port_a=$receiver_port
    local dead_port manager_port
    dead_port=$(free_port)
    manager_port=$(free_port)
    python3 "$REPRO/manager_stub.py" --port "$manager_port" --proxy "127.0.0.1:$port_a" \
        --group "gB=2@127.0.0.1:$dead_port" > /dev/null 2> "$work/c-manager.err" &
    local manager=$!
    track "$manager"
    for _ in $(seq 1 100); do grep -q "listening" "$work/c-manager.err" 2> /dev/null && break; sleep 0.05; done
    cat > "$dir/agent.yaml" << EOF
stateDirectory: state
manager:
  url: http://127.0.0.1:$manager_port/inlong/manager/openapi/dataproxy/getIpList
  cacheFile: proxy-cache.json
shutdownTimeout: 5
sources:
  - paths: ["logs/a/*.log"]
    group: gA
    stream: s
  - paths: ["logs/b/*.log"]
    group: gB
    stream: s
EOF
    "$INLONG" agent --config "$dir/agent.yaml" > "$dir/agent.out" 2> "$dir/agent.err" &
    local agent=$!
    track "$agent"
    # Stage 1: gA must arrive although gB's cluster is unreachable.
    local start n=0 a_time=""
    start=$(now)
    while awk -v a="$start" -v b="$(now)" -v w="$C_WAIT" 'BEGIN {exit !(b - a < w)}'; do
        n=$(count_group "$dir/received-a.jsonl" gA)
        if (( n >= a_lines )); then a_time=$(elapsed "$start"); break; fi
        kill -0 "$agent" 2> /dev/null || break
        sleep 0.5
    done
    local distinct expected duplicates unexpected missing stage1
    read -r distinct expected duplicates unexpected missing < <(check_ids "$dir/received-a.jsonl" A 1 "$a_lines" gA)
    if [[ -n $a_time && $distinct == "$expected" ]]; then
        stage1="all $expected gA lines in $a_time s"
    else
        stage1="$distinct/$expected gA lines within $C_WAIT s"
        failed=1
    fi
    kill -0 "$agent" 2> /dev/null || stage1+=" (agent exited: $(tail -n 1 "$dir/agent.err"))"
    echo "two clusters stage 1: $stage1"
    # Stage 2: gB's proxy comes up on its port.
    start_receiver c-receiver-b "$dead_port" "$dir/received-b.jsonl"
    local receiver_b=$receiver_pid b_time=""
    start=$(now)
    while awk -v a="$start" -v b="$(now)" -v w="$C_WAIT" 'BEGIN {exit !(b - a < w)}'; do
        n=$(count_group "$dir/received-b.jsonl" gB)
        if (( n >= b_total )); then b_time=$(elapsed "$start"); break; fi
        kill -0 "$agent" 2> /dev/null || break
        sleep 0.5
    done
    stop_pid "$agent" 20 || true
    stop_pid "$receiver_a" 10 || true
    stop_pid "$receiver_b" 10 || true
    stop_pid "$manager" 5 || true
    local stage2
    read -r distinct expected duplicates unexpected missing < <(check_ids "$dir/received-b.jsonl" B "$C_B_FILES" "$b_lines" gB)
    if [[ -n $b_time && $distinct == "$expected" ]]; then
        stage2="all $expected gB lines in $b_time s after gB's proxy came up"
    else
        stage2="$distinct/$expected gB lines within $C_WAIT s after gB's proxy came up"
        failed=1
    fi
    # gA's final count, after stage 2 (it may have been released by gB's proxy coming up).
    local a_final
    read -r a_final _ < <(check_ids "$dir/received-a.jsonl" A 1 "$a_lines" gA)
    echo "two clusters stage 2: $stage2; gA $a_final/$a_lines by the end"
    echo "SUMMARY two clusters: stage 1 $stage1; stage 2 $stage2"
}

echo "inlong: $INLONG; work: $work; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg 2> /dev/null)"
for s in "${scenarios[@]}"; do "scenario_$s"; done
exit $failed
