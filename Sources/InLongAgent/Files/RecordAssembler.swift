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
    /// Whether there are include or exclude patterns.
    private let filters: Bool
    /// The filters' verdicts on the last two lines, by where they start (with multiline and filters).
    private var currentLine: (start: Int64, kept: Bool) = (-1, false)
    private var previousLine: (start: Int64, kept: Bool) = (-1, false)

    init(_ rules: Rules) {
        self.pattern = rules.multiline?.pattern
        self.machine = rules.multiline.map { MultilineStateMachine(rules: $0.rules) }
        self.include = rules.include
        self.exclude = rules.exclude
        self.keepsOffsets = rules.offsets
        self.filters = !rules.include.isEmpty || !rules.exclude.isEmpty
    }

    /// Records cut at the multiline limits.
    var cutRecords: Int { self.machine?.cutRecords ?? 0 }
    /// Where the multiline record under way starts: what is before it may be committed, nothing after.
    var pendingStart: Int64? { self.machine?.pendingStart }
    /// When the record under way is flushed if no line comes.
    var deadline: ContinuousClock.Instant? { self.machine?.deadline }

    /// The next line of the file, with its bytes (valid during the call); the records it completes that the filters
    /// keep go to `records` (and their start offsets to `offsets`, when kept). The lines of a read come at the time
    /// ``linesCame(at:)`` is given after it.
    @inline(__always)
    mutating func line(_ body: ByteBuffer, bytes: UnsafeRawBufferPointer, start: Int64, end: Int64, into records: inout [ByteBuffer], offsets: inout [Int64]) {
        guard let pattern = self.pattern else {
            if self.keeps(bytes) {
                records.append(body)
                if self.keepsOffsets { offsets.append(start) }
            } else {
                self.filteredRecords += 1
            }
            return
        }
        // A record of one line is judged by the filters from the bytes seen here: the records a line completes are
        // one line long and that line (`.before`), or the line before (`.after`, or a record cut at a limit).
        if self.filters {
            self.previousLine = self.currentLine
            self.currentLine = (start, self.keeps(bytes))
        }
        let matched = pattern.matches(bytes)
        // A line completes at most two records (a record cut at a limit, then the one it ends). Gathered apart and
        // kept after, so that the machine is changed in place while its record grows.
        var first: MultilineStateMachine.Record?
        var second: MultilineStateMachine.Record?
        self.machine!.line(body, start: start, end: end, matched: matched) { record in
            if first == nil {
                first = record
            } else {
                precondition(second == nil, "a line completed more than two records")
                second = record
            }
        }
        if let first { self.keep(first, &records, &offsets) }
        if let second { self.keep(second, &records, &offsets) }
    }

    /// The lines of the read that just ended came at `now`.
    mutating func linesCame(at now: ContinuousClock.Instant) {
        self.machine?.linesCame(at: now)
    }

    /// The file has not been written since `instant` (``MultilineStateMachine/fileQuiet(since:)``).
    mutating func fileQuiet(since instant: ContinuousClock.Instant) {
        self.machine?.fileQuiet(since: instant)
    }

    /// Flushes the multiline record under way if no line came for its timeout.
    mutating func tick(now: ContinuousClock.Instant, into records: inout [ByteBuffer], offsets: inout [Int64]) {
        guard var machine = self.machine.take() else { return }
        machine.tick(now: now) { self.keep($0, &records, &offsets) }
        self.machine = machine
    }

    /// Forgets the record under way (the file is read again from its start).
    mutating func reset() {
        self.machine?.reset()
        self.currentLine = (-1, false)
        self.previousLine = (-1, false)
    }

    /// Keeps or drops a multiline record: judged from its line's bytes when it is the current or the last line
    /// alone, else read through its buffer.
    @inline(__always)
    private mutating func keep(_ record: MultilineStateMachine.Record, _ records: inout [ByteBuffer], _ offsets: inout [Int64]) {
        let kept: Bool
        if !self.filters {
            kept = true
        } else if record.lines == 1, record.start == self.currentLine.start {
            kept = self.currentLine.kept
        } else if record.lines == 1, record.start == self.previousLine.start {
            kept = self.previousLine.kept
        } else {
            kept = record.body.withUnsafeReadableBytes { self.keeps($0) }
        }
        guard kept else {
            self.filteredRecords += 1
            return
        }
        records.append(record.body)
        if self.keepsOffsets { offsets.append(record.start) }
    }

    /// Whether the include and exclude patterns keep a record of these bytes.
    @inline(__always)
    private func keeps(_ bytes: UnsafeRawBufferPointer) -> Bool {
        (self.include.isEmpty || LineMatcher.any(self.include, bytes)) && (self.exclude.isEmpty || !LineMatcher.any(self.exclude, bytes))
    }
}
