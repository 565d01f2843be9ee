#!/usr/bin/env bash
# `inlong send --spool` killed at random moments: every line of the file must reach the receiver at least once.
# usage: scripts/spool-crash.sh [INLONG] [LINES] [KILLS]
# Sends a file of LINES numbered lines, SIGKILLs the sender KILLS times at random moments (each run starts over
# with the same file and spool), then lets a last run finish; prints lines missing (must be 0) and duplicates.
set -euo pipefail
INLONG=${1:-.build/release/inlong}
LINES=${2:-1000000}
KILLS=${3:-5}
WORK=$(mktemp -d)
trap 'kill $RECEIVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((40000 + RANDOM % 5000))
awk -v n="$LINES" 'BEGIN { for (i = 0; i < n; i++) printf "line-%09d-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789\n", i }' > "$WORK/input.log"
"$INLONG" receive --listen 127.0.0.1:$PORT --out "$WORK/received.jsonl" > "$WORK/receive.log" 2>&1 &
RECEIVER=$!
sleep 1
for round in $(seq 1 "$KILLS"); do
    "$INLONG" send --proxy 127.0.0.1:$PORT --group g --stream s --spool "$WORK/spool" "$WORK/input.log" > "$WORK/send-$round.log" 2>&1 &
    SENDER=$!
    # A random moment: 50 to 1,500 ms into the run.
    sleep "0.$(printf '%03d' $((50 + RANDOM % 950)))"
    [ $((RANDOM % 3)) -eq 0 ] && sleep 0.5
    kill -9 $SENDER 2>/dev/null || true
    wait $SENDER 2>/dev/null || true
    echo "run $round killed; spool: $(du -sk "$WORK/spool" | cut -f1) KiB"
done
"$INLONG" send --proxy 127.0.0.1:$PORT --group g --stream s --spool "$WORK/spool" "$WORK/input.log" > "$WORK/send-last.log" 2>&1
cat "$WORK/send-last.log"
sleep 1
grep -o '"body":"line-[0-9]*' "$WORK/received.jsonl" | cut -d- -f2 | sort | uniq -c | awk -v n="$LINES" '
    { seen[$2 + 0] = 1; if ($1 > 1) dup += $1 - 1; total += $1 }
    END { missing = 0; for (i = 0; i < n; i++) if (!(i in seen)) missing++;
          printf "lines %d, received %d, missing %d, duplicates %d\n", n, total, missing, dup; exit missing > 0 }'
