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

    /// Encodes records one after the other into one buffer, the batch key's bytes made once per key.
    struct Encoder {
        var buffer: ByteBuffer
        private var lastKey: BatchKey?
        private var keyBytes: [UInt8] = []

        init(buffer: ByteBuffer = ByteBuffer()) {
            self.buffer = buffer
        }

        /// Records of one key without attributes, the `i`-th of `ids` with the `i`-th body: one write into the
        /// buffer for the whole run.
        mutating func appendRun(ids: DataProxyRecordIDs, key: BatchKey, bodies: ArraySlice<ByteBuffer>) {
            self.useKey(key)
            let fixed = SpoolRecord.headerLength + 8 + self.keyBytes.count + 1 + 4
            var total = 0
            for body in bodies { total += fixed + body.readableBytes }
            let keyBytes = self.keyBytes
            self.buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { target in
                let base = target.baseAddress!
                var start = 0
                var index = bodies.startIndex
                for run in ids.runs {
                    for id in run {
                        let body = bodies[index]
                        index += 1
                        start += Self.put(id: id, keyBytes: keyBytes, attributes: nil, body: body, at: base + start)
                    }
                }
                return total
            }
        }

        mutating func append(id: UInt64, key: BatchKey, attributes: String?, body: ByteBuffer) {
            self.useKey(key)
            let total = SpoolRecord.headerLength + 8 + self.keyBytes.count + 1 + (attributes.map { 4 + $0.utf8.count } ?? 0) + 4
                + body.readableBytes
            let keyBytes = self.keyBytes
            self.buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { target in
                Self.put(id: id, keyBytes: keyBytes, attributes: attributes, body: body, at: target.baseAddress!)
            }
        }

        private mutating func useKey(_ key: BatchKey) {
            guard key != self.lastKey else { return }
            var bytes = ByteBuffer()
            SpoolRecord.write(key.group, to: &bytes)
            SpoolRecord.write(key.stream, to: &bytes)
            SpoolRecord.write(key.messageAttributes, to: &bytes)
            bytes.writeInteger(UInt8(key.perRecordAttributes ? 1 : 0))
            self.keyBytes = Array(bytes.readableBytesView)
            self.lastKey = key
        }

        /// Writes one record at `base` in one pass over raw bytes (header, id, key, attributes, body), then the
        /// checksum over the payload just written; returns its length. ByteBuffer's per-field writes and their
        /// checks cost more than the copy.
        private static func put(id: UInt64, keyBytes: [UInt8], attributes: String?, body: ByteBuffer, at base: UnsafeMutableRawPointer) -> Int {
            var offset = SpoolRecord.headerLength
            func put<T: FixedWidthInteger>(_ value: T) {
                base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
                offset += MemoryLayout<T>.size
            }
            put(id)
            keyBytes.withUnsafeBytes { key in
                base.advanced(by: offset).copyMemory(from: key.baseAddress!, byteCount: key.count)
            }
            offset += keyBytes.count
            if var attributes {
                put(UInt8(1))
                put(UInt32(attributes.utf8.count))
                attributes.withUTF8 { text in
                    if text.count > 0 { base.advanced(by: offset).copyMemory(from: text.baseAddress!, byteCount: text.count) }
                    offset += text.count
                }
            } else {
                put(UInt8(0))
            }
            put(UInt32(body.readableBytes))
            body.withUnsafeReadableBytes { bytes in
                if bytes.count > 0 { base.advanced(by: offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            }
            offset += body.readableBytes
            let payloadLength = offset - SpoolRecord.headerLength
            let checksum = CRC32C.checksum(UnsafeRawBufferPointer(start: base + SpoolRecord.headerLength, count: payloadLength))
            base.storeBytes(of: UInt32(payloadLength).bigEndian, as: UInt32.self)
            base.storeBytes(of: checksum.bigEndian, toByteOffset: 4, as: UInt32.self)
            return offset
        }
    }

    fileprivate static func write(_ text: String, to buffer: inout ByteBuffer) {
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
