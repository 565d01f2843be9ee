import NIOCore

/// What a file's lines go through before they are records, when a source asks for more than lines: joined into
/// multiline records (``MultilineStateMachine``), then kept or dropped by the include and exclude patterns, with
/// each record's start offset when the source adds it as an attribute. One per file; a file without any of these
/// has none, and its lines go straight from the splitter to the sink.
///
/// Filters apply after multiline (as Filebeat's `include_lines` and `exclude_lines`): a stack trace is kept or
/// dropped whole, by a pattern that may match any of its lines.
struct RecordAssembler {
    /// The compiled rules of one source.
    struct Rules {
        var multiline: (pattern: LineMatcher, rules: MultilineStateMachine.Rules)?
        /// A record is kept only if one of these matches (none: every record).
        var include: [LineMatcher] = []
        /// A record is dropped if one of these matches.
        var exclude: [LineMatcher] = []
        /// Whether records carry their start offset.
        var offsets = false
    }

    private let pattern: LineMatcher?
    private var machine: MultilineStateMachine?
    private let include: [LineMatcher]
    private let exclude: [LineMatcher]
    let keepsOffsets: Bool
    /// Records dropped by the filters.
    private(set) var filteredRecords = 0

    init(_ rules: Rules) {
        self.pattern = rules.multiline?.pattern
        self.machine = rules.multiline.map { MultilineStateMachine(rules: $0.rules) }
        self.include = rules.include
        self.exclude = rules.exclude
        self.keepsOffsets = rules.offsets
    }

    /// Records cut at the multiline limits.
    var cutRecords: Int { self.machine?.cutRecords ?? 0 }
    /// Where the multiline record under way starts: what is before it may be committed, nothing after.
    var pendingStart: Int64? { self.machine?.pendingStart }
    /// When the record under way is flushed if no line comes.
    var deadline: ContinuousClock.Instant? { self.machine?.deadline }

    /// The next line of the file; the records it completes that the filters keep go to `records` (and their start
    /// offsets to `offsets`, when kept). The lines of a read come at the time ``linesCame(at:)`` is given after it.
    @inline(__always)
    mutating func line(_ body: ByteBuffer, start: Int64, end: Int64, into records: inout [ByteBuffer], offsets: inout [Int64]) {
        if let pattern = self.pattern {
            let matched = pattern.matches(body)
            // Moved out and back, so that the machine has one owner while its record grows.
            var machine = self.machine.take()!
            machine.line(body, start: start, end: end, matched: matched) { self.keep($0.body, start: $0.start, &records, &offsets) }
            self.machine = machine
            return
        }
        self.keep(body, start: start, &records, &offsets)
    }

    /// The lines of the read that just ended came at `now`.
    mutating func linesCame(at now: ContinuousClock.Instant) {
        self.machine?.linesCame(at: now)
    }

    /// Flushes the multiline record under way if no line came for its timeout.
    mutating func tick(now: ContinuousClock.Instant, into records: inout [ByteBuffer], offsets: inout [Int64]) {
        guard var machine = self.machine.take() else { return }
        machine.tick(now: now) { self.keep($0.body, start: $0.start, &records, &offsets) }
        self.machine = machine
    }

    /// Forgets the record under way (the file is read again from its start).
    mutating func reset() {
        self.machine?.reset()
    }

    @inline(__always)
    private mutating func keep(_ body: ByteBuffer, start: Int64, _ records: inout [ByteBuffer], _ offsets: inout [Int64]) {
        if (!self.include.isEmpty && !LineMatcher.any(self.include, body)) || (!self.exclude.isEmpty && LineMatcher.any(self.exclude, body)) {
            self.filteredRecords += 1
            return
        }
        records.append(body)
        if self.keepsOffsets { offsets.append(start) }
    }
}
