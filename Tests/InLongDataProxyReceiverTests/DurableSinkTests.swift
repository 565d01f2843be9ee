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

/// The JSON Lines a sink writes read back as what was received, for seeded bodies of every kind: ASCII with
/// every control character and the characters JSON escapes, multi-byte UTF-8, bytes that are not UTF-8.
@Suite struct JSONLinesEncodingTests {
    @Test(arguments: 0..<20) func linesReadBackAsTheRecords(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var records: [ReceivedRecord] = []
        for _ in 0..<50 {
            var bytes: [UInt8]
            switch random.next() % 3 {
            case 0: bytes = (0..<Int(random.next() % 60)).map { _ in UInt8(random.next() % 0x80) }
            case 1: bytes = Array((0..<Int(random.next() % 20)).map { _ in ["é", "中", "😀", "a", "\"", "\\", "\n"][Int(random.next() % 7)] }.joined().utf8)
            default: bytes = (0..<Int(random.next() % 40) + 1).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            }
            let dataTime = Int64(bitPattern: random.next() % 4_000_000_000_000) - 1_000_000_000_000
            records.append(ReceivedRecord(body: ByteBuffer(bytes: bytes), attributes: random.next() % 2 == 0 ? nil : "dt=\(dataTime)&k=\"v\"", dataTime: dataTime))
        }
        let message = ReceivedMessage(
            group: "g\"1", stream: "s\\2", messageType: .binaryMultiBody, dataTime: 0, receivedAt: 1_700_000_000_123,
            clientAddress: "127.0.0.1:5", attributes: "groupId=g&streamId=s\t", recordCount: records.count, payloadBytes: 0, records: records
        )
        var out: [UInt8] = []
        JSONLinesSink.appendLines(of: message, to: &out)
        let lines = out.split(separator: UInt8(ascii: "\n"))
        #expect(lines.count == records.count)
        for (line, record) in zip(lines, records) {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
            #expect(object["group"] as? String == "g\"1")
            #expect(object["stream"] as? String == "s\\2")
            #expect(object["attributes"] as? String == "groupId=g&streamId=s\t")
            #expect(object["receivedAt"] as? Int == 1_700_000_000_123)
            #expect((object["dataTime"] as? NSNumber)?.int64Value == record.dataTime)
            #expect(object["recordAttributes"] as? String == record.attributes)
            let body: [UInt8]
            if object["encoding"] as? String == "utf8" {
                body = Array((object["body"] as? String ?? "").utf8)
            } else {
                #expect(object["encoding"] as? String == "base64")
                body = Array(Data(base64Encoded: object["body"] as? String ?? "") ?? Data())
            }
            #expect(body == Array(record.body.readableBytesView), "seed \(seed)")
        }
    }
}
