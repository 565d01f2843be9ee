public import NIOCore

/// The type-1 text heartbeat: any type-1 frame is one; the reply is the fixed 5-byte frame.
public enum InLongTextHeartbeat {
    /// The request the Go SDK sends: `00000009 01 00000000 00000000`.
    public static let request: [UInt8] = [0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    /// The server's reply: `00000001 01`.
    public static let response: [UInt8] = [0, 0, 0, 1, 1]
}

/// A type-8 binary heartbeat request (wire-protocol.md §6.2).
///
/// ```
/// totalLen(4)=14+B+A type(1)=8 dataTime(4) bodyVersion(1) bodyLen(4) body attrLen(2) attr magic(2)
/// ```
public struct InLongBinaryHeartbeat: Sendable, Hashable {
    /// Flag bits of the type byte (the Java SDK sets `0x80` with authorization attributes).
    public var typeFlags: UInt8
    /// Seconds since the epoch (the Java SDK writes milliseconds truncated to 32 bits; never validate it).
    public var dataTime: UInt32
    /// 1 as the C++ SDK sends it; the Java SDK sends 2. The server echoes it.
    public var bodyVersion: UInt8
    /// The body, empty from every SDK.
    public var body: ByteBuffer
    /// The attribute string, empty unless authorization attributes are sent.
    public var attributes: String

    /// Bytes of a frame besides body and attributes.
    public static let fixedLength = 18

    public init(
        typeFlags: UInt8 = 0,
        dataTime: UInt32,
        bodyVersion: UInt8 = 1,
        body: ByteBuffer = ByteBuffer(),
        attributes: String = ""
    ) {
        self.typeFlags = typeFlags
        self.dataTime = dataTime
        self.bodyVersion = bodyVersion
        self.body = body
        self.attributes = attributes
    }

    /// The size of the encoded frame, length prefix included.
    public var frameLength: Int { Self.fixedLength + self.body.readableBytes + self.attributes.utf8.count }

    /// Appends the frame.
    public func encode(into buffer: inout ByteBuffer) throws(InLongWireError) {
        guard self.attributes.utf8.count <= Int(UInt16.max) else {
            throw InLongWireError(.fieldOutOfRange, "heartbeat attributes exceed 65535 bytes")
        }
        buffer.writeMultipleIntegers(
            UInt32(self.frameLength - 4),
            InLongMessageType.binaryHeartbeat.rawValue | (self.typeFlags & ~InLongMessageType.typeMask),
            self.dataTime,
            self.bodyVersion,
            UInt32(self.body.readableBytes)
        )
        buffer.writeImmutableBuffer(self.body)
        buffer.writeInteger(UInt16(self.attributes.utf8.count))
        buffer.writeString(self.attributes)
        buffer.writeInteger(InLongWireConstants.magic)
    }

    /// Decodes a whole frame. Every failure is one on which the server closes the connection.
    public init(frame: ByteBuffer) throws(InLongWireError) {
        let (typeByte, dataTime, bodyVersion, body, attributes) = try decodeHeartbeatFrame(frame)
        self.typeFlags = typeByte & ~InLongMessageType.typeMask
        self.dataTime = dataTime
        self.bodyVersion = bodyVersion
        self.body = body
        self.attributes = attributes
    }
}

/// A type-8 heartbeat response carrying the proxy's load (wire-protocol.md §6.3).
///
/// ```
/// totalLen(4)=16+A type(1)=8 dataTime(4) bodyVersion(1) bodyLen(4)=2 load(2) attrLen(2) attr magic(2)
/// ```
public struct InLongBinaryHeartbeatResponse: Sendable, Hashable {
    /// The server's time in seconds.
    public var dataTime: UInt32
    /// The echo of the request's body version.
    public var bodyVersion: UInt8
    /// The load the proxy reports: higher is busier; `-1` (`0xFFFF`) means unknown, as the stock server always sends.
    public var load: Int16
    /// The echo of the request's attributes.
    public var attributes: String

