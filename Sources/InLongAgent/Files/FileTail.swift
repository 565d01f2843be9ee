import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One file being read: its open descriptor (which keeps a renamed or deleted file readable), its identity, the
/// lines read so far and how far they are delivered. Reads only whole lines; a partial last line waits.
///
/// The owner calls ``readLines(maxBytes:chunkSize:)`` when the file may have grown, hands the lines to the sink with their
/// tickets, and calls ``ack(_:)`` as deliveries complete; ``committedOffset`` is what a checkpoint records.
///
/// A file truncated in place (copytruncate) is read again from its start. Its size alone cannot show that: the
/// writer may fill it back to the old position, or past it, between two looks. So every read also checks that the
/// last bytes read are still where they were (an internal read anchor), and a chunk read after they changed is dropped, never
/// taken for the continuation of the old content. What copytruncate can lose is the writer's: lines written between
/// the copy and the truncation, and lines not yet read when the file was truncated (they are only in the copy).
final class FileTail {
    /// What the path shows now compared with the open file.
    enum PathState: Sendable, Hashable {
        /// The path still names this file.
        case same
        /// The path names another file now (rotation by rename, or a new file after deletion).
        case replaced
        /// Nothing is at the path (deleted, or renamed away without a replacement yet).
        case missing
    }

    /// Lines read together, and the ticket that marks them all delivered: one ticket per read, not per line, so
    /// that tracking costs nothing per record.
    struct Read: Sendable {
        var lines: [ByteBuffer]
        /// Where each record starts in the file, when the source adds it as an attribute (empty otherwise).
        var offsets: [Int64] = []
        var ticket: OffsetTracker.Ticket
        /// Bytes of the file the read covers (newlines and empty lines included).
        var bytes: Int
    }

    /// Where the file was found last (a rename that still matches the source's paths moves it).
    var path: String
    /// Device, inode and the fingerprint of the file's first bytes; the fingerprint is taken again when the file
    /// was truncated and written again.
    private(set) var identity: Checkpoint.FileIdentity
    private let file: any TailedFile
    /// The size seen by the last read (or at opening).
    private(set) var size: Int64 = 0
    private var splitter: LineSplitter
    /// Multiline, filters and offsets, when the source has any: `nil` keeps the plain path as it is.
    private var assembler: RecordAssembler?
    private var tracker: OffsetTracker
    private var anchor = ReadAnchor()
    /// A read found the file rewritten after it had returned lines: the next read starts over.
    private var restartPending = false
    /// Times the file was found truncated or rewritten in place (copytruncate) and read again from 0.
    private(set) var truncations = 0

    /// Opens `path`; reading starts at `offset` (a checkpoint's, or 0, or the end for new files started at the
    /// end) and the identity is taken from the open file.
    convenience init(
        path: String,
        startingAt offset: Offset,
        maxLineLength: Int,
        overlong: LineSplitter.OverlongPolicy,
        records: RecordAssembler.Rules? = nil
    ) throws {
        try self.init(path: path, maxLineLength: maxLineLength, overlong: overlong, records: records) { _, _ in offset }
    }

