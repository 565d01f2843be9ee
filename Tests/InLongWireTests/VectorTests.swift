import InLongTestUtils
import InLongWire
import NIOCore
import Testing

/// Every golden frame of `vectors.json` decodes to its documented fields and re-encodes to the same bytes.
@Suite struct VectorTests {
    static let binaryRequestIDs = [
        "a_v7_one_record", "b_v7_three_records", "c_v7_three_records_snappy",
        "c2_v7_three_records_snappy_default_threshold", "g_v7_per_record_attrs", "h_v7_trace",
    ]

    @Test(arguments: Self.binaryRequestIDs)
    func binaryRequestDecodesToDocumentedFields(id: String) throws {
        let vector = Fixtures.vector(id)
        let message = try InLongBinaryMessage(frame: vector.buffer)
        #expect(vector.bytes.count == message.frameLength)
        #expect(Int(message.dataTime) == vector.field("dataTime")?.int)
        #expect(Int(message.count) == vector.field("cnt")?.int)
        #expect(Int(message.uniq) == vector.field("uniq")?.int)
        #expect(Int(message.extendedField.rawValue) == vector.field("extField")?.int)
        #expect(Int(message.typeFlags | 7) == vector.field("msgType")?.int)
        #expect(message.groupIDNum == 0 && message.streamIDNum == 0)
        if let attributes = vector.inputs?["attr"]?.string {
            #expect(message.attributes == attributes)
        } else {
            #expect(message.attributes == "groupId=test_group&streamId=test_stream")
        }

        let records = try message.records()
        #expect(records.count == Int(message.count))
        if let expected = vector.inputs?["records"]?.strings {
            #expect(records.map(\.data.text) == expected)
        }
        if let recordAttributes = vector.inputs?["recordAttr"]?.string {
            #expect(records.allSatisfy { $0.attributes == recordAttributes })
        } else {
            #expect(records.allSatisfy { $0.attributes == nil })
        }
        if let uncompressed = vector.inputs?["uncompressedBodyHex"]?.string {
            #expect(message.isCompressed)
            #expect(try message.recordBlock().bytes == Hex.decode(uncompressed))
        }

        // The decoded fields encode to the very same bytes.
        var encoded = ByteBuffer()
        try message.encode(into: &encoded)
        #expect(encoded.bytes == vector.bytes)
    }

    @Test(arguments: ["a_v7_one_record", "b_v7_three_records", "g_v7_per_record_attrs", "h_v7_trace"])
    func binaryRequestBuiltFromRecordsMatchesReferenceBytes(id: String) throws {
        let vector = Fixtures.vector(id)
        let reference = try InLongBinaryMessage(frame: vector.buffer)
        let records = try reference.records()
        let built = try InLongBinaryMessage(
            records: records,
            attributes: reference.attributes,
            uniq: reference.uniq,
            dataTime: reference.dataTime,
            extendedField: reference.extendedField,
            compressionThreshold: 512
        )
        var encoded = ByteBuffer()
        try built.encode(into: &encoded)
        #expect(Hex.encode(encoded.bytes) == vector.hex)
    }

    @Test(arguments: ["c_v7_three_records_snappy", "c2_v7_three_records_snappy_default_threshold"])
    func compressedRequestBuiltFromRecordsDecodesToTheSameRecords(id: String) throws {
        let vector = Fixtures.vector(id)
        let records = vector.inputs!["records"]!.strings!.map { InLongRecord($0) }
        let built = try InLongBinaryMessage(
            records: records,
            attributes: "groupId=test_group&streamId=test_stream",
            uniq: UInt32(vector.inputs!["uniq"]!.int!),
            dataTime: 1_700_000_000,
            compressionThreshold: 0
        )
        #expect(built.isCompressed)
        var encoded = ByteBuffer()
        try built.encode(into: &encoded)
        // Header bytes are identical; the snappy body may differ between encoders, so compare its content.
        #expect(encoded.bytes.prefix(21) == vector.bytes.prefix(21))
        let decoded = try InLongBinaryMessage(frame: encoded)
        #expect(try decoded.recordBlock().bytes == Hex.decode(vector.inputs!["uncompressedBodyHex"]!.string!))
        #expect(try decoded.records().map(\.data.text) == vector.inputs!["records"]!.strings!)
    }

    @Test func defaultThresholdLeavesSmallBlocksUncompressed() throws {
        let vector = Fixtures.vector("b_v7_three_records")
        let built = try InLongBinaryMessage(
            records: ["alpha", "bravo-2", "charlie-33"].map { InLongRecord($0) },
            attributes: "groupId=test_group&streamId=test_stream",
            uniq: 2,
            dataTime: 1_700_000_000,
            compressionThreshold: 512
        )
        var encoded = ByteBuffer()
        try built.encode(into: &encoded)
        #expect(encoded.bytes == vector.bytes)
    }

    @Test(arguments: ["d1_hb8_request_cpp", "d4_hb8_request_java"])
    func binaryHeartbeatRequest(id: String) throws {
        let vector = Fixtures.vector(id)
        guard case .binaryHeartbeat(let heartbeat) = try InLongRequest(frame: vector.buffer) else {
            Issue.record("not a heartbeat")
            return
        }
        #expect(Int(heartbeat.dataTime) == vector.field("dataTime")?.int)
        #expect(Int(heartbeat.bodyVersion) == vector.field("bodyVersion")?.int)
        #expect(heartbeat.body.readableBytes == 0 && heartbeat.attributes.isEmpty)
        var encoded = ByteBuffer()
        try InLongBinaryHeartbeat(dataTime: heartbeat.dataTime, bodyVersion: heartbeat.bodyVersion)
            .encode(into: &encoded)
        #expect(encoded.bytes == vector.bytes)
    }

