import InLongTestUtils
import InLongWire
import NIOCore
import Testing

/// Random frames of every kind survive encode → frame split → decode unchanged.
@Suite struct RoundTripTests {
    static func randomRecord(_ rng: inout SplitMix64, maxLength: Int) -> InLongRecord {
        let length = Int(rng.next() % UInt64(maxLength)) + 1
        var bytes = [UInt8]()
        bytes.reserveCapacity(length)
        let repetitive = rng.next() % 2 == 0
        for i in 0..<length {
            bytes.append(repetitive ? UInt8(97 + i % 7) : UInt8(truncatingIfNeeded: rng.next()))
        }
        return InLongRecord(data: ByteBuffer(bytes: bytes))
    }

    @Test func binaryMessages() throws {
        var rng = SplitMix64(seed: 11)
        var stream = ByteBuffer()
        var expected: [(InLongBinaryMessage, [InLongRecord])] = []
        for index in 0..<400 {
            let count = Int(rng.next() % 50) + 1
            let perRecordAttributes = rng.next() % 3 == 0
            var records = (0..<count).map { _ in Self.randomRecord(&rng, maxLength: index % 10 == 0 ? 5000 : 120) }
            if perRecordAttributes {
                records = records.enumerated().map { InLongRecord(data: $1.data, attributes: "k=\($0)") }
            }
            var extendedField = InLongExtendedField.default
            if perRecordAttributes { extendedField.insert(.perRecordAttributes) }
            if rng.next() % 4 == 0 { extendedField.insert(.trace) }
            let message = try InLongBinaryMessage(
                records: records,
                attributes: "groupId=g\(index % 3)&streamId=s\(index % 5)",
                uniq: UInt32(truncatingIfNeeded: rng.next()),
                dataTime: UInt32(truncatingIfNeeded: rng.next()),
                extendedField: extendedField,
                compressionThreshold: rng.next() % 2 == 0 ? nil : Int(rng.next() % 1024)
            )
            try message.encode(into: &stream)
            expected.append((message, records))
        }
        var decoder = InLongFrameDecoder(maxFrameSize: 1 << 20)
        for (message, records) in expected {
            let frame = try #require(try decoder.decode(buffer: &stream))
            guard case .binary(let decoded) = try InLongRequest(frame: frame) else {
                Issue.record("not a binary message")
                return
            }
            #expect(decoded == message)
            #expect(try decoded.records() == records)
        }
        #expect(stream.readableBytes == 0)
    }

    @Test func textMessagesAcksAndHeartbeats() throws {
        var rng = SplitMix64(seed: 12)
        for index in 0..<300 {
            let text = InLongTextMessage(
                type: [.commonService, .ackService, .originalReturn, .multiBody, .multiBodyAttributes][index % 5],
                body: Self.randomRecord(&rng, maxLength: 2000).data,
                attributes: "groupId=g&streamId=s&dt=\(rng.next() % 1_000_000)&cnt=\(index)"
            )
            var buffer = ByteBuffer()
            try text.encode(into: &buffer)
            #expect(try InLongRequest(frame: buffer) == .text(text))

            let ack = InLongBinaryAck(uniq: UInt32(truncatingIfNeeded: rng.next()), attributes: "dpIp=1.2.3.4&n=\(index)")
            buffer.clear()
            try ack.encode(into: &buffer)
            #expect(try InLongResponse(frame: buffer) == .binaryAck(ack))

            let heartbeat = InLongBinaryHeartbeat(
                dataTime: UInt32(truncatingIfNeeded: rng.next()),
                bodyVersion: UInt8(index % 3),
                attributes: index % 2 == 0 ? "" : "_userName=u&_nonce=\(index)"
            )
            buffer.clear()
            try heartbeat.encode(into: &buffer)
            #expect(try InLongRequest(frame: buffer) == .binaryHeartbeat(heartbeat))

            let response = InLongBinaryHeartbeatResponse(
                dataTime: UInt32(truncatingIfNeeded: rng.next()),
                bodyVersion: heartbeat.bodyVersion,
                load: Int16(truncatingIfNeeded: rng.next()),
                attributes: heartbeat.attributes
            )
            buffer.clear()
            try response.encode(into: &buffer)
            #expect(try InLongResponse(frame: buffer) == .binaryHeartbeat(response))
        }
    }

    @Test func largeRecordsRoundTripCompressed() throws {
        var rng = SplitMix64(seed: 13)
        let records = (0..<4).map { _ in Self.randomRecord(&rng, maxLength: 1 << 20) }
        let message = try InLongBinaryMessage(
            records: records,
            attributes: "groupId=g&streamId=s",
            uniq: 1,
            dataTime: 1,
            compressionThreshold: 0
        )
        var buffer = ByteBuffer()
        try message.encode(into: &buffer)
        let decoded = try InLongBinaryMessage(frame: buffer)
        #expect(try decoded.records() == records)
    }

    @Test func encodingRejectsValuesThatDoNotFit() throws {
        let attributes = String(repeating: "a", count: 32768)
        let message = InLongBinaryMessage(dataTime: 0, count: 1, uniq: 1, body: ByteBuffer(string: "xxxxx"), attributes: attributes)
        var buffer = ByteBuffer()
        #expect(throws: InLongWireError.self) { try message.encode(into: &buffer) }
        #expect(throws: InLongWireError.self) {
            try InLongBinaryMessage(records: [], attributes: "", uniq: 1, dataTime: 0)
        }
        #expect(throws: InLongWireError.self) {
            try InLongBinaryMessage(records: [InLongRecord("")], attributes: "", uniq: 1, dataTime: 0)
        }
    }
}
