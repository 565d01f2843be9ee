import Foundation
import InLongWire
import NIOCore
import Testing

@testable import InLongDataProxyReceiver

/// The JSON Lines sink with `fsync`: every write returns only once a sync covered it; writers together share syncs.
@Suite struct DurableSinkTests {
    static func message(_ index: Int) -> ReceivedMessage {
        ReceivedMessage(
            group: "g", stream: "s", messageType: .binaryMultiBody, dataTime: 1_700_000_000_000, receivedAt: 1_700_000_000_000,
            clientAddress: "127.0.0.1:1", attributes: "groupId=g&streamId=s", recordCount: 1, payloadBytes: 8,
            records: [ReceivedRecord(body: ByteBuffer(string: "record-\(index)"), dataTime: 1_700_000_000_000)]
        )
    }

    @Test func everyWriteReturnsAfterASyncThatCoversIt() async throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-durable-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        let sink = try JSONLinesSink(url: url, fsync: true)
        #expect(sink.acksAreDurable)
        let writers = 64
        try await withThrowingDiscardingTaskGroup { group in
            for index in 0..<writers {
                group.addTask {
                    try await sink.write(Self.message(index))
                    // Returned: the sync that covered this write ended.
                    #expect(sink.syncCount >= 1)
                }
            }
        }
        #expect(sink.syncCount >= 1 && sink.syncCount <= writers)
        try sink.close()
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        #expect(Set(lines.map { String($0) }).count == writers)
    }

    @Test func withoutFsyncNothingIsSynced() async throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-plain-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        let sink = try JSONLinesSink(url: url)
        #expect(!sink.acksAreDurable)
        try await sink.write(Self.message(0))
        #expect(sink.syncCount == 0)
        try sink.close()
    }
}
