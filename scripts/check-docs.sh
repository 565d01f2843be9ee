#!/usr/bin/env bash
# Builds the DocC documentation of every library module with warnings treated as errors: a broken symbol link
# (``Type/member``), a missing article or snippet, or a malformed directive fails the build. CI runs it after the
# tests (.ci/run). The archives land in .build/plugins/Swift-DocC/outputs/.
#
#   scripts/check-docs.sh                    # every library module
#   scripts/check-docs.sh InLongTransport    # some of them
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(InLongSnappy InLongWire InLongTransport InLongDataProxy InLongDataProxyReceiver InLongAgent InLongAudit)
fi

arguments=()
for target in "${targets[@]}"; do arguments+=(--target "$target"); done

start=$(date +%s)
swift package generate-documentation "${arguments[@]}" --warnings-as-errors
echo "documentation of ${#targets[@]} modules built without warnings in $(( $(date +%s) - start )) s"
