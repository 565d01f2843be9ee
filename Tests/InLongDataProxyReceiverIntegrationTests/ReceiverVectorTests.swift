import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import NIOCore
import Testing

/// Every request of the golden vectors and of the captured SDK frames, sent over a real socket, gets the reply the
/// real server gives (times masked), and its records land in the sink intact.
@Suite struct ReceiverVectorTests {
    /// Request vector → response vector whose bytes the reply must match once `dpIp` and times are replaced.
    static let pairs: [(String, String)] = [
        ("a_v7_one_record", "e1_v7_ack_success"),
        ("f1_type5_go_batch", "f1r_type5_ack"),
        ("f2_type3_cpp", "f2r_type3_ack"),
        ("f3_hb1_request_go", "f3r_hb1_response"),
        ("d1_hb8_request_cpp", "d3_hb8_response_stock_server"),
    ]

    @Test(arguments: Self.pairs)
    func replyMatchesResponseVector(request: String, response: String) async throws {
        try await withReceiver { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            defer { Task { await client.close() } }
            try await client.write(Fixtures.vector(request).buffer)
            guard case .frame(let reply) = await client.read() else {
                Issue.record("no reply")
                return
            }
            let expected = Fixtures.vector(response).buffer
            switch (try InLongResponse(frame: reply), try InLongResponse(frame: expected)) {
            case (.binaryAck(let actual), .binaryAck(let golden)):
                #expect(actual.uniq == golden.uniq)
                #expect(maskTimes(actual.attributes) == maskTimes(golden.attributes.replacing("dpIp=10.0.0.1", with: "dpIp=127.0.0.1")))
                var reencoded = ByteBuffer()
                try actual.encode(into: &reencoded)
                #expect(reencoded == reply)
            case (.textAck(let actual), .textAck(let golden)):
                #expect(actual.type == golden.type)
                #expect(actual.body == golden.body)
                #expect(maskTimes(actual.attributes) == maskTimes(golden.attributes.replacing("dpIp=10.0.0.1", with: "dpIp=127.0.0.1")))
            case (.heartbeat, .heartbeat):
                #expect(reply == expected)
            case (.binaryHeartbeat(let actual), .binaryHeartbeat(let golden)):
                // Only dataTime (server now) may differ.
                var masked = reply
                masked.setInteger(UInt32(0), at: 5)
                var goldenMasked = expected
                goldenMasked.setInteger(UInt32(0), at: 5)
                #expect(masked == goldenMasked)
                #expect(actual.load == golden.load)
            case (let actual, let golden):
                Issue.record("reply \(actual) does not have the shape of \(golden)")
            }
        }
    }

    @Test func javaHeartbeatVersionIsEchoed() async throws {
        try await withReceiver { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(Fixtures.vector("d4_hb8_request_java").buffer)
            guard case .binaryHeartbeat(let reply) = try await readAck(client) else {
                Issue.record("expected a type-8 reply")
                return
            }
            #expect(reply.bodyVersion == 2)
            #expect(reply.load == -1)
            await client.close()
        }
    }

    static let dataVectors = [
        "a_v7_one_record", "b_v7_three_records", "c_v7_three_records_snappy",
        "c2_v7_three_records_snappy_default_threshold", "g_v7_per_record_attrs", "h_v7_trace",
        "f1_type5_go_batch", "f2_type3_cpp",
    ]

    @Test(arguments: Self.dataVectors)
    func recordsLandInSinkIntact(id: String) async throws {
        let vector = Fixtures.vector(id)
        // Vector h documents only its attributes; its record is vector a's.
        let expectedRecords = vector.inputs?["records"]?.strings ?? (id.hasPrefix("h_") ? ["hello inlong"] : [])
        #expect(!expectedRecords.isEmpty)
        try await withReceiver { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(vector.buffer)
            let response = try await readAck(client)
            switch response {
            case .binaryAck(let ack):
                #expect(ack.result.isDelivered)
                #expect(ack.result.proxyIP == "127.0.0.1")
                let request = try InLongBinaryMessage(frame: vector.buffer)
                #expect(ack.uniq == request.uniq)
                let expectedPrefix = request.extendedField.contains(.trace)
                    ? "dpIp=127.0.0.1&rtms=*&node2ip=\(try await receiver.port())&rtime2=*&"
                    : "dpIp=127.0.0.1&rtms=*&"
                #expect(maskTimes(ack.attributes) == expectedPrefix + request.attributes)
            case .textAck(let ack):
                #expect(!ack.attributes.contains("errCode"))
            default:
                Issue.record("unexpected reply \(String(describing: response))")
            }
            let sink = receiver.memorySink
            #expect(sink.records.map { String(buffer: $0.body) } == expectedRecords)
            let message = try #require(sink.messages.first)
            #expect(message.group == "test_group")
            #expect(message.stream == "test_stream")
            #expect(message.clientAddress.hasPrefix("127.0.0.1:"))
            if id.hasPrefix("g_") {
                let recordAttributes = vector.inputs?["recordAttr"]?.string
                #expect(sink.records.allSatisfy { $0.attributes == recordAttributes })
            }
            await client.close()
        }
    }

    static let captures: [(String, String)] =
        Fixtures.captures("cpp-sdk").map { ("cpp-sdk", $0.file) } + Fixtures.captures("java-sdk").map { ("java-sdk", $0.file) }

    @Test(arguments: Self.captures)
    func capturedFrameGetsTheCapturedReply(sdk: String, file: String) async throws {
        let capture = Fixtures.captures(sdk).first { $0.file == file }!
        try await withReceiver { receiver in
            let port = try await receiver.port()
            let client = try await RawClient.connect(port: port)
            try await client.write(Fixtures.frame(sdk, file))
            guard case .frame(let reply) = await client.read() else {
                Issue.record("no reply")
                return
            }
            if let ackHex = capture.ack_sent_hex {
                let golden = try InLongBinaryAck(frame: ByteBuffer(hex: ackHex))
                let actual = try InLongBinaryAck(frame: reply)
                #expect(actual.uniq == golden.uniq)
                // The capture receiver listened on another port; node2ip carries the port.
                let goldenAttributes = maskTimes(golden.attributes).replacing(#/node2ip=\d+/#) { _ in "node2ip=\(port)" }
                #expect(maskTimes(actual.attributes) == goldenAttributes)
                let indices = capture.records_in_frame?.message_indices ?? []
                let expected = indices.map {
                    Fixtures.generatedMessage(index: $0, size: capture.messages_sent_in_run.size, content: capture.messages_sent_in_run.content)
                }
                #expect(receiver.memorySink.records.map { Array($0.body.readableBytesView) } == expected)
            } else if let responseHex = capture.response_sent_hex {
                var expected = ByteBuffer(hex: responseHex)
                var actual = reply
                if expected.getInteger(at: 4, as: UInt8.self) == 8 {
                    expected.setInteger(UInt32(0), at: 5)
                    actual.setInteger(UInt32(0), at: 5)
                }
                #expect(actual == expected)
            } else {
                Issue.record("capture \(file) documents no reply")
            }
            await client.close()
        }
    }
}
