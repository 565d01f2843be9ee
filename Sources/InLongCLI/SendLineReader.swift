import Foundation
import InLongAgent
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Where `inlong send`'s reader hands what it read: lines one by one (a batch of slices), or, on the fast path,
/// a run of whole newline-ended lines as they were read, which the client walks in place
/// (``DataProxyClient/send(lines:delimiter:group:stream:attributes:)``). Called like a closure of lines.
struct LineEmitter {
    let lines: ([ByteBuffer]) async throws -> Void
    /// Takes whole lines ended by newlines, each maybe with a `\r` before its newline (left out, as empty lines
    /// are); returns how many empty lines it left out. `nil` when the lines must come one by one.
    let delimited: ((ByteBuffer) async throws -> Int)?

    init(lines: @escaping ([ByteBuffer]) async throws -> Void, delimited: ((ByteBuffer) async throws -> Int)? = nil) {
        self.lines = lines
        self.delimited = delimited
    }

    func callAsFunction(_ lines: [ByteBuffer]) async throws {
        try await self.lines(lines)
    }
}

/// Reads `inlong send`'s files (or standard input) in 1 MiB chunks and hands their lines in batches, split by the
/// agent's `LineSplitter`: one rule for both (empty lines left out, overlong lines truncated, skipped or an error,
/// and counted). A line that fits a chunk is handed as a slice of it, without a copy; when the emitter takes
/// delimited runs, the whole lines of a chunk go as one run, with no slice per line.
struct SendLineReader {
    /// Bytes read at a time.
    static let chunkSize = 1 << 20

    var maxLineLength: Int
    var overlong: LineSplitter.OverlongPolicy
    /// Lines longer than `maxLineLength` in the files read so far.
    private(set) var overlongLines = 0
    /// Empty lines left out so far (they are not records).
    private(set) var emptyLines = 0
    /// With `.fail`: the overlong line reading stopped at. What was read before it is still sent.
    private(set) var failure: String?

    init(maxLineLength: Int = 4 << 20, overlong: LineSplitter.OverlongPolicy = .truncate) {
        self.maxLineLength = maxLineLength
        self.overlong = overlong
    }

    /// Reads `handle` (named `name` in errors) to its end, or until `stop`, handing batches of lines to `emit`.
    mutating func read(
        _ handle: FileHandle,
        name: String = "standard input",
        stop: @escaping @Sendable () -> Bool = { false },
        _ emit: @escaping ([ByteBuffer]) async throws -> Void
    ) async throws {
        try await self.read(handle, name: name, stop: stop, LineEmitter(lines: emit))
    }

    /// Reads `handle` (named `name` in errors) to its end, or until `stop`. A last line without its newline counts
    /// at the end of the file, not at a stop (the rest of it may still be on its way).
    mutating func read(
        _ handle: FileHandle,
        name: String = "standard input",
        stop: @escaping @Sendable () -> Bool = { false },
        _ emit: LineEmitter
    ) async throws {
        let descriptor = handle.fileDescriptor
        var splitter = LineSplitter(maxLineLength: self.maxLineLength, overlong: self.overlong)
        defer {
            self.overlongLines += splitter.overlongLines
            self.emptyLines += splitter.emptyLines
        }
        // A line wholly inside a chunk is shorter than a chunk: with a maximum no shorter, none is overlong, and
        // the whole lines of a chunk can go as they are.
        let delimited = self.maxLineLength >= Self.chunkSize ? emit.delimited : nil
        var lines: [ByteBuffer] = []
        var ended = false
        while !stop() {
            // A pipe or terminal may stay silent: wait in slices, so that `stop` ends the read.
            var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let polled = poll(&ready, 1, 100)
            if polled == 0 { continue }
            if polled < 0, errno != EINTR { throw CLIError("cannot read \(name): \(String(cString: strerror(errno)))") }
            var chunk = ByteBufferAllocator().buffer(capacity: Self.chunkSize)
            let count = try chunk.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.chunkSize) { destination in
                while true {
                    let count = readBytes(descriptor, destination.baseAddress, destination.count)
                    if count >= 0 { return count }
                    if errno != EINTR { throw CLIError("cannot read \(name): \(String(cString: strerror(errno)))") }
                }
            }
            if count == 0 {
                ended = true
                break
            }
            if let delimited, splitter.failedLineStart == nil {
                if splitter.pendingBytes > 0, let end = Self.firstLineEnd(in: chunk) {
                    // The line under way ends in this chunk: it goes by the splitter's rules, before the rest.
                    lines.removeAll(keepingCapacity: true)
                    splitter.consume(chunk.readSlice(length: end)!, appendingTo: &lines)
                    if !lines.isEmpty { try await emit(lines) }
                    if self.failed(splitter, name: name) { return }
                }
                if splitter.pendingBytes == 0, let whole = Self.wholeLines(of: chunk) {
                    // No line under way: the chunk's whole lines go as one run, the rest starts the next line.
                    self.emptyLines += try await delimited(chunk.getSlice(at: chunk.readerIndex, length: whole)!)
                    splitter.reset(to: splitter.offset + Int64(whole))
                    chunk.moveReaderIndex(forwardBy: whole)
                }
                if chunk.readableBytes == 0 { continue }
            }
            lines.removeAll(keepingCapacity: true)
            splitter.consume(chunk, appendingTo: &lines)
            // The lines before an overlong one are sent: they were read whole.
            if !lines.isEmpty { try await emit(lines) }
            if self.failed(splitter, name: name) { return }
        }
        guard ended else { return }
        lines.removeAll(keepingCapacity: true)
        splitter.finish { body, _ in lines.append(body) }
        if !lines.isEmpty { try await emit(lines) }
        _ = self.failed(splitter, name: name)
    }

    /// The length of `chunk`'s first line: up to and with its first newline; `nil` when it has none.
    private static func firstLineEnd(in chunk: ByteBuffer) -> Int? {
        chunk.withUnsafeReadableBytes { bytes -> Int? in
            guard let base = bytes.baseAddress, let found = memchr(base, 0x0A, bytes.count) else { return nil }
            return base.distance(to: UnsafeRawPointer(found)) + 1
        }
    }

    /// The length of `chunk`'s whole lines: up to and with its last newline; `nil` when it has none.
    private static func wholeLines(of chunk: ByteBuffer) -> Int? {
        chunk.withUnsafeReadableBytes { bytes -> Int? in
            // Lines are short next to a chunk: the last newline is near its end.
            bytes.lastIndex(of: 0x0A).map { $0 + 1 }
        }
    }

    /// Whether the splitter stopped at an overlong line (`.fail`); if so, says where.
    private mutating func failed(_ splitter: LineSplitter, name: String) -> Bool {
        guard let start = splitter.failedLineStart else { return false }
        self.failure = "\(name): the line at byte \(start) is longer than \(self.maxLineLength) bytes; reading stopped there (--overlong fail)"
        return true
    }
}

/// `read(2)` (the reader's own `read` hides it).
private func readBytes(_ descriptor: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(descriptor, buffer, count)
}
