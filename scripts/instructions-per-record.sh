#!/usr/bin/env bash
# Instructions per record of `inlong send`, counted with valgrind's callgrind (repeatable where CPU times on a
# shared machine are not): runs `inlong send` of the first N and the first 2N lines of FILE into a local
# `inlong receive --count-only`, and prints (instructions(2N) - instructions(N)) / N, which leaves start-up out.
#
#   scripts/instructions-per-record.sh INLONG FILE [N]      N defaults to 100000
#
# INLONG should be a release build without debug information (`strip --strip-debug`): valgrind 3.19 cannot read
# Swift's. valgrind 3.19 also writes to the signal mask libdispatch hands sigsuspend, which is read-only, and
# crashes: a shim preloaded into the sender copies it first.
set -euo pipefail
inlong=$1; file=$2; n=${3:-100000}
work=$(mktemp -d)
trap 'kill "${receiver:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/shim.c" <<'C'
#define _GNU_SOURCE
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
int sigsuspend(const sigset_t *mask) { sigset_t copy = *mask; return (int)syscall(SYS_rt_sigsuspend, &copy, 8); }
C
cc -shared -fPIC -O2 -o "$work/shim.so" "$work/shim.c"
port=$((47000 + RANDOM % 1000))
"$inlong" receive --listen "127.0.0.1:$port" --count-only > "$work/receive.log" 2>&1 &
receiver=$!
sleep 1
count() {
    head -n "$1" "$file" > "$work/lines"
    LD_PRELOAD="$work/shim.so" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.$1" \
        "$inlong" send --proxy "127.0.0.1:$port" --group g --stream s "$work/lines" > "$work/send.$1.log" 2>&1
    grep -a "Collected" "$work/send.$1.log" | awk '{print $NF}'
}
one=$(count "$n")
two=$(count $((2 * n)))
echo "instructions: $one for $n lines, $two for $((2 * n)); per record: $(( (two - one) / n ))"
callgrind_annotate "$work/callgrind.$((2 * n))" 2>/dev/null | grep -A 12 "file:function" | tail -n 11 | cut -c1-140
