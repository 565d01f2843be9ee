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
    /// Lines sent again after a retriable failure.
    public var resent = 0
    /// Empty lines skipped, lines over the maximum length, files truncated in place.
    public var emptyLines = 0
    public var overlongLines = 0
    public var truncations = 0
    /// Checkpoints written, and the last write's error, if it failed.
    public var checkpointsWritten = 0
    public var checkpointError: String?
}

/// The agent's counters, shared by its instances.
final class AgentCounters: Sendable {
    let filesOpened = Atomic(0)
    let filesReleased = Atomic(0)
    let linesRead = Atomic(0)
    let bytesRead = Atomic(0)
    let linesAcked = Atomic(0)
    let bytesAcked = Atomic(0)
    let deadLettered = Atomic(0)
    let resent = Atomic(0)
    let checkpointsWritten = Atomic(0)
    let checkpointError = Mutex<String?>(nil)

    let readBytesCounter: Counter
    let ackedBytesCounter: Counter
    let readLinesCounter: Counter
    let ackedLinesCounter: Counter

    init(factory: any MetricsFactory) {
        self.readBytesCounter = Counter(label: "inlong.agent.read.bytes", factory: factory)
        self.ackedBytesCounter = Counter(label: "inlong.agent.acked.bytes", factory: factory)
        self.readLinesCounter = Counter(label: "inlong.agent.read.lines", factory: factory)
        self.ackedLinesCounter = Counter(label: "inlong.agent.acked.lines", factory: factory)
    }

    func read(lines: Int, bytes: Int) {
        self.linesRead.add(lines, ordering: .relaxed)
        self.bytesRead.add(bytes, ordering: .relaxed)
        self.readLinesCounter.increment(by: lines)
        self.readBytesCounter.increment(by: bytes)
    }

    func acked(bytes: Int) {
        self.bytesAcked.add(bytes, ordering: .relaxed)
        self.ackedBytesCounter.increment(by: bytes)
    }
}

/// Stop requests, shared by the agent and its instances.
final class AgentControl: Sendable {
    private let state = Mutex<ContinuousClock.Instant?>(nil)

    /// When a graceful stop was asked for and what was read gets until when to be acked.
    func stop(deadline: ContinuousClock.Instant) {
        self.state.withLock { if $0 == nil { $0 = deadline } }
    }

    var isStopping: Bool { self.state.withLock { $0 != nil } }
    var deadline: ContinuousClock.Instant? { self.state.withLock { $0 } }

    /// Sleeps for `duration`, or less when a stop is asked for meanwhile.
    func sleep(for duration: Duration) async {
        let until = ContinuousClock.now + duration
        while !self.isStopping, !Task.isCancelled, ContinuousClock.now < until {
            try? await Task.sleep(for: min(until - .now, .milliseconds(50)))
        }
    }

    /// Returns once a stop was asked for and its deadline passed (or the task is cancelled).
    func waitForStopDeadline() async {
        while !Task.isCancelled {
            if let deadline = self.deadline, ContinuousClock.now >= deadline { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}
