#!/usr/bin/env bash
# `inlong send --spool` while no proxy is up: lines beyond the memory quota wait on disk, and once a receiver
# comes up every line arrives exactly once.
# usage: scripts/spill-outage.sh [INLONG] [LINES] [OUTAGE_SECONDS] [MEMORY_BYTES]
# Starts the sender with nothing listening on its port, starts the receiver OUTAGE_SECONDS later, waits for the
# sender to finish; prints what the sender held on disk at the receiver's start, and lines missing and duplicated.
set -euo pipefail
INLONG=${1:-.build/release/inlong}
LINES=${2:-1000000}
OUTAGE=${3:-5}
MEMORY=${4:-8388608}
WORK=$(mktemp -d)
RECEIVER=
trap 'kill $RECEIVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((40000 + RANDOM % 5000))
awk -v n="$LINES" 'BEGIN { for (i = 0; i < n; i++) printf "line-%09d-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789\n", i }' > "$WORK/input.log"
START=$(date +%s.%N)
INLONG_BUFFER_MAX_BYTES=$MEMORY "$INLONG" send --proxy 127.0.0.1:$PORT --group g --stream s --spool "$WORK/spool" \
    --stats-json "$WORK/stats.json" "$WORK/input.log" > "$WORK/send.log" 2>&1 &
SENDER=$!
sleep "$OUTAGE"
echo "after ${OUTAGE} s without a proxy: spool $(du -sk "$WORK/spool" | cut -f1) KiB, sender $(kill -0 $SENDER 2>/dev/null && echo running || echo exited)"
"$INLONG" receive --listen 127.0.0.1:$PORT --out "$WORK/received.jsonl" > "$WORK/receive.log" 2>&1 &
RECEIVER=$!
STATUS=0
wait $SENDER || STATUS=$?
END=$(date +%s.%N)
tail -3 "$WORK/send.log"
echo "sender exit $STATUS after $(echo "$END - $START" | bc) s; spool left: $(ls "$WORK/spool" | grep -c '\.spool$' || true) segments"
sleep 1
grep -o '"body":"line-[0-9]*' "$WORK/received.jsonl" | cut -d- -f2 | sort | uniq -c | awk -v n="$LINES" '
    { seen[$2 + 0] = 1; if ($1 > 1) dup += $1 - 1; total += $1 }
    END { missing = 0; for (i = 0; i < n; i++) if (!(i in seen)) missing++;
          printf "lines %d, received %d, missing %d, duplicates %d\n", n, total, missing, dup; exit (missing > 0 || dup > 0) }'
