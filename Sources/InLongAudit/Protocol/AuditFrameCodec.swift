import InLongTransport
import NIOCore
import SwiftProtobuf

/// The generated message types, by shorter names.
typealias AuditCommand = Org_Apache_Inlong_Audit_Protocol_BaseCommand
typealias AuditRequestMessage = Org_Apache_Inlong_Audit_Protocol_AuditRequest
typealias AuditReplyMessage = Org_Apache_Inlong_Audit_Protocol_AuditReply
typealias AuditHeaderMessage = Org_Apache_Inlong_Audit_Protocol_AuditMessageHeader
typealias AuditBodyMessage = Org_Apache_Inlong_Audit_Protocol_AuditMessageBody

/// InLong's audit framing, both directions: a 4-byte big-endian length, then that many bytes of a serialized
/// `BaseCommand` (the audit SDK's `AuditData.getDataByte`, the proxy's `Commands.getChannelBuffer` and its
/// `LengthFieldBasedFrameDecoder`).
enum AuditFraming {
    /// The audit proxy refuses commands over 20 MiB (`ConfigConstants.MSG_MAX_LENGTH_BYTES`).
    static let maxFrameLength = 4 + (20 << 20)
    static let framer = LengthFieldFramer(lengthFieldOffset: 0, lengthFieldLength: 4, maxFrameLength: maxFrameLength)

    static func encode(_ command: AuditCommand, into buffer: inout ByteBuffer) throws {
        let bytes: [UInt8] = try command.serializedBytes()
        buffer.reserveCapacity(4 + bytes.count)
        buffer.writeInteger(UInt32(bytes.count))
        buffer.writeBytes(bytes)
    }

    /// Decodes a whole frame, length field included.
    static func decode(_ frame: ByteBuffer) throws -> AuditCommand {
        var frame = frame
        guard let length = frame.readInteger(as: UInt32.self), Int(length) == frame.readableBytes else {
            throw AuditProtocolError("an audit frame's length field does not match its size")
        }
        do {
            return try AuditCommand(serializedBytes: Array(frame.readableBytesView))
        } catch {
            throw AuditProtocolError("an audit frame is not a BaseCommand: \(error)")
        }
    }

    static var ping: AuditCommand {
        var command = AuditCommand()
        command.type = .ping
        command.ping = Org_Apache_Inlong_Audit_Protocol_Ping()
        return command
    }

    static var pong: AuditCommand {
        var command = AuditCommand()
        command.type = .pong
        command.pong = Org_Apache_Inlong_Audit_Protocol_Pong()
        return command
    }
}

/// Bytes that are not InLong's audit protocol.
struct AuditProtocolError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The reporter's side: sends `AUDIT_REQUEST`s, gets `AUDIT_REPLY`s matched by request id; `PING` as the
/// heartbeat, answered by `PONG`.
struct AuditClientCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { try AuditFraming.framer.frameBoundary(in: buffer) }
    func encode(_ frame: AuditCommand, into buffer: inout ByteBuffer) throws { try AuditFraming.encode(frame, into: &buffer) }
    func decode(_ frame: ByteBuffer) throws -> AuditCommand { try AuditFraming.decode(frame) }

    func kind(of frame: AuditCommand) -> InboundFrameKind<UInt64> {
        switch frame.type {
        case .auditReply: .response(frame.auditReply.requestID)
        case .pong: .heartbeatReply
        default: .unsolicited
        }
    }

    func key(of request: AuditCommand) -> UInt64 { request.auditRequest.requestID }
    func makeHeartbeat() -> AuditCommand? { AuditFraming.ping }
    func heartbeatResponse(to frame: AuditCommand) -> AuditCommand? { frame.type == .ping ? AuditFraming.pong : nil }
}

/// The audit proxy's side, as ``AuditCollector`` serves it: `PING` is answered with `PONG` on the event loop,
/// everything else goes to the handler.
struct AuditServerCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { try AuditFraming.framer.frameBoundary(in: buffer) }
    func encode(_ frame: AuditCommand, into buffer: inout ByteBuffer) throws { try AuditFraming.encode(frame, into: &buffer) }
    func decode(_ frame: ByteBuffer) throws -> AuditCommand { try AuditFraming.decode(frame) }
    func kind(of frame: AuditCommand) -> InboundFrameKind<UInt64> { .unsolicited }
    func key(of request: AuditCommand) -> UInt64 { request.auditReply.requestID }
    func makeHeartbeat() -> AuditCommand? { nil }
    func heartbeatResponse(to frame: AuditCommand) -> AuditCommand? { frame.type == .ping ? AuditFraming.pong : nil }
}

extension AuditCommand {
    /// The `AUDIT_REQUEST` command for a request of the reporter's machine.
    init(_ request: AuditStateMachine.Request, header: AuditHeaderMessage) {
        var message = AuditRequestMessage()
        message.requestID = request.id
        var header = header
        header.sdkTs = UInt64(clamping: request.sdkTime)
        header.packetID = request.packetID
        message.msgHeader = header
        message.msgBody = request.entries.map(AuditBodyMessage.init)
        self.init()
        self.type = .auditRequest
        self.auditRequest = message
    }
}

extension AuditBodyMessage {
    init(_ entry: AuditEntry) {
        self.init()
        self.logTs = UInt64(clamping: entry.key.minute)
        self.inlongGroupID = entry.key.group
        self.inlongStreamID = entry.key.stream
        self.auditID = String(entry.key.auditID.rawValue)
        self.count = entry.counts.count
        self.size = entry.counts.size
        self.delay = entry.counts.delay
        self.auditTag = entry.key.auditTag
        self.auditVersion = UInt64(bitPattern: entry.key.auditVersion)
    }

    /// The entry a body says, or `nil` when its audit id is not a number.
    var entry: AuditEntry? {
        guard let id = Int(self.auditID) else { return nil }
        let key = AuditKey(
            logTime: Int64(clamping: self.logTs),
            group: self.inlongGroupID,
            stream: self.inlongStreamID,
            auditID: AuditID(rawValue: id),
            auditTag: self.auditTag,
            auditVersion: Int64(bitPattern: self.auditVersion)
        )
        return AuditEntry(key: key, counts: AuditCounts(count: self.count, size: self.size, delay: self.delay))
    }
}
