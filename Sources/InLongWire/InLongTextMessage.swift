public import NIOCore

/// A text ("protocol") frame of types 2 to 6, used both for requests and for their acks (wire-protocol.md §3, §5.2).
///
/// ```
/// totalLen(4) type(1) bodyLen(4) body attrLen(4) attr
/// ```
public struct InLongTextMessage: Sendable, Hashable {
    /// One of the text types 2 to 6.
    public var type: InLongMessageType
    /// The body: records as the type says, snappy-compressed when the attributes carry `cp`.
    public var body: ByteBuffer
    /// The attribute string.
    public var attributes: String

    /// Bytes of a frame besides body and attributes.
    public static let fixedLength = 13

    /// The body of a success ack: the single byte `'2'`.
    public static let ackBody = ByteBuffer(string: "2")

    public init(type: InLongMessageType, body: ByteBuffer, attributes: String) {
        precondition(type.isText, "InLongTextMessage holds types 2 to 6")
        self.type = type
        self.body = body
        self.attributes = attributes
    }

    /// The size of the encoded frame, length prefix included.
    public var frameLength: Int { Self.fixedLength + self.body.readableBytes + self.attributes.utf8.count }

    /// Appends the frame.
    public func encode(into buffer: inout ByteBuffer) throws(InLongWireError) {
        guard self.frameLength - 4 <= Int(Int32.max) else {
            throw InLongWireError(.fieldOutOfRange, "frame of \(self.frameLength) bytes")
        }
        buffer.reserveCapacity(minimumWritableBytes: self.frameLength)
        buffer.writeMultipleIntegers(UInt32(self.frameLength - 4), self.type.rawValue, UInt32(self.body.readableBytes))
        buffer.writeImmutableBuffer(self.body)
        buffer.writeInteger(UInt32(self.attributes.utf8.count))
        buffer.writeString(self.attributes)
    }

    /// Decodes a whole frame (length prefix included) with the server's checks, in the server's order:
    /// bodyLen ≤ 0 (105/106), body past the frame (104), attrLen < 0 (107), lengths not exact (104).
    public init(frame: ByteBuffer) throws(InLongWireError) {
        let base = frame.readerIndex
        let size = try frame.validatedFrameSize()
        guard size >= Self.fixedLength, let typeByte = frame.getInteger(at: base + 4, as: UInt8.self),
            let type = InLongMessageType(rawValue: typeByte), type.isText
        else {
            throw InLongWireError(.truncatedFrame, "text frame of \(size) bytes is shorter than 13")
        }
        func reject(_ code: InLongWireError.Code, _ detail: String, _ errorCode: DataProxyResultCode) -> InLongWireError {
            InLongWireError(code, detail, dataProxyErrorCode: errorCode, typeByte: typeByte)
        }
        guard let bodyLength = frame.getInteger(at: base + 5, as: Int32.self) else {
            throw InLongWireError(.truncatedFrame, "text frame without bodyLen", typeByte: typeByte)
        }
        guard bodyLength > 0 else {
            throw bodyLength == 0
                ? reject(.invalidBodyLength, "bodyLen is 0", .bodyLengthZero)
                : reject(.invalidBodyLength, "bodyLen \(bodyLength) is negative", .bodyLengthLessThanZero)
        }
        guard Int(bodyLength) + Self.fixedLength <= size else {
            throw reject(.inconsistentLengths, "bodyLen \(bodyLength) exceeds a frame of \(size)", .bodyExceedMaxLength)
        }
        let attributeLength = frame.getInteger(at: base + 9 + Int(bodyLength), as: Int32.self)!
        guard attributeLength >= 0 else {
            throw reject(.invalidAttributeLength, "attrLen \(attributeLength) is negative", .attributeLengthLessThanZero)
        }
        guard size == Self.fixedLength + Int(bodyLength) + Int(attributeLength) else {
            throw reject(
                .inconsistentLengths,
                "frame of \(size) bytes != 13 + bodyLen \(bodyLength) + attrLen \(attributeLength)",
                .bodyExceedMaxLength
            )
        }
        self.type = type
        self.body = frame.getSlice(at: base + 9, length: Int(bodyLength))!
        self.attributes = frame.getString(at: base + 13 + Int(bodyLength), length: Int(attributeLength))!
    }
}