    /// Opens `path`; reading starts where `start` says for the identity of the open file (a checkpoint lookup:
    /// the descriptor lets ``Checkpoint/FileIdentity/matches(_:descriptor:)`` compare a shorter fingerprint).
    convenience init(
        path: String,
        maxLineLength: Int,
        overlong: LineSplitter.OverlongPolicy,
        records: RecordAssembler.Rules? = nil,
        startingAt offset: (Checkpoint.FileIdentity, Int32) -> Offset
    ) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileReadError(path: path, operation: "open", errno: errno) }
        let file = DescriptorFile(descriptor: fd, path: path)
        let identity = try Checkpoint.FileIdentity.of(descriptor: fd)
        try self.init(
            file: file, identity: identity, path: path, startingAt: offset(identity, fd), maxLineLength: maxLineLength, overlong: overlong, records: records
        )
    }

    /// Reads `file`, known as `identity`, from `offset`.
    init(
        file: any TailedFile,
        identity: Checkpoint.FileIdentity,
        path: String,
        startingAt offset: Offset,
        maxLineLength: Int,
        overlong: LineSplitter.OverlongPolicy,
        records: RecordAssembler.Rules? = nil
    ) throws {
        let size = try file.size()
        var start: Int64
        switch offset {
        case .beginning: start = 0
        case .at(let position): start = position
        case .end: start = size
        }
        // A checkpoint past the end means the file was truncated meanwhile: read it from the start.
        if size < start { start = 0 }
        self.file = file
        self.identity = identity
        self.path = path
        self.size = size
        // A line never passes a multiline record's byte limit alone: longer ones are overlong.
        let maxLineLength = records?.multiline.map { min(maxLineLength, $0.rules.maxBytes) } ?? maxLineLength
        self.splitter = LineSplitter(maxLineLength: maxLineLength, overlong: overlong, startingAt: start)
        self.assembler = records.map(RecordAssembler.init)
        self.tracker = OffsetTracker(committedOffset: start)
        // The file matched its checkpoint (identity) as it is now: its bytes before the start are the ones read.
        if start > 0 { self.anchor.load(from: file, before: start) }
    }

    /// Where reading starts for a file.
    enum Offset: Sendable, Hashable {
        case beginning
        case end
        case at(Int64)
    }

    /// The end of the delivered prefix.
    var committedOffset: Int64 { self.tracker.committedOffset }
    /// The end of the last complete line read.
    var readOffset: Int64 { self.tracker.readOffset }
    /// How far the file was read: past ``readOffset`` by a last line without its newline yet, which is held back.
    /// A multiline record under way is not read yet: it is not sent, and the agent has not caught up with it.
    var scannedOffset: Int64 { self.assembler?.pendingStart ?? self.splitter.offset }
    /// Whether a multiline record is under way (it is sent when complete, or at its timeout).
    var hasPendingRecord: Bool { self.assembler?.pendingStart != nil }
    /// Multiline records cut at their limits, and records dropped by the filters.
    var cutRecords: Int { self.assembler?.cutRecords ?? 0 }
    var filteredRecords: Int { self.assembler?.filteredRecords ?? 0 }
    /// Whether every line read is delivered.
    var isDrained: Bool { self.tracker.outstandingCount == 0 }
    /// Lines over the maximum length so far.
    var overlongLines: Int { self.splitter.overlongLines }
    /// Empty lines read (they are left out of the lines returned: they are not records).
    var emptyLines: Int { self.splitter.emptyLines }

    /// Reads what the file gained, up to about `maxBytes`, and returns its complete lines (`nil` when there is no
    /// new complete line). A file now shorter than what was read, or no longer holding the bytes last read, was
    /// truncated in place: it is read again from its start (outstanding lines are forgotten, their late acks
    /// ignored).
    ///
    /// With multiline, a read ends where the record under way starts, and that record is sent once a line shows it
    /// complete or when no line came for its timeout (measured on `now`).
    ///
    /// With `maxRecords` (a rate-limited read) the read is exact: lines are handed on one at a time, and the read
    /// ends after the line that brings it to `maxRecords` records or to `maxBytes` bytes past its start.
    func readLines(maxBytes: Int, maxRecords: Int? = nil, chunkSize: Int = 256 << 10, now: ContinuousClock.Instant = .now) throws -> Read? {
        // A fingerprint shorter than its full size (a file opened small, or just truncated) grows with the file,
        // after the read checked that it is still the same content: an empty one would match any file.
        defer {
            if self.identity.fingerprintLength < Checkpoint.FileIdentity.fingerprintSize, self.size > self.identity.fingerprintLength, !self.restartPending {
                self.identity = self.identity.refingerprinted(from: self.file)
            }
        }
        self.size = try self.file.size()
        if self.restartPending || self.size < self.splitter.offset { self.restart() }
        // Bodies straight from the splitter (it leaves empty lines out: they are not records): no second array.
        var lines: [ByteBuffer] = []
        var offsets: [Int64] = []
        var end: Int64?
        // Whether the read found the end of the file: only then may a multiline record time out (bytes not read
        // yet may continue it).
        var atEnd = false
        var total = 0
        while total < maxBytes {
            let position = self.splitter.offset
            // No bigger than what the file held past the position when it was looked at (with room for a little
            // growth since): the lines read keep their chunk's storage until they are acked, so a file that grew by
            // a line must not hold a whole chunk. Past that size the file is growing as it is read: whole chunks.
            let known = self.size - position
            let chunkSize = min(chunkSize, max(maxBytes - total, 4096), known > 0 ? Int(clamping: known) + 4096 : chunkSize)
            var chunk = ByteBufferAllocator().buffer(capacity: chunkSize)
            var failure: Int32 = 0
            let count = chunk.writeWithUnsafeMutableBytes(minimumWritableBytes: chunkSize) { buffer in
                let count = self.file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(chunkSize)), at: position)
                if count < 0 { failure = Int32(-count) }
                return max(count, 0)
            }
            if failure != 0 {
                // An I/O error is not the end of the file: say so, unless lines already read come first (the next
                // read meets the error again).
                if end == nil { throw FileReadError(path: self.path, operation: "read", errno: failure) }
                break
            }
            // Checked after the chunk was read: if the bytes before it are still those read, the file was not
            // rewritten before this look, so neither before the chunk was read.
            guard self.anchor.isHeld(by: self.file, before: position) else {
                if end != nil {
                    // The lines already taken were checked by the previous look: return them, start over next time.
                    self.restartPending = true
                    break
                }
                self.restart()
                continue
            }
            if count == 0 {
                atEnd = true
                break
            }
            if let maxRecords {
                let (fed, limited) = self.consumeLines(chunk, maxRecords: maxRecords, maxBytes: maxBytes, now: now, into: &lines, offsets: &offsets)
                chunk.withUnsafeReadableBytes { self.anchor.advance(over: UnsafeRawBufferPointer(rebasing: $0.prefix(fed))) }
                total += fed
                if self.boundary > self.tracker.readOffset { end = self.boundary }
                // The rest of the chunk is read again by the next read.
                if limited { break }
                continue
            }
            chunk.withUnsafeReadableBytes { self.anchor.advance(over: $0) }
            total += count
            self.consume(chunk, now: now, into: &lines, offsets: &offsets)
            // Past empty and skipped lines too: a file that ends with one still commits to its end.
            if self.boundary > self.tracker.readOffset { end = self.boundary }
        }
        if self.assembler != nil, atEnd, !self.restartPending {
            // The record under way is as old as the file's last write, at least.
            if self.hasPendingRecord, let quiet = self.file.timeSinceLastWrite(), quiet > .zero {
                self.assembler!.fileQuiet(since: now - quiet)
            }
            self.assembler!.tick(now: now, into: &lines, offsets: &offsets)
            if self.boundary > self.tracker.readOffset { end = self.boundary }
        }
        guard let end else { return nil }
        let bytes = Int(end - self.tracker.readOffset)
        return Read(lines: lines, offsets: offsets, ticket: self.tracker.read(upTo: end), bytes: bytes)
    }

    /// Hands `chunk` to the splitter line by line until the read holds `maxRecords` records or covers `maxBytes`
    /// past the committed read offset: the bytes handed on, and whether a limit was reached.
    private func consumeLines(
        _ chunk: ByteBuffer,
        maxRecords: Int,
        maxBytes: Int,
        now: ContinuousClock.Instant,
        into lines: inout [ByteBuffer],
        offsets: inout [Int64]
    ) -> (fed: Int, limited: Bool) {
        var fed = 0
        while fed < chunk.readableBytes {
            let newline = chunk.withUnsafeReadableBytes { bytes in
                memchr(bytes.baseAddress! + fed, 0x0A, bytes.count - fed).map { bytes.baseAddress!.distance(to: UnsafeRawPointer($0)) }
            }
            // A last line without its newline is held by the splitter, as in a plain read.
            let length = newline.map { $0 + 1 - fed } ?? (chunk.readableBytes - fed)
            let piece = chunk.getSlice(at: chunk.readerIndex + fed, length: length)!
            self.consume(piece, now: now, into: &lines, offsets: &offsets)
            fed += length
            if newline != nil, lines.count >= maxRecords || self.splitter.offset - self.tracker.readOffset >= Int64(maxBytes) {
                return (fed, true)
            }
        }
        return (fed, false)
    }

    /// Splits `bytes` into lines: straight into `lines`, or through the records' rules when the source has any.
    @inline(__always)
    private func consume(_ bytes: ByteBuffer, now: ContinuousClock.Instant, into lines: inout [ByteBuffer], offsets: inout [Int64]) {
        guard var assembler = self.assembler.take() else {
            self.splitter.consume(bytes, appendingTo: &lines)
            return
        }
        self.splitter.consume(bytes, viewing: { body, view, start, end in
            assembler.line(body, bytes: view, start: start, end: end, into: &lines, offsets: &offsets)
        })
        // The clock is read once per chunk, not per line.
        assembler.linesCame(at: now)
        self.assembler = assembler
    }

    /// What a read may commit: the end of the last complete line, or the start of a multiline record under way.
    private var boundary: Int64 {
        self.assembler?.pendingStart ?? self.splitter.lineBoundary
    }

    /// Starts over at the file's first byte: it was truncated, or rewritten in place.
    private func restart() {
        self.truncations += 1
        self.restartPending = false
        self.splitter.reset(to: 0)
        self.assembler?.reset()
        self.tracker.restart(at: 0)
        self.anchor.reset()
        self.identity = self.identity.refingerprinted(from: self.file)
    }

    /// Marks a line delivered; returns whether the committed offset moved.
    @discardableResult
    func ack(_ ticket: OffsetTracker.Ticket) -> Bool {
        self.tracker.ack(ticket)
    }

    /// Whether the path still names this file.
    func pathState() -> PathState {
        let other = open(self.path, O_RDONLY | O_CLOEXEC)
        guard other >= 0 else { return .missing }
        defer { close(other) }
        guard let identity = try? Checkpoint.FileIdentity.of(descriptor: other) else { return .missing }
        return self.pathState(finding: (DescriptorFile(borrowing: other), identity))
    }

    /// Whether the file found at the path (nil: none) is this one.
    func pathState(finding found: (file: any TailedFile, identity: Checkpoint.FileIdentity)?) -> PathState {
        guard let found else { return .missing }
        return self.identity.matches(found.identity, file: found.file) ? .same : .replaced
    }
}

/// `pread` of up to `buffer.count` bytes at `offset`, again when interrupted: the bytes read (0 at the end of the
/// file), or minus the `errno` of a failure.
func preadRetrying(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
    while true {
        let count = pread(fd, buffer.baseAddress, buffer.count, off_t(offset))
        if count >= 0 { return count }
        guard errno == EINTR else { return -Int(errno) }
    }
}
