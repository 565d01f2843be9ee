import CoreMetrics
import Synchronization

/// What the agent did so far.
public struct AgentStatistics: Sendable, Hashable {
    /// Files being read now.
    public var openFiles = 0
    /// Files found that wait for a slot (more match than ``AgentConfiguration/maxOpenFiles``).
    public var filesWaiting = 0
    /// Scans of the sources' paths so far.
    public var scans = 0
    /// Files opened and released (renamed away or deleted, then drained) since start.
    public var filesOpened = 0
    public var filesReleased = 0
    /// Files closed because they did not grow for their source's `closeInactive` (opened again when they grow).
    public var filesClosedInactive = 0
    /// Complete lines read, and their bytes (newlines included).
    public var linesRead = 0
    public var bytesRead = 0
    /// Lines acked by a proxy, and the bytes of reads whose every line ended (committed, or about to be).
    public var linesAcked = 0
    public var bytesAcked = 0
    /// Bytes in the files past their committed offsets: what a restart would read again, plus what is unread.
    public var lagBytes: Int64 = 0
    /// Bytes in the files not read yet (a last line without its newline counts as read: it waits for the rest).
    public var unreadBytes: Int64 = 0
    /// Lines set aside in the dead-letter file (refused for good by a proxy, or larger than a frame).
    public var deadLettered = 0
    /// Lines a dead-letter write failed for: they stay pending (the offset does not pass them) and are tried again.
    public var deadLetterFailures = 0
    /// Lines sent again after a retriable failure.
    public var resent = 0
    /// Reads that failed (an I/O error, logged with the file and cause); the file is read again later.
    public var readErrors = 0
    /// Empty lines skipped, lines over the maximum length, files truncated in place.
    public var emptyLines = 0
    public var overlongLines = 0
    public var truncations = 0
    /// Multiline records cut at their source's `maxLines` or `maxBytes` (the rest went on in a new record).
    public var cutRecords = 0
    /// Records the source's `include` or `exclude` patterns left out.
    public var filteredRecords = 0
    /// Checkpoints written, and the last write's error, if it failed.
    public var checkpointsWritten = 0
    public var checkpointError: String?
    /// Per group (each is sent through its own client, within its own share of the budgets), by name.
    public var groups: [AgentGroupStatistics] = []
    /// Per source and listener, by name (``AgentConfiguration/FileSource/metricsName``,
    /// ``AgentConfiguration/Listener/metricsName``): those that ran since the agent started.
    public var sources: [AgentSourceStatistics] = []

    /// Groups whose lines wait and of which none ended for a while.
    public var stalledGroups: [AgentGroupStatistics] { self.groups.filter { $0.stalledFor != nil } }
}

/// What the agent did for one group.
public struct AgentGroupStatistics: Sendable, Hashable {
    public var group: String
    /// Lines read, and lines that ended: acked, or set aside in the dead-letter file.
    public var linesRead = 0
    public var linesEnded = 0
    /// Bytes of reads not yet acked.
    public var bytesWaiting = 0
    /// How long no line of the group ended while some waited (past the agent's stall threshold); `nil` while it
    /// moves.
    public var stalledFor: Duration?
    /// Why its proxies do not take the lines, when that is known: the proxies and their errors, or the discovery
    /// error.
    public var proxyProblem: String?

    public init(group: String) {
        self.group = group
    }

    public var linesWaiting: Int { max(0, self.linesRead - self.linesEnded) }
}

