import Synchronization

/// A snapshot of a connection's (or a pool's) counters.
public struct PersistentConnectionStatistics: Hashable, Sendable {
    /// Successful connects.
    public var connects = 0
    /// Failed connect attempts.
    public var connectFailures = 0
    /// Why the last attempt to connect failed (endpoint and cause), until a connection is made.
    public var lastConnectError: String?
    /// Disconnects by reason (`closedByPeer`, `heartbeatTimeout`, `unresponsive`, `protocolViolation`, `idle`,
    /// `error`, `local`).
    public var disconnects: [String: Int] = [:]
    public var framesOut = 0
    public var framesIn = 0
    public var bytesOut = 0
    public var bytesIn = 0
    /// Requests answered by a response.
    public var requestsSucceeded = 0
    /// Requests failed for any reason other than a timeout.
    public var requestsFailed = 0
    /// Requests failed with ``TransportError/Code/requestTimeout``: unanswered within their timeout after being
    /// written, or never written within the queue timeout.
    public var requestsTimedOut = 0
    /// Requests awaiting a response now.
    public var inFlight = 0
    /// Frames the peer sent on its own that no handler took: there is no inbound request handler, or it has
    /// stopped.
    public var unsolicitedDropped = 0
    /// Times the receive buffer was discarded after bytes that were not a valid frame
    /// (``PersistentConnection/Configuration/FramingErrorPolicy/discardBuffer``).
    public var receiveBuffersDiscarded = 0
    /// The last heartbeat round-trip time.
    public var lastHeartbeatRTT: Duration?
    /// The load the peer reports in heartbeat replies, smoothed over recent replies (higher is busier), or `nil`
    /// when it reports none; see ``FrameCodec/reportedLoad(in:)``. A pool's total keeps the highest.
    public var reportedLoad: Int?

    public init() {}

    /// Adds another snapshot's counters (in-flight included); keeps the newest RTT.
    public mutating func add(_ other: PersistentConnectionStatistics) {
        self.connects += other.connects
        self.connectFailures += other.connectFailures
        self.lastConnectError = self.lastConnectError ?? other.lastConnectError
        self.disconnects.merge(other.disconnects, uniquingKeysWith: +)
        self.framesOut += other.framesOut
        self.framesIn += other.framesIn
        self.bytesOut += other.bytesOut
        self.bytesIn += other.bytesIn
        self.requestsSucceeded += other.requestsSucceeded
        self.requestsFailed += other.requestsFailed
        self.requestsTimedOut += other.requestsTimedOut
        self.inFlight += other.inFlight
        self.unsolicitedDropped += other.unsolicitedDropped
        self.receiveBuffersDiscarded += other.receiveBuffersDiscarded
        self.lastHeartbeatRTT = other.lastHeartbeatRTT ?? self.lastHeartbeatRTT
        if let load = other.reportedLoad { self.reportedLoad = max(self.reportedLoad ?? load, load) }
    }
}

/// Live counters, written from the event loop and read from anywhere. Plain counters are atomics; the rest (the
/// last connect error's text, disconnects by reason) changes once per connect or close, behind one lock.
final class StatisticsCounters: Sendable {
    let connects = Atomic<Int>(0)
    let connectFailures = Atomic<Int>(0)
    let framesOut = Atomic<Int>(0)
    let framesIn = Atomic<Int>(0)
    let bytesOut = Atomic<Int>(0)
    let bytesIn = Atomic<Int>(0)
    let requestsSucceeded = Atomic<Int>(0)
    let requestsFailed = Atomic<Int>(0)
    let requestsTimedOut = Atomic<Int>(0)
    let inFlight = Atomic<Int>(0)
    let unsolicitedDropped = Atomic<Int>(0)
    let receiveBuffersDiscarded = Atomic<Int>(0)
    let lastHeartbeatRTTNanoseconds = Atomic<Int>(-1)
    /// `Int.min` when unknown.
    let reportedLoad = Atomic<Int>(.min)
    private let outcomes = Mutex(ConnectionOutcomes())

    /// A connect succeeded: the last error is forgotten.
    func connected() {
        self.connects.add(1, ordering: .relaxed)
        self.withOutcomes { $0.lastConnectError = nil }
    }

    /// A connect failed; returns whether it is the first since the last connect (or the start).
    func connectFailed(_ failure: TransportError) -> Bool {
        self.connectFailures.add(1, ordering: .relaxed)
        let description = "\(failure)"
        return self.withOutcomes { $0.connectFailed(description) }
    }

    func disconnected(reason: String) {
        self.withOutcomes { $0.disconnects[reason, default: 0] += 1 }
    }

    func snapshot() -> PersistentConnectionStatistics {
        var s = PersistentConnectionStatistics()
        s.connects = self.connects.load(ordering: .relaxed)
        s.connectFailures = self.connectFailures.load(ordering: .relaxed)
        (s.lastConnectError, s.disconnects) = self.withOutcomes { ($0.lastConnectError, $0.disconnects) }
        s.framesOut = self.framesOut.load(ordering: .relaxed)
        s.framesIn = self.framesIn.load(ordering: .relaxed)
        s.bytesOut = self.bytesOut.load(ordering: .relaxed)
        s.bytesIn = self.bytesIn.load(ordering: .relaxed)
        s.requestsSucceeded = self.requestsSucceeded.load(ordering: .relaxed)
        s.requestsFailed = self.requestsFailed.load(ordering: .relaxed)
        s.requestsTimedOut = self.requestsTimedOut.load(ordering: .relaxed)
        s.inFlight = self.inFlight.load(ordering: .relaxed)
        s.unsolicitedDropped = self.unsolicitedDropped.load(ordering: .relaxed)
        s.receiveBuffersDiscarded = self.receiveBuffersDiscarded.load(ordering: .relaxed)
        let rtt = self.lastHeartbeatRTTNanoseconds.load(ordering: .relaxed)
        s.lastHeartbeatRTT = rtt >= 0 ? .nanoseconds(rtt) : nil
        let load = self.reportedLoad.load(ordering: .relaxed)
        s.reportedLoad = load == .min ? nil : load
        return s
    }

    private func withOutcomes<Value: Sendable>(_ body: (inout ConnectionOutcomes) -> Value) -> Value {
        self.outcomes.withLock { body(&$0) }
    }
}

/// How connects and connections ended: what is not a plain counter.
private struct ConnectionOutcomes {
    var lastConnectError: String?
    var disconnects: [String: Int] = [:]

    /// Whether this failure is the first since the last connect (or the start): the one an operator is told of at
    /// warning, the retries that follow at debug.
    mutating func connectFailed(_ description: String) -> Bool {
        defer { self.lastConnectError = description }
        return self.lastConnectError == nil
    }
}