    @Test(arguments: [("d2_hb8_response_load35", Int16(35)), ("d3_hb8_response_stock_server", Int16(-1))])
    func binaryHeartbeatResponse(id: String, load: Int16) throws {
        let vector = Fixtures.vector(id)
        guard case .binaryHeartbeat(let response) = try InLongResponse(frame: vector.buffer) else {
            Issue.record("not a heartbeat response")
            return
        }
        #expect(response.load == load)
        #expect(response.reportedLoad == (load > 0 ? Int(load) : nil))
        #expect(response.dataTime == 1_700_000_001 && response.bodyVersion == 1)
        var encoded = ByteBuffer()
        try InLongBinaryHeartbeatResponse(dataTime: 1_700_000_001, bodyVersion: 1, load: load).encode(into: &encoded)
        #expect(encoded.bytes == vector.bytes)
    }

    @Test func successAck() throws {
        let vector = Fixtures.vector("e1_v7_ack_success")
        guard case .binaryAck(let ack) = try InLongResponse(frame: vector.buffer) else {
            Issue.record("not an ack")
            return
        }
        #expect(ack.uniq == 1)
        #expect(ack.attributes == vector.inputs!["attr"]!.string!)
        #expect(ack.result.errorCode == .success)
        #expect(ack.result.isDelivered)
        #expect(ack.result.proxyIP == "10.0.0.1")
        var encoded = ByteBuffer()
        try InLongBinaryAck(uniq: 1, attributes: ack.attributes).encode(into: &encoded)
        #expect(encoded.bytes == vector.bytes)
    }

    @Test func errorAckWithUnescapedMessage() throws {
        let vector = Fixtures.vector("e2_v7_ack_error_topic_blank")
        let ack = try InLongBinaryAck(frame: vector.buffer)
        #expect(ack.result.errorCode == .topicIsBlank)
        #expect(ack.result.errorCode.disposition == .fatal)
        #expect(ack.result.errorMessage == vector.inputs!["errMsg"]!.string!)
        #expect(!ack.result.isDelivered)
        // The server's strict parser rejects this string, by design: errMsg contains '='.
        #expect(throws: InLongWireError.self) { try InLongAttributes(parsing: ack.attributes) }
        var encoded = ByteBuffer()
        try InLongBinaryAck(uniq: 1, attributes: vector.inputs!["attr"]!.string!).encode(into: &encoded)
        #expect(encoded.bytes == vector.bytes)
    }

    @Test(arguments: [
        ("f1_type5_go_batch", InLongMessageType.multiBody), ("f2_type3_cpp", .ackService),
    ])
    func textRequest(id: String, type: InLongMessageType) throws {
        let vector = Fixtures.vector(id)
        guard case .text(let message) = try InLongRequest(frame: vector.buffer) else {
            Issue.record("not a text message")
            return
        }
        #expect(message.type == type)
        #expect(message.attributes == vector.inputs!["attr"]!.string!)
        let records = vector.inputs!["records"]!.strings!
        if type == .multiBody {
            #expect(try InLongRecordBlock.decode(message.body, extendedField: []).map(\.data.text) == records)
        } else {
            #expect(message.body.text == records.joined(separator: "\n"))
        }
        var encoded = ByteBuffer()
        try InLongTextMessage(type: type, body: message.body, attributes: message.attributes).encode(into: &encoded)
        #expect(encoded.bytes == vector.bytes)
    }

    @Test(arguments: [("f1r_type5_ack", InLongMessageType.multiBody), ("f2r_type3_ack", .ackService)])
    func textAck(id: String, type: InLongMessageType) throws {
        let vector = Fixtures.vector(id)
        guard case .textAck(let ack) = try InLongResponse(frame: vector.buffer) else {
            Issue.record("not a text ack")
            return
        }
        #expect(ack.type == type)
        #expect(ack.body == InLongTextMessage.ackBody)
        #expect(ack.attributes == vector.inputs!["attr"]!.string!)
        var encoded = ByteBuffer()
        try InLongTextMessage(type: type, body: InLongTextMessage.ackBody, attributes: ack.attributes)
            .encode(into: &encoded)
        #expect(encoded.bytes == vector.bytes)
    }

    @Test func textHeartbeatPair() throws {
        #expect(Fixtures.vector("f3_hb1_request_go").bytes == InLongTextHeartbeat.request)
        #expect(Fixtures.vector("f3r_hb1_response").bytes == InLongTextHeartbeat.response)
        #expect(try InLongRequest(frame: ByteBuffer(bytes: InLongTextHeartbeat.request)) == .heartbeat)
        #expect(try InLongResponse(frame: ByteBuffer(bytes: InLongTextHeartbeat.response)) == .heartbeat)
    }

    @Test func everyRequestAttributeStringPassesTheServerParser() throws {
        for vector in Fixtures.vectors where vector.id != "e2_v7_ack_error_topic_blank" {
            if let attributes = vector.inputs?["attr"]?.string {
                let parsed = try InLongAttributes(parsing: attributes)
                #expect(parsed.encoded == attributes)
            }
        }
    }
}