    /// The load value that means "unknown".
    public static let unknownLoad: Int16 = -1

    public init(dataTime: UInt32, bodyVersion: UInt8 = 1, load: Int16 = unknownLoad, attributes: String = "") {
        self.dataTime = dataTime
        self.bodyVersion = bodyVersion
        self.load = load
        self.attributes = attributes
    }

    /// The load if the proxy reported one (a positive value), else `nil`.
    public var reportedLoad: Int? { self.load > 0 ? Int(self.load) : nil }

    /// The size of the encoded frame, length prefix included.
    public var frameLength: Int { 20 + self.attributes.utf8.count }

    /// Appends the frame.
    public func encode(into buffer: inout ByteBuffer) throws(InLongWireError) {
        guard self.attributes.utf8.count <= Int(UInt16.max) else {
            throw InLongWireError(.fieldOutOfRange, "heartbeat attributes exceed 65535 bytes")
        }
        buffer.writeMultipleIntegers(
            UInt32(self.frameLength - 4),
            InLongMessageType.binaryHeartbeat.rawValue,
            self.dataTime,
            self.bodyVersion,
            UInt32(2),
            self.load,
            UInt16(self.attributes.utf8.count)
        )
        buffer.writeString(self.attributes)
        buffer.writeInteger(InLongWireConstants.magic)
    }

    /// Decodes a whole frame. A body that is not exactly 2 bytes carries no load (reported as unknown).
    public init(frame: ByteBuffer) throws(InLongWireError) {
        let (_, dataTime, bodyVersion, body, attributes) = try decodeHeartbeatFrame(frame)
        self.dataTime = dataTime
        self.bodyVersion = bodyVersion
        self.load = body.readableBytes == 2 ? body.getInteger(at: body.readerIndex, as: Int16.self)! : Self.unknownLoad
        self.attributes = attributes
    }
}

/// The type-8 layout shared by requests and responses, with the server's checks: `totalLen ≥ 14`, lengths inside
/// the frame (`totalLen + 4 ≥ B + A + 18`), magic.
private func decodeHeartbeatFrame(
    _ frame: ByteBuffer
) throws(InLongWireError) -> (UInt8, UInt32, UInt8, ByteBuffer, String) {
    let base = frame.readerIndex
    let size = try frame.validatedFrameSize()
    guard size >= InLongBinaryHeartbeat.fixedLength,
        let (typeByte, dataTime, bodyVersion, bodyLength) = frame.getMultipleIntegers(
            at: base + 4,
            as: (UInt8, UInt32, UInt8, Int32).self
        ), typeByte & InLongMessageType.typeMask == InLongMessageType.binaryHeartbeat.rawValue
    else {
        throw InLongWireError(.truncatedFrame, "type-8 frame of \(size) bytes is shorter than 18")
    }
    guard bodyLength >= 0, 14 + Int(bodyLength) + 2 <= size,
        let attributeLength = frame.getInteger(at: base + 14 + Int(bodyLength), as: UInt16.self),
        Int(bodyLength) + Int(attributeLength) + InLongBinaryHeartbeat.fixedLength <= size
    else {
        throw InLongWireError(.inconsistentLengths, "type-8 lengths exceed a frame of \(size) bytes", typeByte: typeByte)
    }
    let magicOffset = 16 + Int(bodyLength) + Int(attributeLength)
    guard frame.getInteger(at: base + magicOffset, as: UInt16.self) == InLongWireConstants.magic else {
        throw InLongWireError(.badMagic, "type-8 frame without 0xEE01", typeByte: typeByte)
    }
    let body = frame.getSlice(at: base + 14, length: Int(bodyLength))!
    let attributes = frame.getString(at: base + 16 + Int(bodyLength), length: Int(attributeLength))!
    return (typeByte, dataTime, bodyVersion, body, attributes)
}
