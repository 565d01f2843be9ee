import Histogram
import Foundation
public import InLongTransport
import Synchronization

/// A snapshot of a client's counters.
public struct DataProxyClientStatistics: Sendable, Hashable {
    /// Records accepted by `send`.
    public var accepted = 0
    /// Records written to a proxy (each attempt counts).
    public var sent = 0
    /// Records acked.
    public var acked = 0
    /// Records reported failed.
    public var failed = 0
    /// Batch retries.
    public var retries = 0
    /// Records refused as too large.
    public var tooLarge = 0
    /// `send` calls refused or suspended because the buffer was full.
    public var bufferFull = 0
    /// Batches written.
    public var batchesSent = 0
    /// Frame bytes written.
    public var bytesSent = 0
    /// Bytes of records held now (batching, queued, in flight).
    public var heldBytes = 0
    /// Records held now.
    public var heldRecords = 0
    /// Batches in flight or waiting to retry now.
    public var inFlightBatches = 0
    /// Records that ended and whose reports some ``DataProxyClient/deliveryReports()`` reader has not taken
    /// yet: they still count against the buffer's quota.
    public var reportHeldRecords = 0
    /// Ack latency, median, over the client's life.
    public var ackLatencyP50: Duration?
    /// Ack latency, 99th percentile.
    public var ackLatencyP99: Duration?
    /// Failed records by reason: the error's code, and for a close or a deadline what the last attempt failed
    /// with (`shutDown after connectionLost`).
    public var failures: [String: Int] = [:]
    /// Failed records that no proxy can have stored (``DataProxyError/Persistence/notSent``): resending them
    /// cannot duplicate them.
    public var failedNotSent = 0
    /// Failed records a proxy may have stored (``DataProxyError/Persistence/possiblySent``).
    public var failedPossiblySent = 0
    /// The load each connected proxy reports in heartbeat replies, smoothed, for those that report one.
    public var proxyLoads: [Endpoint: Int] = [:]
    /// Proxies avoided now after consecutive failures.
    public var avoidedProxies: Set<Endpoint> = []
    /// Proxies with a connection ready now.
    public var readyProxies = 0
    /// Those proxies' addresses.
    public var reachableProxies: Set<Endpoint> = []
    /// Requests the proxies answered, acks and error replies alike, over the connections open now: it grows while
    /// a proxy answers at all, even when it refuses and records wait to be retried.
    public var answeredRequests = 0
    /// Why each proxy without a ready connection could not be reached (address and cause).
    public var proxyErrors: [Endpoint: String] = [:]
    /// Why the Manager could not give proxies, while some group has none.
    public var discoveryError: String?
    /// Bytes in the spool's segment files now (with ``DataProxyClient/Configuration/spool``).
    public var spoolBytes = 0
    /// The spool's segment files now.
    public var spoolSegments = 0
    /// Records a previous client left in the spool and this one sent again.
    public var replayedRecords = 0
    /// Records accepted while the memory quota was full, on disk only now, waiting for room in memory.
    public var spilledRecords = 0

    public init() {}
}

/// Ack latencies with real quantiles (HdrHistogram, two significant digits, 1 µs to an hour), not bucket
/// bounds.
struct LatencyHistogram: Sendable {
    private var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .two)

    mutating func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let micros = max(seconds, 0) * 1_000_000 + attoseconds / 1_000_000_000_000
        _ = self.histogram.record(UInt64(min(max(micros, 1), 3_600_000_000)))
    }

    /// The latency at `quantile` (0 to 1), within 1 % (two digits: a quantile walks an eighth of the counts that
    /// three would, and snapshots are polled).
    func value(at quantile: Double) -> Duration? {
        guard self.histogram.totalCount > 0 else { return nil }
        return .microseconds(Int64(self.histogram.valueAtPercentile(quantile * 100)))
    }
}

/// The one path of the client's events: each call counts for ``DataProxyClient/statistics()`` and tells the
/// observability delegate (swift-metrics by default).
final class ClientObservation: Sendable {
    private let delegate: (any DataProxyClientObservabilityDelegate)?
    private let accepted = Atomic<Int>(0)
    private let sent = Atomic<Int>(0)
    private let acked = Atomic<Int>(0)
    private let failed = Atomic<Int>(0)
    private let failedNotSent = Atomic<Int>(0)
    private let failedPossiblySent = Atomic<Int>(0)
    private let retries = Atomic<Int>(0)
    private let tooLarge = Atomic<Int>(0)
    private let bufferFull = Atomic<Int>(0)
    private let batchesSent = Atomic<Int>(0)
    private let bytesSent = Atomic<Int>(0)
    private let replayed = Atomic<Int>(0)
    /// The spool's bytes and segments last told to the delegate, packed (-1: never told).
    private let lastSpool = Atomic<Int>(-1)
    /// What atomics cannot count, behind the observation's one lock (``withCounted(_:)``).
    private let counted = Mutex(Counted())

    private struct Counted {
        var latency = LatencyHistogram()
        var failures: [String: Int] = [:]
    }

    /// `nil` for no delegate at all (nothing is called).
    init(delegate: (any DataProxyClientObservabilityDelegate)?) {
        self.delegate = delegate
    }

