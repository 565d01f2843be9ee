@testable import InLongAudit
import InLongTransport
import NIOCore
import Testing

/// The audit frames, byte for byte: written by the codec and read by the test's own wire reader, against golden
/// bytes encoded by hand from AuditApi.proto (4-byte big-endian length, then the `BaseCommand`).
@Suite struct AuditWireTests {
    /// `AUDIT_REQUEST` id 7 from 10.0.0.1, thread 42, sdk_ts 1765000000000, packet 1, with one body: minute
    /// 1764999960000, g/s, audit id 1, count 3, size 30, delay 300, tag "-1", version -1 (all 64 bits set).
    static let request = hexBytes(
        "0000004708021243080712170a0831302e302e302e311a0234322080e4ca91af3328011a2608c0abc891af331201671a0173"
            + "2201312803301e38ac0242022d3148ffffffffffffffffff01"
    )
    /// `AUDIT_REPLY` for request 7, `SUCCESS` (the default code, so absent on the wire).
    static let reply = hexBytes("0000000608031a020807")
    /// `PING` (type 0, absent) with an empty `ping`; `PONG` with an empty `pong`.
    static let ping = hexBytes("000000022200")
    static let pong = hexBytes("0000000408012a00")

    static func requestMessage() -> AuditStateMachine.Request {
        let key = AuditKey(logTime: 1_764_999_987_654, group: "g", stream: "s", auditID: .sdkInput)
        return AuditStateMachine.Request(id: 7, packetID: 1, sdkTime: 1_765_000_000_000, entries: [AuditEntry(key: key, counts: AuditCounts(count: 3, size: 30, delay: 300))])
    }

    static func encode(_ command: AuditCommand) throws -> [UInt8] {
        var buffer = ByteBuffer()
        try AuditClientCodec().encode(command, into: &buffer)
        return Array(buffer.readableBytesView)
    }

    @Test func aRequestIsFramedAsInLongsAuditSDKFramesIt() throws {
        var header = AuditHeaderMessage()
        header.ip = "10.0.0.1"
        header.threadID = "42"
        let bytes = try Self.encode(AuditCommand(Self.requestMessage(), header: header))
        #expect(bytes == Self.request)
    }

    @Test func theGoldenRequestReadsAsTheProtoSays() throws {
        let command = try ProtobufWireReader.message(ProtobufWireReader.frameBody(Self.request))
        #expect(command[1].number == 2)  // AUDIT_REQUEST
        let request = try ProtobufWireReader.message(command[2].bytes)
        #expect(request[1].number == 7)
        let header = try ProtobufWireReader.message(request[2].bytes)
        #expect(header[1].string == "10.0.0.1" && header[2].string == "" && header[3].string == "42")
        #expect(header[4].number == 1_765_000_000_000 && header[5].number == 1)
        let bodyBytes = try ProtobufWireReader.all(3, in: command[2].bytes)
        #expect(bodyBytes.count == 1)
        let body = try ProtobufWireReader.message(bodyBytes[0].bytes ?? [])
        #expect(body[1].number == 1_764_999_960_000)  // the minute, not the record's time
        #expect(body[2].string == "g" && body[3].string == "s" && body[4].string == "1")
        #expect(body[5].number == 3 && body[6].number == 30 && body[7].number == 300)
        #expect(body[8].string == "-1" && body[9].number == UInt64.max)
    }

    @Test func repliesAndHeartbeatsMatchTheGoldenBytes() throws {
        let codec = AuditClientCodec()
        let reply = try codec.decode(ByteBuffer(bytes: Self.reply))
        #expect(codec.kind(of: reply) == .response(7))
        #expect(reply.auditReply.rspCode == .success)
        #expect(try Self.encode(codec.makeHeartbeat()!) == Self.ping)
        let pong = try codec.decode(ByteBuffer(bytes: Self.pong))
        #expect(codec.kind(of: pong) == .heartbeatReply)
        let server = AuditServerCodec()
        let answer = try #require(server.heartbeatResponse(to: try server.decode(ByteBuffer(bytes: Self.ping))))
        var buffer = ByteBuffer()
        try server.encode(answer, into: &buffer)
        #expect(Array(buffer.readableBytesView) == Self.pong)
    }

    @Test func theCollectorSumsARequestAndRepliesWithItsID() throws {
        let ledger = AuditCollector.Ledger()
        let command = try AuditServerCodec().decode(ByteBuffer(bytes: Self.request))
        let reply = AuditCollector.handle(command.auditRequest, ledger: ledger, maxKeys: 10)
        var answer = AuditCommand()
        answer.type = .auditReply
        answer.auditReply = reply
        var buffer = ByteBuffer()
        try AuditServerCodec().encode(answer, into: &buffer)
        #expect(Array(buffer.readableBytesView) == Self.reply)
        let sums = ledger.withLock { $0.sums }
        let key = AuditKey(logTime: 1_764_999_960_000, group: "g", stream: "s", auditID: .sdkInput)
        #expect(sums == [key: AuditCounts(count: 3, size: 30, delay: 300)])
    }

    @Test func theCollectorRefusesAWholeRequestWithABadAuditID() throws {
        let ledger = AuditCollector.Ledger()
        var request = AuditRequestMessage()
        request.requestID = 9
        var good = AuditBodyMessage()
        good.auditID = "5"
        good.count = 1
        var bad = AuditBodyMessage()
        bad.auditID = "five"
        request.msgBody = [good, bad]
        let reply = AuditCollector.handle(request, ledger: ledger, maxKeys: 10)
        #expect(reply.requestID == 9 && reply.rspCode == .failed)
        #expect(ledger.withLock { $0.sums.isEmpty && $0.statistics.refusedRequests == 1 })
    }

    @Test func badFramesAreTypedErrors() throws {
        let codec = AuditClientCodec()
        // A length beyond the audit proxy's 20 MiB: refused before anything is buffered.
        #expect(throws: (any Error).self) { try codec.frameBoundary(in: ByteBuffer(bytes: [0x7F, 0xFF, 0xFF, 0xFF])) }
        // Not a BaseCommand: a field with wire type 7.
        #expect(throws: (any Error).self) { try codec.decode(ByteBuffer(bytes: [0, 0, 0, 1, 0x0F])) }
        #expect(try codec.frameBoundary(in: ByteBuffer(bytes: [0, 0, 0])) == .needMoreBytes)
        #expect(try codec.frameBoundary(in: ByteBuffer(bytes: Self.reply)) == .frame(length: Self.reply.count))
    }

    @Test func auditIDsAreNumberedAsInLongNumbersThem() {
        #expect(AuditID(base: 2, success: false).rawValue == 524_290)
        #expect(AuditID(base: 5, realtime: false).rawValue == (1 << 18) | 5)
        #expect(AuditID(base: 4, discard: true).rawValue == (1 << 17) | 4)
        #expect(AuditID(base: 6, retry: true).rawValue == (1 << 16) | 6)
        #expect(AuditID.sdkOutputFailed.base == 2 && !AuditID.sdkOutputFailed.isSuccess)
    }

    @Test func minutesRoundDown() {
        #expect(AuditKey.minute(of: 119_999) == 60_000)
        #expect(AuditKey.minute(of: 120_000) == 120_000)
        #expect(AuditKey.minute(of: -1) == -60_000)
    }
}