/// What the agent did for one source (a file source, or a listener) since it started.
public struct AgentSourceStatistics: Sendable, Hashable {
    /// The source's metrics name.
    public var name: String
    /// `file`, `syslog` or `lines`.
    public var type: String
    public var group: String
    public var stream: String
    /// Records (lines, multiline records, messages) read, and the source's bytes they cover.
    public var recordsRead = 0
    public var bytesRead = 0
    /// Records acked by a proxy, and the bytes of reads whose every record ended.
    public var recordsAcked = 0
    public var bytesAcked = 0
    /// Records set aside in the dead-letter file, and records sent again.
    public var deadLettered = 0
    public var resent = 0
    /// Reads that failed (files).
    public var readErrors = 0
    /// Messages a listener received (queued for sending).
    public var received = 0
    /// UDP datagrams a listener dropped (its queue full, or too long).
    public var dropped = 0
    /// Multiline records cut at their limits (files), messages cut at the maximum length (listeners).
    public var cutRecords = 0
    /// Records the filters left out, and lines over the maximum length (files).
    public var filteredRecords = 0
    public var overlongLines = 0
    /// Times a listener's TCP connection stopped being read because its queue was full (its sender waited).
    public var pauses = 0
    /// Times reading waited for the source's rate limit.
    public var rateLimitWaits = 0
    /// Files the source has open now, and their bytes past their committed offsets.
    public var openFiles = 0
    public var lagBytes: Int64 = 0

    public init(name: String, type: String, group: String, stream: String) {
        self.name = name
        self.type = type
        self.group = group
        self.stream = stream
    }
}

/// The agent's counters, shared by its instances.
final class AgentCounters: Sendable {
    let filesOpened = Atomic(0)
    let filesReleased = Atomic(0)
    let filesClosedInactive = Atomic(0)
    let linesRead = Atomic(0)
    let bytesRead = Atomic(0)
    let linesAcked = Atomic(0)
    let bytesAcked = Atomic(0)
    let deadLettered = Atomic(0)
    let deadLetterFailures = Atomic(0)
    let resent = Atomic(0)
    let readErrors = Atomic(0)
    let checkpointsWritten = Atomic(0)
    let rateLimitWaits = Atomic(0)

    func read(lines: Int, bytes: Int) {
        self.linesRead.add(lines, ordering: .relaxed)
        self.bytesRead.add(bytes, ordering: .relaxed)
    }

    func acked(bytes: Int) {
        self.bytesAcked.add(bytes, ordering: .relaxed)
    }
}

/// The agent's statistics as swift-metrics instruments with Prometheus names, published from snapshots (on the
/// checkpoint tick and at the end), so that ``AgentStatistics`` is the one source and reading costs no metric
/// calls: counters `inlong_agent_{lines,bytes}_{read,acked}_total`, `inlong_agent_lines_dead_lettered_total`, `inlong_agent_dead_letter_failures_total`,
/// `inlong_agent_lines_resent_total`, `inlong_agent_files_{opened,released,closed_inactive}_total`,
/// `inlong_agent_checkpoints_written_total`, `inlong_agent_read_errors_total`; gauges `inlong_agent_open_files`, `inlong_agent_lag_bytes`,
/// `inlong_agent_unread_bytes`, `inlong_agent_stalled_groups`; and per source, labelled `source` (its metrics
/// name) and `type` (`file`, `syslog`, `lines`), the counters `inlong_agent_source_*_total` of
/// ``sourceCounters`` and the gauges `inlong_agent_source_open_files` and `inlong_agent_source_lag_bytes`.
final class AgentMetrics: Sendable {
    private let counters: [(any KeyPath<AgentStatistics, Int> & Sendable, Counter)]
    private let gauges: [(any KeyPath<AgentStatistics, Int64> & Sendable, Gauge)]
    private let openFiles: Gauge
    private let stalledGroups: Gauge
    private let published = Mutex(AgentStatistics())
    private let factory: any MetricsFactory
    /// Each source's instruments, made at its first snapshot.
    private let sourceInstruments = Mutex<[String: SourceInstruments]>([:])

