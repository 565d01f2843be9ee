#!/usr/bin/env bash
# Builds the client SDK with the package traits off (`traits: []`, as an application that sends to known proxies
# may depend on it): no AsyncHTTPClient, NIOSSL or Yams. CI runs it last (.ci/run): it rebuilds the modules
# the traits touch.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
swift build --disable-default-traits --target InLongDataProxy
echo "InLongDataProxy built without package traits in $(( $(date +%s) - start )) s"
