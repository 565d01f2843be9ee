import InLongTestUtils
import InLongWire
import NIOCore
import Testing

/// Frames captured from the reference C++ and Java SDKs decode to what their index documents, carry exactly the
/// generated records, and their captured acks decode too.
@Suite struct CapturedFrameTests {
    static let cases: [(String, String)] =
        Fixtures.captures("cpp-sdk").map { ("cpp-sdk", $0.file) } + Fixtures.captures("java-sdk").map { ("java-sdk", $0.file) }

    @Test(arguments: Self.cases)
    func capturedFrameDecodes(sdk: String, file: String) throws {
        let capture = Fixtures.captures(sdk).first { $0.file == file }!
        let frame = Fixtures.frame(sdk, file)
        let parsed = capture.receiver_parsed
        #expect(frame.readableBytes == capture.bytes)

        // The framer splits it as one whole frame.
        var stream = frame
        #expect(try InLongFraming.frameLength(in: stream, maxFrameSize: 1 << 20) == capture.bytes)
        var decoder = InLongFrameDecoder(maxFrameSize: 1 << 20)
        #expect(try decoder.decode(buffer: &stream)?.readableBytes == capture.bytes)

        switch try InLongRequest(frame: frame) {
        case .binary(let message):
            #expect(parsed.type == 7)
            #expect(Int(message.typeFlags | 7) == parsed.raw_type)
            #expect(Int(message.extendedField.rawValue) == parsed.ext_field)
            #expect(Int(message.count) == parsed.cnt)
            #expect(message.uniq == parsed.uniq)
            #expect(message.dataTime == parsed.data_time)
            #expect(message.body.readableBytes == parsed.body_len)
            #expect(message.attributes == parsed.attr)
            #expect(try message.recordBlock().readableBytes == parsed.body_uncompressed_len)

            let records = try message.records()
            #expect(records.count == parsed.records)
            let indices = capture.records_in_frame!.message_indices
            let expected = indices.map {
                Fixtures.generatedMessage(
                    index: $0,
                    size: capture.messages_sent_in_run.size,
                    content: capture.messages_sent_in_run.content
                )
            }
            #expect(records.map(\.data.bytes) == expected)
            if message.extendedField.contains(.perRecordAttributes) {
                #expect(records.allSatisfy { $0.attributes?.hasPrefix("__addcol1__reptime=") == true })
            }

            // Re-encoding the decoded fields gives the captured bytes.
            var encoded = ByteBuffer()
            try message.encode(into: &encoded)
            #expect(encoded == frame)

            // The ack the capture receiver sent decodes and matches the request.
            if let ackHex = capture.ack_sent_hex {
                let ack = try InLongBinaryAck(frame: ByteBuffer(bytes: Hex.decode(ackHex)))
                #expect(ack.uniq == message.uniq)
                #expect(ack.result.isDelivered)
                #expect(ack.attributes.hasPrefix("dpIp=127.0.0.1&"))
                #expect(ack.attributes.hasSuffix(message.attributes))
            }
        case .binaryHeartbeat(let heartbeat):
            #expect(parsed.type == 8)
            #expect(Int(heartbeat.bodyVersion) == parsed.version)
            #expect(heartbeat.dataTime == parsed.data_time)
            var encoded = ByteBuffer()
            try heartbeat.encode(into: &encoded)
            #expect(encoded == frame)
            if let responseHex = capture.response_sent_hex {
                let response = try InLongBinaryHeartbeatResponse(frame: ByteBuffer(bytes: Hex.decode(responseHex)))
                #expect(response.bodyVersion == heartbeat.bodyVersion)
                #expect(response.load == -1)
            }
        default:
            Issue.record("unexpected frame kind in \(file)")
        }
    }

    @Test func recompressingCapturedRecordsRoundTrips() throws {
        for (sdk, file) in Self.cases {
            guard case .binary(let message) = try InLongRequest(frame: Fixtures.frame(sdk, file)) else { continue }
            let records = try message.records()
            let rebuilt = try InLongBinaryMessage(
                records: records,
                attributes: message.attributes,
                uniq: message.uniq,
                dataTime: message.dataTime,
                extendedField: message.extendedField,
                compressionThreshold: 512
            )
            var encoded = ByteBuffer()
            try rebuilt.encode(into: &encoded)
            #expect(try InLongBinaryMessage(frame: encoded).records() == records)
        }
    }
}
