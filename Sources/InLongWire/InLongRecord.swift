public import NIOCore

/// One record of a type-7 (or type-5) body: its bytes and, with per-record attributes, its own attribute string.
public struct InLongRecord: Sendable, Hashable {
    /// The record's bytes.
    public var data: ByteBuffer
    /// The record's own attributes (extended-field bit 0), or `nil`.
    public var attributes: String?

    public init(data: ByteBuffer, attributes: String? = nil) {
        self.data = data
        self.attributes = attributes
    }

    public init(_ text: String, attributes: String? = nil) {
        self.data = ByteBuffer(string: text)
        self.attributes = attributes
    }
}

/// The record block: the body of a type-7 message before compression.
public enum InLongRecordBlock {
    /// Bytes a record adds to a block besides its data: the 4-byte length (plus 4 + attributes when per-record
    /// attributes are on).
    public static let recordOverhead = 4

    /// Appends one record as `len(4) data`, or `len(4) data attrLen(4) attr` when `attributes` is given.
    @inlinable
    public static func write(_ data: ByteBuffer, attributes: String? = nil, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(data.readableBytes))
        buffer.writeImmutableBuffer(data)
        if let attributes {
            buffer.writeInteger(UInt32(attributes.utf8.count))
            buffer.writeString(attributes)
        }
    }

    /// Appends one record as `len(4) data` from raw bytes.
    @inlinable
    public static func write(bytes: some Collection<UInt8>, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(bytes.count))
        buffer.writeBytes(bytes)
    }

    /// Decodes a record block laid out as `extendedField` says (per-record attributes, or one `\n`-separated chunk).
    /// Every record must be non-empty and inside the block; slices share the block's storage.
    public static func decode(
        _ block: ByteBuffer,
        extendedField: InLongExtendedField
    ) throws(InLongWireError) -> [InLongRecord] {
        var block = block
        var records: [InLongRecord] = []
        if extendedField.contains(.newlineSeparatedBody) {
            guard let length = block.readInteger(as: UInt32.self), length > 0,
                let chunk = block.readSlice(length: Int(length))
            else {
                throw InLongWireError(.invalidRecordBlock, "newline-separated chunk length is outside the body")
            }
            guard block.readableBytes == 0 else {
                throw InLongWireError(.invalidRecordBlock, "\(block.readableBytes) bytes after the chunk")
            }
            var start = chunk.readerIndex
            let end = chunk.writerIndex
            let view = chunk.readableBytesView
            for index in view.indices where view[index] == UInt8(ascii: "\n") {
                if index > start { records.append(InLongRecord(data: chunk.getSlice(at: start, length: index - start)!)) }
                start = index + 1
            }
            if end > start { records.append(InLongRecord(data: chunk.getSlice(at: start, length: end - start)!)) }
            return records
        }
        let withAttributes = extendedField.contains(.perRecordAttributes)
        while block.readableBytes > 0 {
            guard let length = block.readInteger(as: Int32.self) else {
                throw InLongWireError(.invalidRecordBlock, "truncated record length at record \(records.count)")
            }
            guard length > 0, let data = block.readSlice(length: Int(length)) else {
                throw InLongWireError(.invalidRecordBlock, "record \(records.count) has length \(length)")
            }
            var attributes: String?
            if withAttributes {
                guard let attributeLength = block.readInteger(as: Int32.self), attributeLength >= 0,
                    let text = block.readString(length: Int(attributeLength))
                else {
                    throw InLongWireError(.invalidRecordBlock, "record \(records.count) has a bad attribute length")
                }
                attributes = text
            }
            records.append(InLongRecord(data: data, attributes: attributes))
        }
        return records
    }
}
