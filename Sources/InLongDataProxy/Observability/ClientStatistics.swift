import Foundation
public import InLongTransport
import Metrics
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
    /// Delivery reports dropped because nobody read them.
    public var reportsDropped = 0
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

    public init() {}
}

/// A log-bucketed latency histogram (buckets grow by √2 from 1 µs), cheap enough to record every batch.
struct LatencyHistogram: Sendable {
    private var buckets = [Int](repeating: 0, count: 64)
    private var count = 0

    mutating func record(_ duration: Duration) {
        let micros = max(Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12, 1)
        let index = min(Int((log2(micros) * 2).rounded(.down)), self.buckets.count - 1)
        self.buckets[max(index, 0)] += 1
        self.count += 1
    }

    /// The upper bound of the bucket holding the `quantile`.
    func value(at quantile: Double) -> Duration? {
        guard self.count > 0 else { return nil }
        let target = Int((Double(self.count) * quantile).rounded(.up))
        var seen = 0
        for (index, bucket) in self.buckets.enumerated() {
            seen += bucket
            if seen >= max(target, 1) {
                return .microseconds(Int64(pow(2, Double(index + 1) / 2)))
            }
        }
        return nil
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
    let reportsDropped = Atomic<Int>(0)
    let latency = Mutex(LatencyHistogram())
    let failures = Mutex<[String: Int]>([:])
    private let metrics = Mutex<[StreamKey: StreamMetrics]>([:])

    struct StreamKey: Hashable {
        var group: String
        var stream: String
    }

    /// Metric objects for one (group, stream), created once.
    final class StreamMetrics: Sendable {
        let accepted: Counter
        let sent: Counter
        let acked: Counter
        let retried: Counter
        let ackLatency: Timer

        init(group: String, stream: String) {
            let dimensions = [("group", group), ("stream", stream)]
            self.accepted = Counter(label: "inlong.client.records.accepted", dimensions: dimensions)
            self.sent = Counter(label: "inlong.client.records.sent", dimensions: dimensions)
            self.acked = Counter(label: "inlong.client.records.acked", dimensions: dimensions)
            self.retried = Counter(label: "inlong.client.batches.retried", dimensions: dimensions)
            self.ackLatency = Timer(label: "inlong.client.ack.latency", dimensions: dimensions, preferredDisplayUnit: .milliseconds)
        }
    }

    let heldBytesGauge = Gauge(label: "inlong.client.held.bytes")
    let inFlightGauge = Gauge(label: "inlong.client.batches.inflight")
    let tooLargeCounter = Counter(label: "inlong.client.records.too_large")
    let bufferFullCounter = Counter(label: "inlong.client.buffer_full")

    func streamMetrics(group: String, stream: String) -> StreamMetrics {
        let key = StreamKey(group: group, stream: stream)
        return self.metrics.withLock { metrics in
            if let existing = metrics[key] { return existing }
            let created = StreamMetrics(group: group, stream: stream)
            metrics[key] = created
            return created
        }
    }

    func recordFailure(_ reason: String, group: String, stream: String, records: Int) {
        self.failed.add(records, ordering: .relaxed)
        self.failures.withLock { $0[reason, default: 0] += records }
        Counter(label: "inlong.client.records.failed", dimensions: [("group", group), ("stream", stream), ("reason", reason)])
            .increment(by: records)
    }
}
