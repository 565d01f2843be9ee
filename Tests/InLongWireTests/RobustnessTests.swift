import InLongTestUtils
import InLongWire
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

/// Malformed input of every kind gives a typed error with the server's reaction, never a trap.
@Suite struct RobustnessTests {
    static let a = Fixtures.vector("a_v7_one_record").bytes

    /// Replaces bytes of vector a at `offset`.
    static func patched(_ offset: Int, _ bytes: [UInt8], base: [UInt8] = a) -> ByteBuffer {
        var copy = base
        copy.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        return ByteBuffer(bytes: copy)
    }

    @Test(arguments: [
        // bodyLen 0 / negative (still inside the frame): errCode 105 / 106, echoed uniq.
        (21, [0, 0, 0, 0] as [UInt8], DataProxyResultCode?.some(.bodyLengthZero)),
        (21, [0xff, 0xff, 0xff, 0xf0], .bodyLengthLessThanZero),
        // bodyLen pointing far outside the frame: the server's read fails and it closes.
        (21, [0x7f, 0xff, 0xff, 0xff], nil),
        (21, [0x80, 0, 0, 0], nil),
        (21, [0, 0, 0, 0x11], nil),
        // attrLen negative: 107.
        (41, [0xff, 0xff], .attributeLengthLessThanZero),
        // attrLen past the frame: closes.
        (41, [0x7f, 0xff], nil),
        // Bad magic: 94.
        (82, [0xee, 0x02], .fieldMagicNotEqual),
    ])
    func binaryMessageValidation(offset: Int, bytes: [UInt8], errorCode: DataProxyResultCode?) {
        #expect {
            try InLongBinaryMessage(frame: Self.patched(offset, bytes))
        } throws: { error in
            let error = error as! InLongWireError
            return error.dataProxyErrorCode == errorCode && (errorCode == nil || error.uniq == 1)
        }
    }

    @Test func binaryMessageToleratesTrailingBytesLikeTheServer() throws {
        var bytes = Self.a + [1, 2, 3]
        bytes[3] += 3
        let message = try InLongBinaryMessage(frame: ByteBuffer(bytes: bytes))
        #expect(try message.records().map(\.data.text) == ["hello inlong"])
    }

    @Test func everyTruncationOfEveryVectorFailsCleanly() {
        for vector in Fixtures.vectors {
            let bytes = vector.bytes
            for length in 0..<bytes.count {
                let prefix = ByteBuffer(bytes: bytes.prefix(length))
                if vector.direction == "client->server" {
                    #expect(throws: InLongWireError.self) { try InLongRequest(frame: prefix) }
                } else {
                    #expect(throws: InLongWireError.self) { try InLongResponse(frame: prefix) }
                }
            }
        }
    }

    @Test(arguments: [0x00, 0x09, 0x1f, 0x40, 0xe0] as [UInt8])
    func unknownTypesClose(typeByte: UInt8) {
        var bytes = Self.a
        bytes[4] = typeByte
        #expect {
            try InLongRequest(frame: ByteBuffer(bytes: bytes))
        } throws: { error in
            let error = error as! InLongWireError
            return error.code == .unsupportedMessageType && error.closesConnection
        }
    }

    @Test func textMessageValidationOrder() {
        let f2 = Fixtures.vector("f2_type3_cpp").bytes
        func code(_ buffer: ByteBuffer) -> DataProxyResultCode? {
            do {
                _ = try InLongTextMessage(frame: buffer)
                return .success
            } catch {
                return error.dataProxyErrorCode
            }
        }
        #expect(code(Self.patched(5, [0, 0, 0, 0], base: f2)) == .bodyLengthZero)
        #expect(code(Self.patched(5, [0xff, 0, 0, 0], base: f2)) == .bodyLengthLessThanZero)
        #expect(code(Self.patched(5, [0, 0, 1, 0], base: f2)) == .bodyExceedMaxLength)
        #expect(code(Self.patched(30, [0xff, 0xff, 0xff, 0xff], base: f2)) == .attributeLengthLessThanZero)
        #expect(code(Self.patched(30, [0, 0, 0, 1], base: f2)) == .bodyExceedMaxLength)
        #expect(code(ByteBuffer(bytes: f2)) == .success)
    }

    @Test func heartbeatValidationCloses() {
        let d1 = Fixtures.vector("d1_hb8_request_cpp").bytes
        for (offset, bytes) in [(16, [0xee, 0x00] as [UInt8]), (10, [0, 0, 0, 9]), (10, [0xff, 0xff, 0xff, 0xff])] {
            #expect {
                try InLongBinaryHeartbeat(frame: Self.patched(offset, bytes, base: d1))
            } throws: { error in
                (error as! InLongWireError).closesConnection
            }
        }
    }

    @Test func corruptSnappyBodyGivesUncompressError() throws {
        var bytes = Fixtures.vector("c_v7_three_records_snappy").bytes
        bytes[25] = 0xff  // the varint preamble now runs into the data
        bytes[26] = 0xff
        let message = try InLongBinaryMessage(frame: ByteBuffer(bytes: bytes))
        #expect {
            try message.records()
        } throws: { error in
            let error = error as! InLongWireError
            return error.code == .decompressionFailed && error.dataProxyErrorCode == .uncompressDataError
        }
    }

    @Test func compressedBodyAboveTheLimitIsRefused() throws {
        let records = (0..<100).map { _ in InLongRecord(String(repeating: "x", count: 1000)) }
        let message = try InLongBinaryMessage(
            records: records,
            attributes: "groupId=g&streamId=s",
            uniq: 1,
            dataTime: 0,
            compressionThreshold: 0
        )
        #expect(message.body.readableBytes < 10_000)
        #expect(throws: InLongWireError.self) { try message.records(maxUncompressedLength: 50_000) }
        #expect(try message.records(maxUncompressedLength: 200_000).count == 100)
    }

    @Test(arguments: [
        [0, 0, 0, 0] as [UInt8], [0, 0, 0, 0, 7], [0xff, 0xff, 0xff, 0xff], [0x80, 0, 0, 0],
    ])
    func recordBlockRejectsBadLengths(block: [UInt8]) {
        #expect(throws: InLongWireError.self) {
            try InLongRecordBlock.decode(ByteBuffer(bytes: block), extendedField: [])
        }
    }

    @Test func recordBlockWithAttributesRejectsBadAttributeLength() {
        let block: [UInt8] = [0, 0, 0, 1, 0x61, 0, 0, 0, 9, 0x62]
        #expect(throws: InLongWireError.self) {
            try InLongRecordBlock.decode(ByteBuffer(bytes: block), extendedField: .perRecordAttributes)
        }
    }

    @Test func newlineSeparatedBody() throws {
        var block = ByteBuffer()
        block.writeInteger(UInt32(11))
        block.writeString("a\nbb\n\nccc\nd")
        let records = try InLongRecordBlock.decode(block, extendedField: .newlineSeparatedBody)
        #expect(records.map(\.data.text) == ["a", "bb", "ccc", "d"])
    }

    @Test func randomBytesNeverTrap() {
        var rng = SplitMix64(seed: 2026)
        var decoded = 0
        for _ in 0..<50_000 {
            let length = Int(rng.next() % 96) + 5
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // Make the frame length and type plausible half of the time, so deeper checks are reached.
            if rng.next() % 2 == 0 {
                bytes.replaceSubrange(0..<4, with: withUnsafeBytes(of: UInt32(length - 4).bigEndian, Array.init))
                bytes[4] = UInt8(rng.next() % 9)
            }
            let buffer = ByteBuffer(bytes: bytes)
            if (try? InLongRequest(frame: buffer)) != nil { decoded += 1 }
            _ = try? InLongResponse(frame: buffer)
            if case .binary(let message)? = try? InLongRequest(frame: buffer) {
                _ = try? message.records(maxUncompressedLength: 4096)
            }
        }
        #expect(decoded < 50_000)
    }

    @Test func mutatedVectorsNeverTrap() {
        var rng = SplitMix64(seed: 7)
        for vector in Fixtures.vectors {
            for _ in 0..<500 {
                var bytes = vector.bytes
                for _ in 0..<Int(rng.next() % 3 + 1) {
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
                let buffer = ByteBuffer(bytes: bytes)
                if case .binary(let message)? = try? InLongRequest(frame: buffer) {
                    _ = try? message.records(maxUncompressedLength: 1 << 16)
                }
                _ = try? InLongResponse(frame: buffer)
            }
        }
    }
}

