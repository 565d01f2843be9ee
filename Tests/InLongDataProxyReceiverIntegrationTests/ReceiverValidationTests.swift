import InLongDataProxyReceiver
import InLongSnappy
import InLongTestUtils
import InLongWire
import NIOCore
import Testing

/// The reactions of wire-protocol.md §7: malformed framing closes the connection without a reply; a bad field in
/// a well-framed request gets an error ack and the connection stays open.
@Suite struct ReceiverValidationTests {
    /// Frames on which the real server closes the connection.
    static let closingFrames: [(String, [UInt8])] = {
        let valid = try! binaryFrame(["x"])
        var bodyPastFrame = valid
        bodyPastFrame.setInteger(UInt32(10_000), at: 21)
        var oversized: [UInt8] = [0x00, 0x10, 0x00, 0x00, 0x07]  // announces ~1 MiB
        oversized += [UInt8](repeating: 0, count: 16)
        return [
            ("frame above the limit", oversized),
            ("negative totalLen", [0xFF, 0xFF, 0xFF, 0xF0, 0x07]),
            ("totalLen 0", [0, 0, 0, 0]),
            ("unknown type 9", [0, 0, 0, 1, 0x09]),
            ("type 31", [0, 0, 0, 1, 0x1F]),
            ("type byte 0 (protobuf protocol)", [0, 0, 0, 2, 0x00, 0x01]),
            ("type 7 shorter than 25", [0, 0, 0, 5, 0x07, 0, 0, 0, 0]),
            ("text type shorter than 9", [0, 0, 0, 3, 0x03, 0, 0]),
            ("type 8 shorter than 14", [0, 0, 0, 5, 0x08, 0, 0, 0, 0]),
            ("type 8 without magic", Array(Hex.decode("0000000e086553f10001000000000000ee02"))),
            ("type 7 bodyLen past the frame", Array(bodyPastFrame.readableBytesView)),
        ]
    }()

    @Test(arguments: Self.closingFrames)
    func malformedFramingClosesTheConnection(name: String, bytes: [UInt8]) async throws {
        try await withReceiver { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(bytes)
            #expect(await client.read() == .closed, "\(name)")
            #expect(await eventually { receiver.statistics().protocolErrors == 1 })
            #expect(receiver.memorySink.recordCount == 0)
        }
    }

    /// Well-framed requests with a bad field, and the error code the server answers with.
    static let rejectedFrames: [(String, ByteBuffer, DataProxyResultCode)] = {
        let valid = try! binaryFrame(["hello"], uniq: 42)
        var bodyZero = ByteBuffer()
        bodyZero.writeMultipleIntegers(UInt32(25 + 0 + 4), UInt8(7), UInt16(0), UInt16(0), UInt16(4), UInt32(1), UInt16(1), UInt32(42), UInt32(0))
        bodyZero.writeInteger(UInt16(4))
        bodyZero.writeString("a=bc")
        bodyZero.writeInteger(UInt16(0xEE01))
        var badMagic = valid
        badMagic.setInteger(UInt16(0xEE02), at: badMagic.writerIndex - 2)
        // attrLen 0xFFFF reads as -1 (the magic position stays inside the frame, so the server answers 107).
        var negativeAttributeLength = ByteBuffer()
        negativeAttributeLength.writeMultipleIntegers(UInt32(25 + 9 + 4 - 4), UInt8(7), UInt16(0), UInt16(0), UInt16(4), UInt32(1), UInt16(1), UInt32(42), UInt32(9))
        negativeAttributeLength.writeMultipleIntegers(UInt32(5), UInt8(ascii: "h"), UInt8(ascii: "e"), UInt8(ascii: "l"), UInt8(ascii: "l"), UInt8(ascii: "o"))
        negativeAttributeLength.writeInteger(UInt16(0xFFFF))
        negativeAttributeLength.writeInteger(UInt16(0xEE01))
        let badText = ByteBuffer(string: "not snappy at all, not at all")
        var items = ByteBuffer()
        items.writeInteger(UInt32(0))
        return [
            ("type 7 bodyLen 0", bodyZero, .bodyLengthZero),
            ("type 7 bad magic", badMagic, .fieldMagicNotEqual),
            ("type 7 negative attrLen", negativeAttributeLength, .attributeLengthLessThanZero),
            ("unparsable attributes", try! binaryFrame(["x"], attributes: "groupId=g&&streamId=s"), .splitAttributeError),
            ("duplicate key", try! binaryFrame(["x"], attributes: "groupId=g&groupId=h"), .splitAttributeError),
            ("ext bit 3", try! binaryFrame(["x"], extendedField: [.stringIdentifiers, .fileCheckIndex]), .unsupportedExtendedFieldValue),
            ("ext bit 4", try! binaryFrame(["x"], extendedField: [.stringIdentifiers, .index]), .unsupportedExtendedFieldValue),
            ("no groupId", try! binaryFrame(["x"], attributes: "streamId=s"), .missRequiredGroupID),
            ("legacy bid", try! binaryFrame(["x"], attributes: "bid=g&streamId=s"), .missRequiredGroupID),
            ("numeric ids without a table", try! binaryFrame(["x"], attributes: "", extendedField: []), .missRequiredGroupID),
            ("text bad snappy", try! textFrame(.ackService, body: badText, attributes: "groupId=g&streamId=s&cp=snappy"), .uncompressDataError),
            ("type 5 without a valid item", try! textFrame(.multiBody, body: items, attributes: "groupId=g&streamId=s"), .messageBodyItemsInvalid),
            ("text without groupId", try! textFrame(.commonService, body: ByteBuffer(string: "x"), attributes: "streamId=s"), .missRequiredGroupID),
        ]
    }()

