package import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The records of a delimited buffer (``DataProxyClient/send(lines:delimiter:group:stream:attributes:)``): each
/// is the bytes before a delimiter, the last one also when no delimiter ends it. With a newline delimiter a
/// carriage return before it is left out too (CRLF line ends). Empty records are left out and counted.
package enum DelimitedRecords {
    /// The record from `cursor` on in `bytes`: its body's length, and where the next record starts.
    @inline(__always)
    static func next(in bytes: UnsafeRawBufferPointer, from cursor: Int, delimiter: UInt8) -> (length: Int, next: Int) {
        let base = bytes.baseAddress!
        let end = bytes.count
        guard let found = memchr(base + cursor, Int32(delimiter), end - cursor) else {
            return (Self.trimmed(bytes, from: cursor, to: end, delimiter: delimiter), end)
        }
        let position = base.distance(to: UnsafeRawPointer(found))
        return (Self.trimmed(bytes, from: cursor, to: position, delimiter: delimiter), position + 1)
    }

    @inline(__always)
    private static func trimmed(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int, delimiter: UInt8) -> Int {
        var length = end - start
        if delimiter == UInt8(ascii: "\n"), length > 0, bytes[end - 1] == UInt8(ascii: "\r") { length -= 1 }
        return length
    }

    /// Counts the records of `buffer`, the empty ones left out, and the records' bytes.
    package static func count(_ buffer: ByteBuffer, delimiter: UInt8 = UInt8(ascii: "\n")) -> (records: Int, empty: Int, bytes: Int) {
        var counted = (records: 0, empty: 0, bytes: 0)
        buffer.withUnsafeReadableBytes { bytes in
            var cursor = 0
            while cursor < bytes.count {
                let (length, next) = Self.next(in: bytes, from: cursor, delimiter: delimiter)
                if length == 0 {
                    counted.empty += 1
                } else {
                    counted.records += 1
                    counted.bytes += length
                }
                cursor = next
            }
        }
        return counted
    }

    /// The records of `buffer` as slices of it, and how many empty ones were left out.
    package static func slices(_ buffer: ByteBuffer, delimiter: UInt8 = UInt8(ascii: "\n")) -> (bodies: [ByteBuffer], empty: Int) {
        var bodies: [ByteBuffer] = []
        var empty = 0
        buffer.withUnsafeReadableBytes { bytes in
            var cursor = 0
            while cursor < bytes.count {
                let (length, next) = Self.next(in: bytes, from: cursor, delimiter: delimiter)
                if length == 0 {
                    empty += 1
                } else {
                    bodies.append(buffer.getSlice(at: buffer.readerIndex + cursor, length: length)!)
                }
                cursor = next
            }
        }
        return (bodies, empty)
    }
}