@Suite struct FramerTests {
    @Test func splitsFramesAcrossArbitraryChunks() throws {
        let frames = Fixtures.vectors.map(\.buffer)
        var pairs: [(ByteBuffer, [ByteBuffer])] = []
        for frame in frames { pairs.append((frame, [frame])) }
        var all = ByteBuffer()
        for frame in frames { all.writeImmutableBuffer(frame) }
        pairs.append((all, frames))
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: pairs,
            decoderFactory: { InLongFrameDecoder(maxFrameSize: 1024) }
        )
    }

    @Test(arguments: [
        ([0x00, 0x01, 0x00, 0x00] as [UInt8], InLongWireError.Code.frameTooLarge),
        ([0x7f, 0xff, 0xff, 0xff], .frameTooLarge),
        ([0xff, 0xff, 0xff, 0xfc], .invalidFrameLength),
        ([0, 0, 0, 0], .invalidFrameLength),
    ])
    func rejectsBogusLengthsBeforeBuffering(prefix: [UInt8], code: InLongWireError.Code) throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(InLongFrameDecoder(maxFrameSize: 65536)))
        #expect {
            try channel.writeInbound(ByteBuffer(bytes: prefix))
        } throws: { error in
            (error as? InLongWireError)?.code == code
        }
        _ = try? channel.finish()
    }

    @Test func frameAtTheLimitIsAccepted() throws {
        var decoder = InLongFrameDecoder(maxFrameSize: 100)
        var buffer = ByteBuffer(bytes: [0, 0, 0, 96] + [UInt8](repeating: 7, count: 96))
        #expect(try decoder.decode(buffer: &buffer)?.readableBytes == 100)
        var over = ByteBuffer(bytes: [0, 0, 0, 97])
        #expect(throws: InLongWireError.self) { try decoder.decode(buffer: &over) }
    }
}
