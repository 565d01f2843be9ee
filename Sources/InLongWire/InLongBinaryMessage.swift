public import NIOCore

/// A type-7 binary multi-record request, the default data message (wire-protocol.md §2).
///
/// ```
/// totalLen(4) type(1) groupIdNum(2) streamIdNum(2) extField(2) dataTime(4) cnt(2) uniq(4)
/// bodyLen(4) body attrLen(2) attr magic(2)=0xEE01
/// ```
public struct InLongBinaryMessage: Sendable, Hashable {
    /// The flag bits of the type byte (bits 5 to 7); `0x20` = snappy-compressed body.
    public var typeFlags: UInt8
    /// Numeric group id, used by the server only when ``extendedField`` lacks ``InLongExtendedField/stringIdentifiers``.
    public var groupIDNum: UInt16
    /// Numeric stream id, as ``groupIDNum``.
    public var streamIDNum: UInt16
    /// Flag bits that say how the body and attributes are to be read.
    public var extendedField: InLongExtendedField
    /// Data time in seconds since the epoch.
    public var dataTime: UInt32
    /// Number of records in the body (the server treats 0 as 1).
    public var count: UInt16
    /// The request id the server echoes in its ack.
    public var uniq: UInt32
    /// The body as sent: the record block, snappy-compressed when ``isCompressed``.
    public var body: ByteBuffer
    /// The attribute string, `groupId=<g>&streamId=<s>` at least.
    public var attributes: String

    /// Bytes of a frame besides body and attributes: length, 21 header bytes, attrLen, magic.
    public static let fixedLength = 29

    public init(
        typeFlags: UInt8 = 0,
        groupIDNum: UInt16 = 0,
        streamIDNum: UInt16 = 0,
        extendedField: InLongExtendedField = .default,
        dataTime: UInt32,
        count: UInt16,
        uniq: UInt32,
        body: ByteBuffer,
        attributes: String
    ) {
        self.typeFlags = typeFlags
        self.groupIDNum = groupIDNum
        self.streamIDNum = streamIDNum
        self.extendedField = extendedField
        self.dataTime = dataTime
        self.count = count
        self.uniq = uniq
        self.body = body
        self.attributes = attributes
    }

