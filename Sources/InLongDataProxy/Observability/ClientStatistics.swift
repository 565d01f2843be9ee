import Histogram
import Foundation
public import InLongTransport
import CoreMetrics
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
    /// Failed records by reason.
    public var failures: [String: Int] = [:]
    /// The load each connected proxy reports in heartbeat replies, smoothed, for those that report one.
    public var proxyLoads: [Endpoint: Int] = [:]
    /// Proxies avoided now after consecutive failures.
    public var avoidedProxies: Set<Endpoint> = []
    /// Proxies with a connection ready now.
    public var readyProxies = 0
    /// Why each proxy without a ready connection could not be reached (address and cause).
    public var proxyErrors: [Endpoint: String] = [:]
    /// Why the Manager could not give proxies, while some group has none.
    public var discoveryError: String?

    public init() {}
}

/// Ack latencies with real quantiles (HdrHistogram, three significant digits, 1 µs to an hour), not bucket
/// bounds.
struct LatencyHistogram: Sendable {
    private var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)

    mutating func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let micros = max(seconds, 0) * 1_000_000 + attoseconds / 1_000_000_000_000
        _ = self.histogram.record(UInt64(min(max(micros, 1), 3_600_000_000)))
    }

    /// The latency at `quantile` (0 to 1), within 0.1 %.
    func value(at quantile: Double) -> Duration? {
        guard self.histogram.totalCount > 0 else { return nil }
        return .microseconds(Int64(self.histogram.valueAtPercentile(quantile * 100)))
    }
}

/// The client's counters, mirrored to swift-metrics with (group, stream) dimensions.
final class ClientCounters: Sendable {
    let accepted = Atomic<Int>(0)
    let sent = Atomic<Int>(0)
    let acked = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let retries = Atomic<Int>(0)
    let tooLarge = Atomic<Int>(0)
    let bufferFull = Atomic<Int>(0)
    let batchesSent = Atomic<Int>(0)
    let bytesSent = Atomic<Int>(0)
    let latency = Mutex(LatencyHistogram())
    let failures = Mutex<[String: Int]>([:])
    private let factory: any MetricsFactory
    private let metrics = Mutex<[StreamKey: StreamMetrics]>([:])
    /// Bytes of records held (the quota in use), whatever their stream.
    let heldBytesGauge: Gauge

    init(factory: any MetricsFactory) {
        self.factory = factory
        self.heldBytesGauge = Gauge(label: "inlong.client.held.bytes", factory: factory)
    }

    struct StreamKey: Hashable {
        var group: String
        var stream: String
    }

    /// Metric objects for one (group, stream), created once and carried by its batches.
    final class StreamMetrics: Sendable {
        let accepted: Counter
        let sent: Counter
        let acked: Counter
        let retried: Counter
        let tooLarge: Counter
        let bufferFull: Counter
        let ackLatency: CoreMetrics.Timer
        private let queuedBytesGauge: Gauge
        private let inFlightGauge: Gauge
        private let queuedBytes = Atomic<Int>(0)
        private let inFlight = Atomic<Int>(0)
        private let failed = Mutex<[String: Counter]>([:])
        private let dimensions: [(String, String)]
        private let factory: any MetricsFactory

        init(group: String, stream: String, factory: any MetricsFactory) {
            let dimensions = [("group", group), ("stream", stream)]
            self.dimensions = dimensions
            self.factory = factory
            self.accepted = Counter(label: "inlong.client.records.accepted", dimensions: dimensions, factory: factory)
            self.sent = Counter(label: "inlong.client.records.sent", dimensions: dimensions, factory: factory)
            self.acked = Counter(label: "inlong.client.records.acked", dimensions: dimensions, factory: factory)
            self.retried = Counter(label: "inlong.client.batches.retried", dimensions: dimensions, factory: factory)
            self.tooLarge = Counter(label: "inlong.client.records.too_large", dimensions: dimensions, factory: factory)
            self.bufferFull = Counter(label: "inlong.client.buffer_full", dimensions: dimensions, factory: factory)
            self.ackLatency = CoreMetrics.Timer(
                label: "inlong.client.ack.latency",
                dimensions: dimensions,
                preferredDisplayUnit: .milliseconds,
                factory: factory
            )
            self.queuedBytesGauge = Gauge(label: "inlong.client.queued.bytes", dimensions: dimensions, factory: factory)
            self.inFlightGauge = Gauge(label: "inlong.client.batches.inflight", dimensions: dimensions, factory: factory)
        }

        /// The failed-records counter for `reason`, created once.
        func failed(reason: String) -> Counter {
            self.failed.withLock { counters in
                if let counter = counters[reason] { return counter }
                let counter = Counter(
                    label: "inlong.client.records.failed",
                    dimensions: self.dimensions + [("reason", reason)],
                    factory: self.factory
                )
                counters[reason] = counter
                return counter
            }
        }

        /// A sealed batch of `bytes` now waits to be sent, or ended (`bytes` negative).
        func queued(bytes: Int) {
            self.queuedBytesGauge.record(self.queuedBytes.add(bytes, ordering: .relaxed).newValue)
        }

        /// A batch was written (`+1`) or answered (`-1`).
        func inFlight(_ change: Int) {
            self.inFlightGauge.record(self.inFlight.add(change, ordering: .relaxed).newValue)
        }
    }

    func streamMetrics(group: String, stream: String) -> StreamMetrics {
        let key = StreamKey(group: group, stream: stream)
        return self.metrics.withLock { metrics in
            if let existing = metrics[key] { return existing }
            let created = StreamMetrics(group: group, stream: stream, factory: self.factory)
            metrics[key] = created
            return created
        }
    }

    func recordFailure(_ reason: String, metrics: StreamMetrics, records: Int) {
        self.failed.add(records, ordering: .relaxed)
        self.failures.withLock { $0[reason, default: 0] += records }
        metrics.failed(reason: reason).increment(by: records)
    }
}
