package import NIOCore

/// Splits a syslog TCP stream into messages, as RFC 6587 frames them, in chunks as they are read. Pure: no I/O.
///
/// - A frame that starts with a digit is octet-counted: `MSG-LEN SP MSG`, `MSG-LEN` at most ``maxMessageLength``.
/// - Any other frame ends at a newline (non-transparent framing: rsyslog's and syslog-ng's default); a `\r`
///   before the newline is left out, and so is a NUL that some senders end frames with. Empty frames are skipped.
/// - The two may alternate within one stream: each frame is judged by its first byte.
/// - A newline-ended frame longer than ``maxMessageLength`` is cut there (counted in ``cutMessages``) and the rest
///   starts a new frame; an announced length over the maximum, or a length that is not digits and a space, is a
///   ``SyslogFramingError``: the stream cannot be followed after it.
/// - The splitter never holds more than ``maxMessageLength`` bytes plus one length prefix.
package struct SyslogFrameSplitter: Sendable {
    package let maxMessageLength: Int
    /// Whether a frame that starts with a digit is octet-counted; `false` for plain lines (every frame ends at a
    /// newline).
    package let octetCounting: Bool
    /// Bytes of the frame under way (its length prefix included for an octet-counted one).
    private var partial = ByteBuffer()
    /// Frames cut at the maximum, so far.
    package private(set) var cutMessages = 0

    package init(maxMessageLength: Int = 64 << 10, octetCounting: Bool = true) {
        precondition(maxMessageLength > 0)
        self.maxMessageLength = maxMessageLength
        self.octetCounting = octetCounting
    }

    /// At the end of the stream: a newline-ended frame under way without its newline, as a last message (an
    /// unfinished octet-counted frame is incomplete and dropped).
    package mutating func finish() -> ByteBuffer? {
        defer { self.partial = ByteBuffer() }
        guard self.partial.readableBytes > 0, let first = self.partial.getInteger(at: self.partial.readerIndex, as: UInt8.self) else { return nil }
        if self.octetCounting, first >= UInt8(ascii: "1"), first <= UInt8(ascii: "9") { return nil }
        let message = Self.trimmed(self.partial)
        return message.readableBytes > 0 ? message : nil
    }

    /// Bytes held of a frame under way (not a whole message yet).
    package var heldBytes: Int { self.partial.readableBytes }

    /// Takes the next bytes of the stream and appends the whole messages in them to `messages`.
    package mutating func consume(_ chunk: ByteBuffer, appendingTo messages: inout [ByteBuffer]) throws(SyslogFramingError) {
        var input = chunk
        if self.partial.readableBytes > 0 {
            self.partial.writeImmutableBuffer(input)
            input = self.partial
            self.partial = ByteBuffer()
        }
        while input.readableBytes > 0 {
            guard let message = try self.nextFrame(&input) else {
                // Incomplete: held until more arrives (a copy, so that the chunk is not kept alive by a slice).
                self.partial = ByteBuffer(buffer: input)
                return
            }
            if let message, message.readableBytes > 0 { messages.append(message) }
        }
    }

    /// The next frame of `input`, consumed from it: `nil` when it is incomplete (nothing consumed); `.some(nil)`
    /// for a frame that holds nothing.
    private mutating func nextFrame(_ input: inout ByteBuffer) throws(SyslogFramingError) -> ByteBuffer?? {
        guard let first = input.getInteger(at: input.readerIndex, as: UInt8.self) else { return nil }
        if self.octetCounting, first >= UInt8(ascii: "1") && first <= UInt8(ascii: "9") {
            return try self.octetCounted(&input)
        }
        return self.newlineEnded(&input)
    }

    private func octetCounted(_ input: inout ByteBuffer) throws(SyslogFramingError) -> ByteBuffer?? {
        let digits = input.readableBytesView.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        let maxDigits = String(self.maxMessageLength).utf8.count
        guard digits.count <= maxDigits else { throw SyslogFramingError(reason: "a frame announces more than \(self.maxMessageLength) bytes") }
        // All digits so far: the length may go on in the next chunk.
        guard digits.count < input.readableBytes else { return nil }
        guard input.getInteger(at: input.readerIndex + digits.count, as: UInt8.self) == UInt8(ascii: " ") else {
            throw SyslogFramingError(reason: "an octet count is not followed by a space")
        }
        let length = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        guard length <= self.maxMessageLength else {
            throw SyslogFramingError(reason: "a frame announces \(length) bytes, more than \(self.maxMessageLength)")
        }
        guard input.readableBytes >= digits.count + 1 + length else { return nil }
        input.moveReaderIndex(forwardBy: digits.count + 1)
        return .some(input.readSlice(length: length))
    }

    private mutating func newlineEnded(_ input: inout ByteBuffer) -> ByteBuffer?? {
        let view = input.readableBytesView
        // A frame of the maximum may still end with "\r\n" or NUL "\n": look two bytes past it.
        let window = view.prefix(self.maxMessageLength + 2)
        if let newline = window.firstIndex(of: UInt8(ascii: "\n")) {
            let message = Self.trimmed(input.getSlice(at: input.readerIndex, length: newline - view.startIndex)!)
            if message.readableBytes <= self.maxMessageLength {
                input.moveReaderIndex(forwardBy: newline - view.startIndex + 1)
                return .some(message)
            }
        } else if window.count < self.maxMessageLength + 2 {
            return nil
        }
        // Past the maximum: cut there, and the rest is a new frame.
        self.cutMessages += 1
        return .some(input.readSlice(length: self.maxMessageLength)!)
    }

    /// `message` without its trailing line ends: `\n`, `\r` and NUL (a frame's, or a datagram's).
    static func trimmed(_ message: ByteBuffer) -> ByteBuffer {
        var message = message
        while message.readableBytes > 0, let last = message.getInteger(at: message.writerIndex - 1, as: UInt8.self),
            last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") || last == 0
        {
            message.moveWriterIndex(to: message.writerIndex - 1)
        }
        return message
    }
}

/// A syslog stream that cannot be followed: the connection is closed.
package struct SyslogFramingError: Error, Hashable, CustomStringConvertible {
    package var reason: String
    package var description: String { "syslog framing: \(self.reason)" }
}