    /// Builds a message from records, compressing the record block when it is longer than
    /// `compressionThreshold` bytes (`nil` never compresses). Per-record attributes are written when
    /// `extendedField` has ``InLongExtendedField/perRecordAttributes``.
    public init(
        records: [InLongRecord],
        attributes: String,
        uniq: UInt32,
        dataTime: UInt32,
        extendedField: InLongExtendedField = .default,
        compressionThreshold: Int? = nil,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(InLongWireError) {
        guard !records.isEmpty, records.count <= Int(UInt16.max) else {
            throw InLongWireError(.fieldOutOfRange, "a message holds 1 to 65535 records, not \(records.count)")
        }
        let perRecordAttributes = extendedField.contains(.perRecordAttributes)
        var block = allocator.buffer(capacity: records.reduce(0) { $0 + $1.data.readableBytes + 4 })
        for record in records {
            guard record.data.readableBytes > 0 else {
                throw InLongWireError(.invalidRecordBlock, "records must not be empty")
            }
            InLongRecordBlock.write(
                record.data,
                attributes: perRecordAttributes ? (record.attributes ?? "") : nil,
                into: &block
            )
        }
        var flags: UInt8 = 0
        if let compressionThreshold, block.readableBytes > compressionThreshold {
            var compressed = allocator.buffer(capacity: 0)
            compressed.writeSnappyCompressed(block)
            block = compressed
            flags = InLongWireConstants.snappyFlag
        }
        self.init(
            typeFlags: flags,
            extendedField: extendedField,
            dataTime: dataTime,
            count: UInt16(records.count),
            uniq: uniq,
            body: block,
            attributes: attributes
        )
    }

    /// Whether the body is snappy-compressed (type byte `0x27`).
    public var isCompressed: Bool {
        get { self.typeFlags & InLongWireConstants.snappyFlag != 0 }
        set {
            if newValue {
                self.typeFlags |= InLongWireConstants.snappyFlag
            } else {
                self.typeFlags &= ~InLongWireConstants.snappyFlag
            }
        }
    }

    /// The size of the encoded frame, length prefix included.
    public var frameLength: Int {
        Self.fixedLength + self.body.readableBytes + self.attributes.utf8.count
    }

    /// Appends the frame.
    public func encode(into buffer: inout ByteBuffer) throws(InLongWireError) {
        let attributeLength = self.attributes.utf8.count
        guard attributeLength <= InLongWireConstants.maxBinaryAttributeLength else {
            throw InLongWireError(.fieldOutOfRange, "attributes of \(attributeLength) bytes exceed 32767")
        }
        guard self.body.readableBytes > 0 else {
            throw InLongWireError(.invalidBodyLength, "the body must not be empty")
        }
        guard self.frameLength - 4 <= Int(Int32.max) else {
            throw InLongWireError(.fieldOutOfRange, "frame of \(self.frameLength) bytes")
        }
        buffer.reserveCapacity(minimumWritableBytes: self.frameLength)
        buffer.writeMultipleIntegers(
            UInt32(self.frameLength - 4),
            InLongMessageType.binaryMultiBody.rawValue | (self.typeFlags & ~InLongMessageType.typeMask),
            self.groupIDNum,
            self.streamIDNum,
            self.extendedField.rawValue,
            self.dataTime,
            self.count,
            self.uniq,
            UInt32(self.body.readableBytes)
        )
        buffer.writeImmutableBuffer(self.body)
        buffer.writeInteger(UInt16(attributeLength))
        buffer.writeString(self.attributes)
        buffer.writeInteger(InLongWireConstants.magic)
    }

    /// Decodes a whole frame (length prefix included) with the server's checks: failures the server answers
    /// carry its `errCode` (105, 106, 107, 94, 95), the others close the connection.
    public init(frame: ByteBuffer) throws(InLongWireError) {
        let base = frame.readerIndex
        let size = try frame.validatedFrameSize()
        guard size >= Self.fixedLength, let typeByte = frame.getInteger(at: base + 4, as: UInt8.self),
            typeByte & InLongMessageType.typeMask == InLongMessageType.binaryMultiBody.rawValue
        else {
            throw InLongWireError(.truncatedFrame, "type-7 frame of \(size) bytes is shorter than 29")
        }
        let (groupIDNum, streamIDNum, extendedField, dataTime, count, uniq, bodyLength) =
            frame.getMultipleIntegers(
                at: base + 5,
                as: (UInt16, UInt16, UInt16, UInt32, UInt16, UInt32, Int32).self
            )!
        // The server reads attrLen and magic at positions computed from the lengths before validating them;
        // a position outside the frame is an exception there, which closes the connection.
        let attributeLengthOffset = 25 + Int(bodyLength)
        guard attributeLengthOffset >= 0, attributeLengthOffset + 2 <= size,
            let attributeLength = frame.getInteger(at: base + attributeLengthOffset, as: Int16.self)
        else {
            throw InLongWireError(
                .truncatedFrame,
                "bodyLen \(bodyLength) points outside a frame of \(size) bytes",
                typeByte: typeByte,
                uniq: uniq
            )
        }
        let magicOffset = attributeLengthOffset + 2 + Int(attributeLength)
        guard magicOffset >= 0, magicOffset + 2 <= size,
            let magic = frame.getInteger(at: base + magicOffset, as: UInt16.self)
        else {
            throw InLongWireError(
                .truncatedFrame,
                "attrLen \(attributeLength) points outside a frame of \(size) bytes",
                typeByte: typeByte,
                uniq: uniq
            )
        }
        func reject(_ code: InLongWireError.Code, _ detail: String, _ errorCode: DataProxyResultCode) -> InLongWireError {
            InLongWireError(code, detail, dataProxyErrorCode: errorCode, typeByte: typeByte, uniq: uniq)
        }
        guard bodyLength > 0 else {
            throw bodyLength == 0
                ? reject(.invalidBodyLength, "bodyLen is 0", .bodyLengthZero)
                : reject(.invalidBodyLength, "bodyLen \(bodyLength) is negative", .bodyLengthLessThanZero)
        }
        guard attributeLength >= 0 else {
            throw reject(.invalidAttributeLength, "attrLen \(attributeLength) is negative", .attributeLengthLessThanZero)
        }
        guard magic == InLongWireConstants.magic else {
            throw reject(.badMagic, "magic 0x\(String(magic, radix: 16)) is not 0xee01", .fieldMagicNotEqual)
        }
        guard size >= Int(bodyLength) + Int(attributeLength) + Self.fixedLength else {
            throw reject(.inconsistentLengths, "lengths exceed the frame", .fieldLengthValueNotEqual)
        }
        self.typeFlags = typeByte & ~InLongMessageType.typeMask
        self.groupIDNum = groupIDNum
        self.streamIDNum = streamIDNum
        self.extendedField = InLongExtendedField(rawValue: extendedField)
        self.dataTime = dataTime
        self.count = count
        self.uniq = uniq
        self.body = frame.getSlice(at: base + 25, length: Int(bodyLength))!
        self.attributes = frame.getString(at: base + attributeLengthOffset + 2, length: Int(attributeLength))!
    }

    /// The record block: the body, decompressed when it is compressed. A compressed body that declares more than
    /// `maxLength` bytes is refused before anything is allocated.
    public func recordBlock(
        maxLength: Int = 64 << 20,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(InLongWireError) -> ByteBuffer {
        guard self.isCompressed else { return self.body }
        do {
            return try self.body.snappyDecompressed(maxLength: maxLength, allocator: allocator)
        } catch {
            throw InLongWireError(
                .decompressionFailed,
                "\(error)",
                dataProxyErrorCode: .uncompressDataError,
                typeByte: InLongMessageType.binaryMultiBody.rawValue | self.typeFlags,
                uniq: self.uniq
            )
        }
    }

    /// The records of the body, decompressed and split as ``extendedField`` says.
    public func records(maxUncompressedLength: Int = 64 << 20) throws(InLongWireError) -> [InLongRecord] {
        try InLongRecordBlock.decode(self.recordBlock(maxLength: maxUncompressedLength), extendedField: self.extendedField)
    }
}
