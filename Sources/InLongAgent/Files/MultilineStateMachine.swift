import InLongDataProxy
import NIOCore

/// Joins consecutive lines into records, as Filebeat's `multiline` does (`pattern`, `negate`, `match`), with no
/// I/O, no clock and no pattern: the caller says whether each line matched the pattern, and passes the time.
///
/// With `match: after`, a line that is a continuation (it matched, or with `negate` it did not) is appended to the
/// record before it; any other line starts a record. With `match: before`, a line that is a continuation is
/// followed by the next line in its record; any other line ends its record. Lines are joined with `\n`.
///
/// - A record never holds more than `maxLines` lines or `maxBytes` bytes (joined): the line that would pass
///   either starts a new record (counted in ``cutRecords``). Unlike Filebeat, which drops the lines past its
///   limit, no byte is lost. (The caller keeps lines within `maxBytes` with the line splitter's maximum.)
/// - The record under way is held until a line shows it is complete, or until no line came for `timeout`
///   (``tick(now:_:)``), or until ``flush(_:)``.
/// - ``pendingStart`` is where the record under way starts in the file: a reader commits no further, so that a
///   crash never commits half a stack trace.
struct MultilineStateMachine: Sendable {
    struct Rules: Sendable, Hashable {
        var negate = false
        var match = Match.after
        var maxLines = 500
        var maxBytes = 10 << 20
        var timeout: Duration = .seconds(5)
    }

    /// Which way a continuation line joins.
    enum Match: String, Sendable, Hashable {
        /// A continuation joins the line before it.
        case after
        /// A continuation is followed, in its record, by the line after it.
        case before
    }

    /// One record: its lines joined with `\n`, and the file range they came from.
    struct Record: Sendable, Hashable {
        var body: ByteBuffer
        /// Where its first line starts.
        var start: Int64
        /// Where its last line ends, newline included.
        var end: Int64
        var lines: Int
    }

    private struct Pending {
        var body: ByteBuffer
        /// Whether `body` is a buffer of its own (two lines or more) rather than the first line's slice.
        var joined = false
        var start: Int64
        var end: Int64
        var lines = 1
    }

    let rules: Rules
    private var pending: Pending?
    /// Records ended because the next line would have passed `maxLines` or `maxBytes`.
    private(set) var cutRecords = 0
    /// When the last line came, and whether a line came since the clock was last read (``linesCame(at:)``). Held
    /// with a fixed layout (see `FixedInstant`): the machine is copied per line.
    private var lastLineAt = FixedInstant.processOrigin
    private var lineSinceClock = false

    init(rules: Rules) {
        precondition(rules.maxLines > 0 && rules.maxBytes > 0)
        self.rules = rules
    }

    /// Where the record under way starts (`nil`: none).
    var pendingStart: Int64? { self.pending?.start }
    /// When the record under way is flushed if no line comes.
    var deadline: ContinuousClock.Instant? {
        self.pending == nil ? nil : self.lastLineAt.instant + self.rules.timeout
    }

    /// The next line, from `start` to `end` in the file, at `now`; `matched`: whether it matched the pattern.
    /// Hands the records it completes to `emit`, in order.
    mutating func line(
        _ body: ByteBuffer,
        start: Int64,
        end: Int64,
        matched: Bool,
        now: ContinuousClock.Instant,
        _ emit: (Record) -> Void
    ) {
        self.line(body, start: start, end: end, matched: matched, emit)
        self.linesCame(at: now)
    }

    /// The next line, as ``line(_:start:end:matched:now:_:)``, for a reader that reads the clock once per read:
    /// the lines since are taken to have come at the time ``linesCame(at:)`` is given next (before any
    /// ``tick(now:_:)`` or ``deadline``).
    @inline(__always)
    mutating func line(
        _ body: ByteBuffer,
        start: Int64,
        end: Int64,
        matched: Bool,
        _ emit: (Record) -> Void
    ) {
        self.lineSinceClock = true
        let continuation = matched != self.rules.negate
        switch self.rules.match {
        case .after:
            if continuation, self.pending != nil, self.append(body, end: end, emit) { return }
            if let pending = self.pending { emit(Self.record(pending)) }
            self.pending = Pending(body: body, start: start, end: end)
        case .before:
            if self.pending == nil || !self.append(body, end: end, emit) {
                if let pending = self.pending { emit(Self.record(pending)) }
                self.pending = Pending(body: body, start: start, end: end)
            }
            if !continuation {
                emit(Self.record(self.pending!))
                self.pending = nil
            }
        }
    }

    /// The lines handed over since the last call came at `now`.
    mutating func linesCame(at now: ContinuousClock.Instant) {
        guard self.lineSinceClock else { return }
        self.lineSinceClock = false
        self.lastLineAt = FixedInstant(now)
    }

    /// The file has not been written since `instant`: the lines handed over came then at the latest, so a record
    /// under way of a file quiet for the timeout is complete now, not a timeout after it was read (`--once` over
    /// old files, an agent catching up).
    mutating func fileQuiet(since instant: ContinuousClock.Instant) {
        self.lastLineAt = min(self.lastLineAt, FixedInstant(instant))
    }

    /// Flushes the record under way if no line came for the timeout.
    mutating func tick(now: ContinuousClock.Instant, _ emit: (Record) -> Void) {
        self.linesCame(at: now)
        if let deadline = self.deadline, now >= deadline { self.flush(emit) }
    }

    /// Hands over the record under way, complete or not.
    mutating func flush(_ emit: (Record) -> Void) {
        guard let pending = self.pending else { return }
        self.pending = nil
        emit(Self.record(pending))
    }

    /// Forgets the record under way (the file is read again from its start).
    mutating func reset() {
        self.pending = nil
    }

    /// Appends `body` to the record under way; `false` (and the record is emitted, cut) when it would pass a limit.
    private mutating func append(_ body: ByteBuffer, end: Int64, _ emit: (Record) -> Void) -> Bool {
        var pending = self.pending!
        guard pending.lines < self.rules.maxLines, pending.body.readableBytes + 1 + body.readableBytes <= self.rules.maxBytes else {
            self.cutRecords += 1
            emit(Self.record(pending))
            self.pending = nil
            return false
        }
        self.pending = nil  // one owner of the buffer while it grows
        if !pending.joined {
            var joined = ByteBufferAllocator().buffer(capacity: max(pending.body.readableBytes * 4, 1024))
            joined.writeImmutableBuffer(pending.body)
            pending.body = joined
            pending.joined = true
        }
        pending.body.writeInteger(UInt8(ascii: "\n"))
        pending.body.writeImmutableBuffer(body)
        pending.end = end
        pending.lines += 1
        self.pending = pending
        return true
    }

    private static func record(_ pending: Pending) -> Record {
        Record(body: pending.body, start: pending.start, end: pending.end, lines: pending.lines)
    }
}

