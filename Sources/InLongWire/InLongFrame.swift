public import NIOCore

/// A request frame as a DataProxy receives it.
public enum InLongRequest: Sendable, Hashable {
    /// Type 1: any type-1 frame is a heartbeat.
    case heartbeat
    /// Types 2 to 6.
    case text(InLongTextMessage)
    /// Type 7.
    case binary(InLongBinaryMessage)
    /// Type 8.
    case binaryHeartbeat(InLongBinaryHeartbeat)

    /// Decodes a whole frame (length prefix included) as the server classifies it, by `type & 0x1F`.
    public init(frame: ByteBuffer) throws(InLongWireError) {
        switch try peekType(frame) {
        case .heartbeat: self = .heartbeat
        case .binaryMultiBody: self = .binary(try InLongBinaryMessage(frame: frame))
        case .binaryHeartbeat: self = .binaryHeartbeat(try InLongBinaryHeartbeat(frame: frame))
        case .commonService, .ackService, .originalReturn, .multiBody, .multiBodyAttributes:
            self = .text(try InLongTextMessage(frame: frame))
        }
    }
}

/// A response frame as a client receives it.
public enum InLongResponse: Sendable, Hashable {
    /// The 5-byte reply to a type-1 heartbeat.
    case heartbeat
    /// The ack of a text request (types 2 to 6).
    case textAck(InLongTextMessage)
    /// The ack of a type-7 request.
    case binaryAck(InLongBinaryAck)
    /// The reply to a type-8 heartbeat.
    case binaryHeartbeat(InLongBinaryHeartbeatResponse)

    /// Decodes a whole frame (length prefix included).
    public init(frame: ByteBuffer) throws(InLongWireError) {
        switch try peekType(frame) {
        case .heartbeat: self = .heartbeat
        case .binaryMultiBody: self = .binaryAck(try InLongBinaryAck(frame: frame))
        case .binaryHeartbeat: self = .binaryHeartbeat(try InLongBinaryHeartbeatResponse(frame: frame))
        case .commonService, .ackService, .originalReturn, .multiBody, .multiBodyAttributes:
            self = .textAck(try InLongTextMessage(frame: frame))
        }
    }
}

private func peekType(_ frame: ByteBuffer) throws(InLongWireError) -> InLongMessageType {
    _ = try frame.validatedFrameSize()
    guard let typeByte = frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self) else {
        throw InLongWireError(.truncatedFrame, "frame of \(frame.readableBytes) bytes has no type byte")
    }
    // Type byte 0 is the protobuf ("v1") protocol, which this wire does not carry.
    guard typeByte != 0, let type = InLongMessageType(typeByte: typeByte) else {
        throw InLongWireError(.unsupportedMessageType, "type byte 0x\(String(typeByte, radix: 16))", typeByte: typeByte)
    }
    return type
}

/// Splits a byte stream into frames by their 4-byte length prefix, which does not count itself.
public enum InLongFraming {
    /// The length of the first frame in `buffer` (length prefix included), or `nil` when the prefix is not complete
    /// yet. Throws, before anything is buffered, for a zero, negative or above-limit length, on which the server
    /// closes the connection. The frame itself may not be complete yet: compare with `readableBytes`.
    @inlinable
    public static func frameLength(in buffer: ByteBuffer, maxFrameSize: Int) throws(InLongWireError) -> Int? {
        guard let totalLength = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard totalLength > 0 else {
            throw InLongWireError(.invalidFrameLength, "frame length \(totalLength)")
        }
        let frameLength = Int(totalLength) + 4
        guard frameLength <= maxFrameSize else {
            throw InLongWireError(.frameTooLarge, "frame of \(frameLength) bytes exceeds the limit of \(maxFrameSize)")
        }
        return frameLength
    }
}

/// A `ByteToMessageDecoder` that emits whole frames (length prefix included) and fails on a bogus length before
/// buffering the frame.
public struct InLongFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    /// The largest frame accepted, length prefix included.
    public let maxFrameSize: Int

    public init(maxFrameSize: Int = InLongWireConstants.defaultMaxFrameSize) {
        precondition(maxFrameSize >= 5, "a frame holds at least a length and a type byte")
        self.maxFrameSize = maxFrameSize
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let length = try InLongFraming.frameLength(in: buffer, maxFrameSize: self.maxFrameSize),
            buffer.readableBytes >= length
        else { return nil }
        return buffer.readSlice(length: length)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        try self.decode(buffer: &buffer)
    }
}

extension ByteBuffer {
    /// The frame's size after checking that its length prefix matches the bytes given: decoders take whole frames.
    @usableFromInline
    func validatedFrameSize() throws(InLongWireError) -> Int {
        guard let totalLength = self.getInteger(at: self.readerIndex, as: UInt32.self),
            Int(totalLength) + 4 == self.readableBytes
        else {
            throw InLongWireError(.truncatedFrame, "frame length prefix does not match \(self.readableBytes) bytes")
        }
        return self.readableBytes
    }
}
