import NIOCore

/// One record as the spool stores it: `length(4) crc32c(4) payload`, the payload being the record's id, its
/// batch key (group, stream, message attributes, whether records carry attributes), its own attributes and its
/// body, each length-prefixed. The checksum covers the payload, so a torn or corrupt record is found on replay.
struct SpoolRecord: Hashable, Sendable {
    var id: UInt64
    var key: BatchKey
    var attributes: String?
    var body: ByteBuffer

    static let headerLength = 8
    /// Larger than any record a frame can carry: a length beyond it is corruption, not a record.
    static let maxPayloadLength = 64 << 20

    func encode(into buffer: inout ByteBuffer) {
        let start = buffer.writerIndex
        buffer.writeInteger(UInt64(0))  // length and checksum, set once the payload is written
        buffer.writeInteger(self.id)
        Self.write(self.key.group, to: &buffer)
        Self.write(self.key.stream, to: &buffer)
        Self.write(self.key.messageAttributes, to: &buffer)
        buffer.writeInteger(UInt8(self.key.perRecordAttributes ? 1 : 0))
        if let attributes = self.attributes {
            buffer.writeInteger(UInt8(1))
            Self.write(attributes, to: &buffer)
        } else {
            buffer.writeInteger(UInt8(0))
        }
        buffer.writeInteger(UInt32(self.body.readableBytes))
        buffer.writeImmutableBuffer(self.body)
        let payloadLength = buffer.writerIndex - start - Self.headerLength
        let checksum = buffer.withUnsafeReadableBytes { bytes in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(start + Self.headerLength - buffer.readerIndex)...]))
        }
        buffer.setInteger(UInt32(payloadLength), at: start)
        buffer.setInteger(checksum, at: start + 4)
    }

    private static func write(_ text: String, to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(text.utf8.count))
        buffer.writeString(text)
    }

    /// What a segment's bytes hold: the records up to the first that is not whole and valid, and why it stopped.
    struct Scan {
        var records: [SpoolRecord] = []
        /// Bytes of whole, valid records from the start.
        var validLength = 0
        /// The bytes after `validLength`: `nil` when there are none.
        var stop: Stop?

        enum Stop: Hashable, Sendable {
            /// An incomplete last record: a write cut short by a crash. Cut off, nothing else is lost.
            case tornTail
            /// A whole record whose checksum or layout is wrong: the segment is set aside.
            case corrupt(offset: Int)
        }
    }

    /// Reads every record of a segment's bytes.
    static func scan(_ bytes: ByteBuffer) -> Scan {
        var buffer = bytes
        var scan = Scan()
        while buffer.readableBytes > 0 {
            let offset = buffer.readerIndex - bytes.readerIndex
            guard let (length, checksum) = buffer.getMultipleIntegers(at: buffer.readerIndex, as: (UInt32, UInt32).self) else {
                scan.stop = .tornTail
                return scan
            }
            guard length <= Self.maxPayloadLength else {
                scan.stop = .corrupt(offset: offset)
                return scan
            }
            guard buffer.readableBytes >= Self.headerLength + Int(length) else {
                scan.stop = .tornTail
                return scan
            }
            var payload = buffer.getSlice(at: buffer.readerIndex + Self.headerLength, length: Int(length))!
            let actual = payload.withUnsafeReadableBytes { CRC32C.checksum($0) }
            guard actual == checksum, let record = Self.decode(&payload), payload.readableBytes == 0 else {
                scan.stop = .corrupt(offset: offset)
                return scan
            }
            scan.records.append(record)
            buffer.moveReaderIndex(forwardBy: Self.headerLength + Int(length))
            scan.validLength = buffer.readerIndex - bytes.readerIndex
        }
        return scan
    }

    private static func decode(_ payload: inout ByteBuffer) -> SpoolRecord? {
        guard let id = payload.readInteger(as: UInt64.self),
            let group = Self.readString(&payload),
            let stream = Self.readString(&payload),
            let messageAttributes = Self.readString(&payload),
            let perRecord = payload.readInteger(as: UInt8.self), perRecord <= 1,
            let hasAttributes = payload.readInteger(as: UInt8.self), hasAttributes <= 1
        else { return nil }
        var attributes: String?
        if hasAttributes == 1 {
            guard let text = Self.readString(&payload) else { return nil }
            attributes = text
        }
        guard let bodyLength = payload.readInteger(as: UInt32.self), let body = payload.readSlice(length: Int(bodyLength)) else { return nil }
        let key = BatchKey(group: group, stream: stream, perRecordAttributes: perRecord == 1, messageAttributes: messageAttributes)
        return SpoolRecord(id: id, key: key, attributes: attributes, body: body)
    }

    private static func readString(_ buffer: inout ByteBuffer) -> String? {
        guard let length = buffer.readInteger(as: UInt32.self), Int(length) <= buffer.readableBytes else { return nil }
        return buffer.readString(length: Int(length))
    }
}