    /// The per-source counters: `inlong_agent_source_<name>_total`.
    static let sourceCounters: [(name: String, value: any KeyPath<AgentSourceStatistics, Int> & Sendable)] = [
        ("records_read", \.recordsRead),
        ("bytes_read", \.bytesRead),
        ("records_acked", \.recordsAcked),
        ("bytes_acked", \.bytesAcked),
        ("records_dead_lettered", \.deadLettered),
        ("records_resent", \.resent),
        ("read_errors", \.readErrors),
        ("messages_received", \.received),
        ("messages_dropped", \.dropped),
        ("records_cut", \.cutRecords),
        ("records_filtered", \.filteredRecords),
        ("lines_overlong", \.overlongLines),
        ("pauses", \.pauses),
        ("rate_limit_waits", \.rateLimitWaits),
    ]

    private struct SourceInstruments: Sendable {
        var counters: [Counter]
        var openFiles: Gauge
        var lagBytes: Gauge
    }

    init(factory: any MetricsFactory) {
        self.factory = factory
        func counter(_ name: String) -> Counter { Counter(label: "inlong_agent_\(name)_total", factory: factory) }
        self.counters = [
            (\.linesRead, counter("lines_read")),
            (\.bytesRead, counter("bytes_read")),
            (\.linesAcked, counter("lines_acked")),
            (\.bytesAcked, counter("bytes_acked")),
            (\.deadLettered, counter("lines_dead_lettered")),
            (\.deadLetterFailures, counter("dead_letter_failures")),
            (\.resent, counter("lines_resent")),
            (\.filesOpened, counter("files_opened")),
            (\.filesReleased, counter("files_released")),
            (\.filesClosedInactive, counter("files_closed_inactive")),
            (\.checkpointsWritten, counter("checkpoints_written")),
            (\.readErrors, counter("read_errors")),
        ]
        self.gauges = [
            (\.lagBytes, Gauge(label: "inlong_agent_lag_bytes", factory: factory)),
            (\.unreadBytes, Gauge(label: "inlong_agent_unread_bytes", factory: factory)),
        ]
        self.openFiles = Gauge(label: "inlong_agent_open_files", factory: factory)
        self.stalledGroups = Gauge(label: "inlong_agent_stalled_groups", factory: factory)
    }

    /// Counters grow by what changed since the last snapshot published.
    func publish(_ statistics: AgentStatistics) {
        let previous = self.published.withLock { published in
            defer { published = statistics }
            return published
        }
        for (path, counter) in self.counters where statistics[keyPath: path] > previous[keyPath: path] {
            counter.increment(by: statistics[keyPath: path] - previous[keyPath: path])
        }
        for (path, gauge) in self.gauges { gauge.record(statistics[keyPath: path]) }
        self.openFiles.record(statistics.openFiles)
        self.stalledGroups.record(statistics.stalledGroups.count)
        let before = Dictionary(previous.sources.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for source in statistics.sources {
            let instruments = self.instruments(for: source)
            let old = before[source.name]
            for (index, counter) in Self.sourceCounters.enumerated() {
                let (now, then) = (source[keyPath: counter.value], old?[keyPath: counter.value] ?? 0)
                if now > then { instruments.counters[index].increment(by: now - then) }
            }
            instruments.openFiles.record(source.openFiles)
            instruments.lagBytes.record(source.lagBytes)
        }
    }

    private func instruments(for source: AgentSourceStatistics) -> SourceInstruments {
        self.sourceInstruments.withLock { instruments in
            if let made = instruments[source.name] { return made }
            let dimensions = [("source", source.name), ("type", source.type)]
            let made = SourceInstruments(
                counters: Self.sourceCounters.map { Counter(label: "inlong_agent_source_\($0.name)_total", dimensions: dimensions, factory: self.factory) },
                openFiles: Gauge(label: "inlong_agent_source_open_files", dimensions: dimensions, factory: self.factory),
                lagBytes: Gauge(label: "inlong_agent_source_lag_bytes", dimensions: dimensions, factory: self.factory)
            )
            instruments[source.name] = made
            return made
        }
    }
}
