public import CoreMetrics
public import InLongTransport
import NIOCore
import Synchronization

/// Hears of every event a ``DataProxyClient`` counts, once each; ``DataProxyClient/statistics()`` is fed from the
/// same calls. Methods are called on whatever thread the event happens (often an event loop): keep them cheap and
/// never block. Every method has a no-op default, so a delegate implements only what it needs.
///
/// The default delegate is ``DataProxyClientMetrics``, over ``DataProxyClient/Configuration/metricsFactory``
/// or the bootstrapped `MetricsSystem`; with neither, nothing is called.
public protocol DataProxyClientObservabilityDelegate: Sendable {
    /// A batch of `records` records of (`group`, `stream`) was sealed: the records were accepted and the batch's
    /// `bytes` wait to be sent.
    func batchQueued(group: String, stream: String, records: Int, bytes: Int)
    /// A batch was written to `proxy` (each attempt counts) as a frame of `frameBytes` bytes.
    func batchSent(group: String, stream: String, records: Int, frameBytes: Int, proxy: Endpoint)
    /// The attempt written by the matching ``batchSent(group:stream:records:frameBytes:proxy:)`` was answered or
    /// failed: it is no longer in flight.
    func batchAnswered(group: String, stream: String)
    /// A batch will be tried again (`attempt` is the number of the next attempt) after `error`.
    func batchRetried(group: String, stream: String, attempt: Int, error: DataProxyError)
    /// A batch's records were acked, `latency` after the first of them was accepted; its `bytes` no longer wait.
    func batchAcked(group: String, stream: String, records: Int, bytes: Int, latency: Duration)
    /// A batch's records failed for good with `error`; its `bytes` no longer wait.
    func batchFailed(group: String, stream: String, records: Int, bytes: Int, error: DataProxyError)
    /// `send` refused a record of `bytes` bytes as too large for a frame.
    func recordTooLarge(group: String, stream: String, bytes: Int)
    /// `send` found the buffer full (and waited, or threw with the fail-fast policy).
    func bufferFull(group: String, stream: String)
    /// The bytes of records held against the buffer's quota changed. Calls come one at a time, in order, under a
    /// lock of the client's: do not call back into the client from here.
    func heldBytesChanged(to bytes: Int)
    /// What the spool holds (``DataProxyClient/Configuration/spool``): told on the client's clock, when it changed.
    func spoolChanged(bytes: Int, segments: Int)
    /// Records a previous client left in the spool were sent again.
    func recordsReplayed(_ count: Int)
}

extension DataProxyClientObservabilityDelegate {
    public func batchQueued(group: String, stream: String, records: Int, bytes: Int) {}
    public func batchSent(group: String, stream: String, records: Int, frameBytes: Int, proxy: Endpoint) {}
    public func batchAnswered(group: String, stream: String) {}
    public func batchRetried(group: String, stream: String, attempt: Int, error: DataProxyError) {}
    public func batchAcked(group: String, stream: String, records: Int, bytes: Int, latency: Duration) {}
    public func batchFailed(group: String, stream: String, records: Int, bytes: Int, error: DataProxyError) {}
    public func recordTooLarge(group: String, stream: String, bytes: Int) {}
    public func bufferFull(group: String, stream: String) {}
    public func heldBytesChanged(to bytes: Int) {}
    public func spoolChanged(bytes: Int, segments: Int) {}
    public func recordsReplayed(_ count: Int) {}
}

/// Hears nothing.
public struct NoOpDataProxyClientObservability: DataProxyClientObservabilityDelegate {
    public init() {}
}