    @Test(arguments: Self.rejectedFrames)
    func badFieldsGetTheServerErrorCode(name: String, frame: ByteBuffer, code: DataProxyResultCode) async throws {
        try await withReceiver { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(frame)
            let response = try await readAck(client)
            let attributes: String
            switch response {
            case .binaryAck(let ack):
                attributes = ack.attributes
                #expect(ack.uniq == 42 || ack.uniq == 1, "\(name)")
            case .textAck(let ack):
                attributes = ack.attributes
            default:
                Issue.record("\(name): unexpected \(String(describing: response))")
                return
            }
            let result = InLongAckResult(attributes: attributes)
            #expect(result.errorCode == code, "\(name)")
            #expect(result.proxyIP == "127.0.0.1")
            #expect(attributes.hasPrefix("dpIp=127.0.0.1&errCode=\(code.rawValue)&errMsg="))
            #expect(receiver.statistics().errors[code] == 1)
            #expect(receiver.memorySink.recordCount == 0)

            // The connection stays open: the next request is stored and acked.
            try await client.write(try binaryFrame(["after"], uniq: 7))
            let next = binaryAck(try await readAck(client))
            #expect(next?.uniq == 7)
            #expect(next?.result.isDelivered == true)
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["after"])
            await client.close()
        }
    }

    @Test func errorAckEchoesTheRequestAttributes() async throws {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.knownGroups = ["other"]
        try await withReceiver(configuration) { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(Fixtures.vector("a_v7_one_record").buffer)
            let ack = binaryAck(try await readAck(client))
            // Vector e2 with our dpIp.
            let golden = try InLongBinaryAck(frame: Fixtures.vector("e2_v7_ack_error_topic_blank").buffer)
            #expect(ack?.attributes == golden.attributes.replacing("dpIp=10.0.0.1", with: "dpIp=127.0.0.1"))
            #expect(ack?.uniq == golden.uniq)
            #expect(ack?.result.errorCode == .topicIsBlank)
            await client.close()
        }
    }

    @Test func noReplyWhenAckIsNotWanted() async throws {
        try await withReceiver { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            // Stored but not answered.
            try await client.write(try binaryFrame(["quiet"], attributes: "groupId=g&streamId=s&isAck=false", uniq: 1))
            // An error is not answered either.
            try await client.write(try binaryFrame(["bad"], attributes: "streamId=s&isAck=false", uniq: 2))
            // Text with proxySend gets no reply at all.
            try await client.write(try textFrame(.ackService, body: ByteBuffer(string: "t"), attributes: "groupId=g&streamId=s&proxySend=true"))
            try await client.write(try binaryFrame(["loud"], uniq: 3))
            let ack = binaryAck(try await readAck(client))
            #expect(ack?.uniq == 3)
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["quiet", "t", "loud"])
            #expect(receiver.statistics().errors[.missRequiredGroupID] == 1)
            await client.close()
        }
    }

    /// In Swift Characters `&\u{301}` is one grapheme; the server splits UTF-16 units, so it accepts these.
    @Test func combiningMarksAfterSeparatorsAreAccepted() async throws {
        try await withReceiver { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            let attributes = "groupId=g&streamId=s&\u{301}k=v"
            try await client.write(try binaryFrame(["x"], attributes: attributes, uniq: 5))
            let ack = binaryAck(try await readAck(client))
            #expect(ack?.uniq == 5)
            #expect(ack?.result.errorCode == .success)
            try await client.write(try textFrame(.commonService, body: ByteBuffer(string: "y"), attributes: attributes))
            guard case .textAck(let textAck) = try await readAck(client) else {
                Issue.record("expected a text ack")
                return
            }
            #expect(InLongAckResult(attributes: textAck.attributes).errorCode == .success)
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["x", "y"])
            #expect(receiver.statistics().errors.isEmpty)
            await client.close()
        }
    }

    @Test func textTypesAreSplitLikeTheServer() async throws {
        try await withReceiver { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(try textFrame(.commonService, body: ByteBuffer(string: "one\ntwo\r\n"), attributes: "groupId=g&streamId=s&dt=1700000000123"))
            _ = try await readAck(client)
            let compressed = ByteBuffer(bytes: Snappy.compress(Array("x\ny\n".utf8)))
            try await client.write(try textFrame(.ackService, body: compressed, attributes: "groupId=g&streamId=s&cp=snappy"))
            _ = try await readAck(client)
            try await client.write(try textFrame(.originalReturn, body: ByteBuffer(string: "abc"), attributes: "groupId=g&streamId=s"))
            guard case .textAck(let echo) = try await readAck(client) else {
                Issue.record("expected a text ack")
                return
            }
            #expect(echo.type == .originalReturn)
            #expect(String(buffer: echo.body) == "abc")
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["one", "two", "x", "y", "abc"])
            #expect(receiver.memorySink.records.first?.dataTime == 1_700_000_000_123)
            await client.close()
        }
    }
}
