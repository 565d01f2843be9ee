public import NIOCore

/// Ready ``FrameCodec/frameBoundary(in:)`` implementations for common framings. A codec calls one from its own
/// `frameBoundary(in:)`:
///
/// ```swift
/// func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary {
///     try LengthFieldFramer(lengthFieldOffset: 0, lengthFieldLength: 4).frameBoundary(in: buffer)
/// }
/// ```
public protocol Framer: Sendable {
    /// Where the next frame ends in `buffer`'s readable bytes.
    func frameBoundary(in buffer: ByteBuffer) throws(FramingError) -> FrameBoundary
}

/// A framer met bytes that cannot start or continue a valid frame.
public struct FramingError: Error, Hashable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Frames announced by a length field: `length` at `lengthFieldOffset`, 1, 2, 4 or 8 bytes wide, counting the
/// bytes after the field plus `lengthAdjustment` (set it to include or exclude a header, as the protocol says).
/// A frame includes everything from the first byte of the buffer.
public struct LengthFieldFramer: Framer {
    public var lengthFieldOffset: Int
    public var lengthFieldLength: Int
    public var endianness: Endianness
    /// Added to the field's value to get the bytes that follow the field.
    public var lengthAdjustment: Int
    /// A frame announced longer than this is an error. Defaults to 16 MiB.
    public var maxFrameLength: Int

    public init(
        lengthFieldOffset: Int = 0,
        lengthFieldLength: Int = 4,
        endianness: Endianness = .big,
        lengthAdjustment: Int = 0,
        maxFrameLength: Int = 16 << 20
    ) {
        precondition([1, 2, 4, 8].contains(lengthFieldLength), "a length field is 1, 2, 4 or 8 bytes wide")
        precondition(lengthFieldOffset >= 0)
        self.lengthFieldOffset = lengthFieldOffset
        self.lengthFieldLength = lengthFieldLength
        self.endianness = endianness
        self.lengthAdjustment = lengthAdjustment
        self.maxFrameLength = maxFrameLength
    }

    public func frameBoundary(in buffer: ByteBuffer) throws(FramingError) -> FrameBoundary {
        let at = buffer.readerIndex + self.lengthFieldOffset
        let value: UInt64?
        switch self.lengthFieldLength {
        case 1: value = buffer.getInteger(at: at, endianness: self.endianness, as: UInt8.self).map(UInt64.init)
        case 2: value = buffer.getInteger(at: at, endianness: self.endianness, as: UInt16.self).map(UInt64.init)
        case 4: value = buffer.getInteger(at: at, endianness: self.endianness, as: UInt32.self).map(UInt64.init)
        default: value = buffer.getInteger(at: at, endianness: self.endianness, as: UInt64.self)
        }
        guard let value else { return .needMoreBytes }
        let header = self.lengthFieldOffset + self.lengthFieldLength
        guard value <= UInt64(self.maxFrameLength) else {
            throw FramingError("announced length \(value) exceeds \(self.maxFrameLength)")
        }
        let length = header + Int(value) + self.lengthAdjustment
        guard length > 0, length >= header, length <= self.maxFrameLength else {
            throw FramingError("announced length \(value) gives a frame of \(length) bytes")
        }
        return .frame(length: length)
    }
}

/// Frames that end with a delimiter (`\n` by default, or `\r\n`, or any byte string); the delimiter is part of
/// the frame. Bytes past `maxFrameLength` without a delimiter are an error, so a peer cannot grow the buffer.
public struct DelimiterFramer: Framer {
    public var delimiter: [UInt8]
    public var maxFrameLength: Int

    public init(delimiter: [UInt8] = [UInt8(ascii: "\n")], maxFrameLength: Int = 1 << 20) {
        precondition(!delimiter.isEmpty, "a delimiter has at least one byte")
        self.delimiter = delimiter
        self.maxFrameLength = maxFrameLength
    }

    public func frameBoundary(in buffer: ByteBuffer) throws(FramingError) -> FrameBoundary {
        let end = buffer.withUnsafeReadableBytes { bytes -> Int? in
            let delimiter = self.delimiter
            let last = bytes.count - delimiter.count
            guard last >= 0 else { return nil }
            var index = 0
            while index <= last {
                guard let found = bytes[index...last].firstIndex(of: delimiter[0]) else { return nil }
                if delimiter.count == 1
                    || (1..<delimiter.count).allSatisfy({ bytes[found + $0] == delimiter[$0] })
                {
                    return found + delimiter.count
                }
                index = found + 1
            }
            return nil
        }
        if let end {
            guard end <= self.maxFrameLength else { throw FramingError("a frame of \(end) bytes exceeds \(self.maxFrameLength)") }
            return .frame(length: end)
        }
        guard buffer.readableBytes < self.maxFrameLength else {
            throw FramingError("no delimiter within \(self.maxFrameLength) bytes")
        }
        return .needMoreBytes
    }
}

/// Frames that begin with a start byte (or byte string) and are then delimited by another framer; bytes before a
/// start are skipped, so the connection resynchronises after garbage instead of closing.
public struct StartByteFramer<Inner: Framer>: Framer {
    public var start: [UInt8]
    public var inner: Inner

    public init(start: [UInt8], then inner: Inner) {
        precondition(!start.isEmpty, "a start marker has at least one byte")
        self.start = start
        self.inner = inner
    }

    public func frameBoundary(in buffer: ByteBuffer) throws(FramingError) -> FrameBoundary {
        let prefixMatches = buffer.withUnsafeReadableBytes { bytes -> Int in
            // How many leading bytes cannot begin a start marker.
            var index = 0
            while index < bytes.count {
                let available = min(self.start.count, bytes.count - index)
                if (0..<available).allSatisfy({ bytes[index + $0] == self.start[$0] }) { return index }
                index += 1
            }
            return index
        }
        if prefixMatches > 0 { return .skip(count: prefixMatches) }
        guard buffer.readableBytes >= self.start.count else { return .needMoreBytes }
        return try self.inner.frameBoundary(in: buffer)
    }
}
