#!/usr/bin/env bash
# Regenerates Sources/InLongAudit/Protocol/AuditApi.pb.swift from AuditApi.proto (InLong's
# inlong-audit/audit-common/src/main/proto/AuditApi.proto, copied unchanged). The generated file is committed: the
# package builds no plugin. swift-protobuf builds both tools from its own sources, no system protoc needed:
#   git clone --branch 1.39.0 https://github.com/apple/swift-protobuf && cd swift-protobuf
#   swift build -c release --product protoc && swift build -c release --product protoc-gen-swift
# then: PROTOC=.../.build/release/protoc PROTOC_GEN_SWIFT=.../.build/release/protoc-gen-swift scripts/generate-audit-protobuf.sh
set -euo pipefail
cd "$(dirname "$0")/../Sources/InLongAudit/Protocol"
"${PROTOC:?set PROTOC to protoc}" --plugin=protoc-gen-swift="${PROTOC_GEN_SWIFT:?set PROTOC_GEN_SWIFT to protoc-gen-swift}" \
    --swift_out=. -I . AuditApi.proto
echo "generated $(pwd)/AuditApi.pb.swift"
