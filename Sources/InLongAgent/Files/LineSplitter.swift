package import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Splits bytes into lines as they are read, in chunks: the one line rule of the agent and of `inlong send`.
/// Pure: no I/O.
///
/// - A line ends with its newline; its body leaves out the newline and one `\r` before it. A last line without its
///   newline is held (not emitted, not passed by ``lineBoundary``) until the rest arrives, or until ``finish(_:)``
///   says the input ended.
/// - Empty lines are not records: they are counted (``emptyLines``), never emitted.
/// - A body longer than ``maxLineLength`` is overlong: counted (``overlongLines``), and truncated to its first
///   ``maxLineLength`` bytes, skipped, or, with ``OverlongPolicy/fail``, the end of splitting (``failedLineStart``).
///   The splitter never holds more than `maxLineLength + 1` bytes of one line.
/// - A line that fits in the chunk is emitted as a slice of the chunk, without a copy; only a line split across
///   chunks is copied (and bounded).
package struct LineSplitter: Sendable {
    /// What becomes of a line longer than the maximum.
    package enum OverlongPolicy: String, Sendable, Hashable, CaseIterable {
        /// Keep its first `maxLineLength` bytes.
        case truncate
        /// Drop it.
        case skip
        /// Stop before it: nothing after it is emitted (``failedLineStart`` says where it starts).
        case fail
    }

    /// One complete line.
    package struct Line: Sendable, Hashable {
        /// The line without its newline (and without a `\r` before it).
        package var body: ByteBuffer
        /// Where the line ends in the input, newline included.
        package var end: Int64
    }

    package let maxLineLength: Int
    package let overlong: OverlongPolicy
    /// Bytes of the line under way: at most `maxLineLength + 1`, so that a `\r` just past the maximum is still seen
    /// to be the line's last byte.
    private var partial = ByteBuffer()
    /// Whether the line under way passed `maxLineLength + 1` bytes: overlong whatever its end.
    private var partialIsOverlong = false
    /// The input offset just past the bytes seen so far.
    package private(set) var offset: Int64
    /// The end of the last complete line (emitted, empty or skipped): what a reader may commit once every line
    /// emitted before it is delivered.
    package private(set) var lineBoundary: Int64
    /// Lines longer than the maximum, so far (truncated, skipped, or the one that failed).
    package private(set) var overlongLines = 0
    /// Empty lines, so far.
    package private(set) var emptyLines = 0
    /// With ``OverlongPolicy/fail``: where the first overlong line starts. Splitting stopped there.
    package private(set) var failedLineStart: Int64?

    package init(maxLineLength: Int, overlong: OverlongPolicy = .truncate, startingAt offset: Int64 = 0) {
        precondition(maxLineLength > 0)
        self.maxLineLength = maxLineLength
        self.overlong = overlong
        self.offset = offset
        self.lineBoundary = offset
    }

    /// Bytes of an incomplete last line held back.
    package var pendingBytes: Int { self.partial.readableBytes }

    /// Takes the next chunk and appends the lines it completes to `lines`.
    package mutating func consume(_ chunk: ByteBuffer, into lines: inout [Line]) {
        self.consume(chunk) { lines.append(Line(body: $0, end: $1)) }
    }

    /// Takes the next chunk and hands each line it completes to `emit`, with where it ends.
    package mutating func consume(_ chunk: ByteBuffer, _ emit: (_ body: ByteBuffer, _ end: Int64) -> Void) {
        self.split(chunk) { body, _, _, end in emit(body, end) }
    }

    /// Takes the next chunk and hands each line it completes to `emit`, with its bytes (valid during the call only)
    /// and where it starts and ends (its start is the end of the line before, empty and skipped lines included). The
    /// bytes let a caller that looks into every line (patterns, filters) read them in place: a look through the
    /// `ByteBuffer` costs a dynamic exclusivity check per line.
    package mutating func consume(
        _ chunk: ByteBuffer,
        viewing emit: (_ body: ByteBuffer, _ bytes: UnsafeRawBufferPointer, _ start: Int64, _ end: Int64) -> Void
    ) {
        self.split(chunk, emit)
    }

    /// Takes the next chunk and appends the bodies of the lines it completes to `bodies` (what a reader that
    /// commits by ``lineBoundary`` needs): the fast path, with no call per line into the caller.
    package mutating func consume(_ chunk: ByteBuffer, appendingTo bodies: inout [ByteBuffer]) {
        self.split(chunk) { body, _, _, _ in bodies.append(body) }
    }

    /// Inlined into each `consume`, so that the common line's `emit` is a direct append.
    @inline(__always)
    private mutating func split(_ chunk: ByteBuffer, _ emit: (_ body: ByteBuffer, _ bytes: UnsafeRawBufferPointer, _ start: Int64, _ end: Int64) -> Void) {
        guard self.failedLineStart == nil else { return }
        // One pass over the chunk's bytes, memchr finding each newline (a byte-by-byte search cost a sixth of the
        // agent's time on 200-byte lines, and a look per line through ByteBuffer doubled `inlong send`'s reading).
        let consumed = chunk.withUnsafeReadableBytes { bytes -> Int in
            guard let base = bytes.baseAddress else { return 0 }
            var start = 0
            while start < bytes.count, self.failedLineStart == nil,
                let found = memchr(base + start, 0x0A, bytes.count - start)
            {
                let newline = base.distance(to: UnsafeRawPointer(found))
                self.offset += Int64(newline + 1 - start)
                if self.partial.readableBytes == 0 && !self.partialIsOverlong {
                    var length = newline - start
                    if length > 0, bytes[newline - 1] == UInt8(ascii: "\r") { length -= 1 }
                    let body = chunk.getSlice(at: chunk.readerIndex + start, length: length)!
                    if length > 0 && length <= self.maxLineLength {
                        // The common line: a slice of the chunk, no copy.
                        let lineStart = self.lineBoundary
                        self.lineBoundary = self.offset
                        emit(body, UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)]), lineStart, self.offset)
                    } else {
                        self.complete(body, overlong: length > self.maxLineLength, emit)
                    }
                } else {
                    self.appendPartial(chunk.getSlice(at: chunk.readerIndex + start, length: newline - start)!)
                    var body = self.partial
                    let overlong = self.partialIsOverlong
                    self.partial = ByteBuffer()
                    self.partialIsOverlong = false
                    if !overlong { Self.dropCarriageReturn(&body) }
                    self.complete(body, overlong: overlong || body.readableBytes > self.maxLineLength, emit)
                }
                start = newline + 1
            }
            return start
        }
        guard self.failedLineStart == nil, consumed < chunk.readableBytes else { return }
        // The rest is the start of a line: held until its newline (bounded).
        self.appendPartial(chunk.getSlice(at: chunk.readerIndex + consumed, length: chunk.readableBytes - consumed)!)
        self.offset += Int64(chunk.readableBytes - consumed)
        if self.partialIsOverlong, self.overlong == .fail { self.fail() }
    }

    /// The input ended: a last line without its newline is complete.
    package mutating func finish(_ emit: (_ body: ByteBuffer, _ end: Int64) -> Void) {
        self.finish { body, _, end in emit(body, end) }
    }

    /// The input ended: a last line without its newline is complete (handed over with where it starts and ends).
    package mutating func finish(lines emit: (_ body: ByteBuffer, _ start: Int64, _ end: Int64) -> Void) {
        guard self.failedLineStart == nil, self.partial.readableBytes > 0 || self.partialIsOverlong else { return }
        var body = self.partial
        let overlong = self.partialIsOverlong
        self.partial = ByteBuffer()
        self.partialIsOverlong = false
        if !overlong { Self.dropCarriageReturn(&body) }
        self.complete(body, overlong: overlong || body.readableBytes > self.maxLineLength) { body, _, start, end in emit(body, start, end) }
    }

    /// Forgets the line under way and starts again at `offset` (a truncated file).
    package mutating func reset(to offset: Int64) {
        self.partial = ByteBuffer()
        self.partialIsOverlong = false
        self.failedLineStart = nil
        self.offset = offset
        self.lineBoundary = offset
    }

    /// A line ending at ``offset`` (without its `\r`): counted, and emitted as the rules say.
    private mutating func complete(_ line: ByteBuffer, overlong: Bool, _ emit: (ByteBuffer, UnsafeRawBufferPointer, Int64, Int64) -> Void) {
        var body = line
        if overlong {
            switch self.overlong {
            case .fail:
                self.fail()
                return
            case .skip:
                self.overlongLines += 1
                self.lineBoundary = self.offset
                return
            case .truncate:
                self.overlongLines += 1
                body = body.getSlice(at: body.readerIndex, length: self.maxLineLength)!
            }
        }
        let lineStart = self.lineBoundary
        self.lineBoundary = self.offset
        if body.readableBytes == 0 {
            self.emptyLines += 1
            return
        }
        let end = self.offset
        body.withUnsafeReadableBytes { emit(body, $0, lineStart, end) }
    }

    private static func dropCarriageReturn(_ body: inout ByteBuffer) {
        if body.readableBytes > 0, body.getInteger(at: body.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\r") {
            body.moveWriterIndex(to: body.writerIndex - 1)
        }
    }

    /// Stops at the line under way, which starts where the last complete line ended.
    private mutating func fail() {
        self.overlongLines += 1
        self.failedLineStart = self.lineBoundary
        self.partial = ByteBuffer()
        self.partialIsOverlong = false
    }

    private mutating func appendPartial(_ bytes: ByteBuffer) {
        guard !self.partialIsOverlong else { return }
        let room = self.maxLineLength + 1 - self.partial.readableBytes
        if bytes.readableBytes > room {
            self.partialIsOverlong = true
            if room > 0 { self.partial.writeImmutableBuffer(bytes.getSlice(at: bytes.readerIndex, length: room)!) }
        } else {
            self.partial.writeImmutableBuffer(bytes)
        }
    }
}