/// The client's events as swift-metrics instruments with Prometheus names, dimensions `group` and `stream`
/// (`reason` for failures), created once per stream:
///
/// | Metric | Kind |
/// |---|---|
/// | `inlong_client_records_accepted_total`, `_sent_total`, `_acked_total`, `_too_large_total` | counter |
/// | `inlong_client_records_failed_total` (`reason`: the ``DataProxyError/Code``) | counter |
/// | `inlong_client_batches_sent_total`, `inlong_client_batches_retried_total`, `inlong_client_sent_bytes_total` | counter |
/// | `inlong_client_buffer_full_total` | counter |
/// | `inlong_client_ack_latency_seconds` | timer |
/// | `inlong_client_queued_bytes`, `inlong_client_batches_in_flight` | gauge |
/// | `inlong_client_held_bytes` (no dimensions) | gauge |
/// | `inlong_client_spool_bytes`, `inlong_client_spool_segments` (no dimensions) | gauge |
/// | `inlong_client_replayed_records_total` (no dimensions) | counter |
public final class DataProxyClientMetrics: DataProxyClientObservabilityDelegate {
    private let factory: any MetricsFactory
    /// Every stream's instruments and gauge values, behind the delegate's one lock (``withStream(_:_:_:)``).
    private let streams = Mutex<[StreamKey: Stream]>([:])
    private let heldBytes: Gauge
    private let spoolBytes: Gauge
    private let spoolSegments: Gauge
    private let replayed: Counter

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        self.heldBytes = Gauge(label: "inlong_client_held_bytes", factory: factory)
        self.spoolBytes = Gauge(label: "inlong_client_spool_bytes", factory: factory)
        self.spoolSegments = Gauge(label: "inlong_client_spool_segments", factory: factory)
        self.replayed = Counter(label: "inlong_client_replayed_records_total", factory: factory)
    }

    public func spoolChanged(bytes: Int, segments: Int) {
        self.spoolBytes.record(bytes)
        self.spoolSegments.record(segments)
    }

    public func recordsReplayed(_ count: Int) {
        self.replayed.increment(by: count)
    }

    private struct StreamKey: Hashable {
        var group: String
        var stream: String
    }

    /// A stream's values, changed under the lock: its gauges are recorded there too, since two threads' records
    /// could otherwise land out of order and leave a stale value on an idle client.
    private struct Stream {
        let metrics: StreamMetrics
        var queuedBytes = 0
        var inFlight = 0
        var failed: [DataProxyError.Code: Counter] = [:]

        mutating func queued(bytes: Int) {
            self.queuedBytes += bytes
            self.metrics.queuedBytes.record(self.queuedBytes)
        }

        mutating func inFlight(_ change: Int) {
            self.inFlight += change
            self.metrics.inFlight.record(self.inFlight)
        }

        mutating func failed(_ code: DataProxyError.Code) -> Counter {
            if let counter = self.failed[code] { return counter }
            let counter = self.metrics.failedCounter(code)
            self.failed[code] = counter
            return counter
        }
    }

    /// A stream's instruments, created once.
    private final class StreamMetrics: Sendable {
        let accepted: Counter
        let sent: Counter
        let acked: Counter
        let tooLarge: Counter
        let batchesSent: Counter
        let retried: Counter
        let sentBytes: Counter
        let bufferFull: Counter
        let ackLatency: CoreMetrics.Timer
        let queuedBytes: Gauge
        let inFlight: Gauge
        private let dimensions: [(String, String)]
        private let factory: any MetricsFactory

        init(group: String, stream: String, factory: any MetricsFactory) {
            let dimensions = [("group", group), ("stream", stream)]
            func counter(_ label: String) -> Counter { Counter(label: label, dimensions: dimensions, factory: factory) }
            self.dimensions = dimensions
            self.factory = factory
            self.accepted = counter("inlong_client_records_accepted_total")
            self.sent = counter("inlong_client_records_sent_total")
            self.acked = counter("inlong_client_records_acked_total")
            self.tooLarge = counter("inlong_client_records_too_large_total")
            self.batchesSent = counter("inlong_client_batches_sent_total")
            self.retried = counter("inlong_client_batches_retried_total")
            self.sentBytes = counter("inlong_client_sent_bytes_total")
            self.bufferFull = counter("inlong_client_buffer_full_total")
            self.ackLatency = CoreMetrics.Timer(
                label: "inlong_client_ack_latency_seconds",
                dimensions: dimensions,
                preferredDisplayUnit: .seconds,
                factory: factory
            )
            self.queuedBytes = Gauge(label: "inlong_client_queued_bytes", dimensions: dimensions, factory: factory)
            self.inFlight = Gauge(label: "inlong_client_batches_in_flight", dimensions: dimensions, factory: factory)
        }

        func failedCounter(_ code: DataProxyError.Code) -> Counter {
            Counter(label: "inlong_client_records_failed_total", dimensions: self.dimensions + [("reason", code.description)], factory: self.factory)
        }
    }

    /// The delegate's one lock site: the stream's values, created on first use.
    private func withStream<Value>(_ group: String, _ stream: String, _ body: (inout Stream) -> Value) -> Value {
        let key = StreamKey(group: group, stream: stream)
        return self.streams.withLock { streams in
            if streams[key] == nil {
                streams[key] = Stream(metrics: StreamMetrics(group: group, stream: stream, factory: self.factory))
            }
            return body(&streams[key]!)
        }
    }

    public func batchQueued(group: String, stream: String, records: Int, bytes: Int) {
        let metrics = self.withStream(group, stream) { stream in
            stream.queued(bytes: bytes)
            return stream.metrics
        }
        metrics.accepted.increment(by: records)
    }

    public func batchSent(group: String, stream: String, records: Int, frameBytes: Int, proxy: Endpoint) {
        let metrics = self.withStream(group, stream) { stream in
            stream.inFlight(1)
            return stream.metrics
        }
        metrics.sent.increment(by: records)
        metrics.batchesSent.increment()
        metrics.sentBytes.increment(by: frameBytes)
    }

    public func batchAnswered(group: String, stream: String) {
        self.withStream(group, stream) { $0.inFlight(-1) }
    }

    public func batchRetried(group: String, stream: String, attempt: Int, error: DataProxyError) {
        self.withStream(group, stream) { $0.metrics }.retried.increment()
    }

    public func batchAcked(group: String, stream: String, records: Int, bytes: Int, latency: Duration) {
        let metrics = self.withStream(group, stream) { stream in
            stream.queued(bytes: -bytes)
            return stream.metrics
        }
        metrics.acked.increment(by: records)
        metrics.ackLatency.recordNanoseconds(TimeAmount(latency).nanoseconds)
    }

    public func batchFailed(group: String, stream: String, records: Int, bytes: Int, error: DataProxyError) {
        let failed = self.withStream(group, stream) { stream in
            stream.queued(bytes: -bytes)
            return stream.failed(error.code)
        }
        failed.increment(by: records)
    }

    public func recordTooLarge(group: String, stream: String, bytes: Int) {
        self.withStream(group, stream) { $0.metrics }.tooLarge.increment()
    }

    public func bufferFull(group: String, stream: String) {
        self.withStream(group, stream) { $0.metrics }.bufferFull.increment()
    }

    public func heldBytesChanged(to bytes: Int) {
        self.heldBytes.record(bytes)
    }
}