    /// The delegate a configuration asks for: its own, else swift-metrics over its factory or a bootstrapped
    /// `MetricsSystem`, else none.
    static func delegate(for configuration: DataProxyClient.Configuration) -> (any DataProxyClientObservabilityDelegate)? {
        if let delegate = configuration.observabilityDelegate { return delegate }
        return metricsFactoryInUse(configuration.metricsFactory).map { DataProxyClientMetrics(factory: $0) }
    }

    /// Records taken by `send`. The delegate hears of them with their batch (``batchQueued(_:records:bytes:)``),
    /// which keeps the per-record path to one atomic add.
    func recordsAccepted(_ count: Int) {
        self.accepted.add(count, ordering: .relaxed)
    }

    func recordsReplayed(_ count: Int) {
        self.replayed.add(count, ordering: .relaxed)
        self.delegate?.recordsReplayed(count)
    }

    /// The spool's size, told to the delegate when it changed since the last time (the client's clock calls it).
    func spoolObserved(bytes: Int, segments: Int) {
        let last = self.lastSpool.exchange(bytes << 20 | min(segments, (1 << 20) - 1), ordering: .relaxed)
        guard last != bytes << 20 | min(segments, (1 << 20) - 1) else { return }
        self.delegate?.spoolChanged(bytes: bytes, segments: segments)
    }

    func batchQueued(_ key: BatchKey, records: Int, bytes: Int) {
        self.delegate?.batchQueued(group: key.group, stream: key.stream, records: records, bytes: bytes)
    }

    func batchSent(_ key: BatchKey, records: Int, frameBytes: Int, proxy: Endpoint) {
        self.sent.add(records, ordering: .relaxed)
        self.batchesSent.add(1, ordering: .relaxed)
        self.bytesSent.add(frameBytes, ordering: .relaxed)
        self.delegate?.batchSent(group: key.group, stream: key.stream, records: records, frameBytes: frameBytes, proxy: proxy)
    }

    func batchAnswered(_ key: BatchKey) {
        self.delegate?.batchAnswered(group: key.group, stream: key.stream)
    }

    func batchRetried(_ key: BatchKey, attempt: Int, error: DataProxyError) {
        self.retries.add(1, ordering: .relaxed)
        self.delegate?.batchRetried(group: key.group, stream: key.stream, attempt: attempt, error: error)
    }

    func batchAcked(_ key: BatchKey, records: Int, bytes: Int, latency: Duration) {
        self.acked.add(records, ordering: .relaxed)
        self.withCounted { $0.latency.record(latency) }
        self.delegate?.batchAcked(group: key.group, stream: key.stream, records: records, bytes: bytes, latency: latency)
    }

    func batchFailed(_ key: BatchKey, records: Int, bytes: Int, error: DataProxyError) {
        self.failed.add(records, ordering: .relaxed)
        // `shutDown after connectionLost`: what ended the records, and why they were not acked before.
        let reason = error.lastFailure.map { "\(error.code) after \($0)" } ?? error.code.description
        self.withCounted { $0.failures[reason, default: 0] += records }
        switch error.persistence {
        case .notSent: self.failedNotSent.add(records, ordering: .relaxed)
        case .possiblySent: self.failedPossiblySent.add(records, ordering: .relaxed)
        case .acked: break
        }
        self.delegate?.batchFailed(group: key.group, stream: key.stream, records: records, bytes: bytes, error: error)
    }

    func recordTooLarge(_ key: BatchKey, bytes: Int) {
        self.tooLarge.add(1, ordering: .relaxed)
        self.delegate?.recordTooLarge(group: key.group, stream: key.stream, bytes: bytes)
    }

    func bufferFull(_ key: BatchKey) {
        self.bufferFull.add(1, ordering: .relaxed)
        self.delegate?.bufferFull(group: key.group, stream: key.stream)
    }

    /// Called under the client's lock, so that reports reach the delegate in order.
    func heldBytesChanged(_ bytes: Int) {
        self.delegate?.heldBytesChanged(to: bytes)
    }

    /// Fills in the counted part of a snapshot.
    func counted(into statistics: inout DataProxyClientStatistics) {
        statistics.accepted = self.accepted.load(ordering: .relaxed)
        statistics.sent = self.sent.load(ordering: .relaxed)
        statistics.acked = self.acked.load(ordering: .relaxed)
        statistics.failed = self.failed.load(ordering: .relaxed)
        statistics.retries = self.retries.load(ordering: .relaxed)
        statistics.tooLarge = self.tooLarge.load(ordering: .relaxed)
        statistics.bufferFull = self.bufferFull.load(ordering: .relaxed)
        statistics.batchesSent = self.batchesSent.load(ordering: .relaxed)
        statistics.bytesSent = self.bytesSent.load(ordering: .relaxed)
        statistics.failedNotSent = self.failedNotSent.load(ordering: .relaxed)
        statistics.failedPossiblySent = self.failedPossiblySent.load(ordering: .relaxed)
        statistics.replayedRecords = self.replayed.load(ordering: .relaxed)
        let counted = self.withCounted { $0 }
        statistics.failures = counted.failures
        statistics.ackLatencyP50 = counted.latency.value(at: 0.5)
        statistics.ackLatencyP99 = counted.latency.value(at: 0.99)
    }

    /// The observation's one lock site.
    private func withCounted<Value>(_ body: (inout Counted) -> Value) -> Value {
        self.counted.withLock { body(&$0) }
    }
}
