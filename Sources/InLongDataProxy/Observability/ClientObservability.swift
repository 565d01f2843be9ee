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
public final class DataProxyClientMetrics: DataProxyClientObservabilityDelegate {
    private let factory: any MetricsFactory
    private let streams = Mutex<[StreamKey: StreamMetrics]>([:])
    private let heldBytes: Gauge

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        self.heldBytes = Gauge(label: "inlong_client_held_bytes", factory: factory)
    }

    private struct StreamKey: Hashable {
        var group: String
        var stream: String
    }

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
        private let queuedBytesGauge: Gauge
        private let inFlightGauge: Gauge
        // Under a lock with the gauge's record: two threads' records could otherwise land out of order and
        // leave a stale value on an idle client.
        private let queuedBytes = Mutex(0)
        private let inFlight = Mutex(0)
        private let failed = Mutex<[DataProxyError.Code: Counter]>([:])
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
            self.queuedBytesGauge = Gauge(label: "inlong_client_queued_bytes", dimensions: dimensions, factory: factory)
            self.inFlightGauge = Gauge(label: "inlong_client_batches_in_flight", dimensions: dimensions, factory: factory)
        }

        func failed(_ code: DataProxyError.Code) -> Counter {
            self.failed.withLock { counters in
                if let counter = counters[code] { return counter }
                let counter = Counter(
                    label: "inlong_client_records_failed_total",
                    dimensions: self.dimensions + [("reason", code.description)],
                    factory: self.factory
                )
                counters[code] = counter
                return counter
            }
        }

        func queued(bytes: Int) {
            self.queuedBytes.withLock { queued in
                queued += bytes
                self.queuedBytesGauge.record(queued)
            }
        }

        func inFlight(_ change: Int) {
            self.inFlight.withLock { inFlight in
                inFlight += change
                self.inFlightGauge.record(inFlight)
            }
        }
    }

    private func metrics(_ group: String, _ stream: String) -> StreamMetrics {
        let key = StreamKey(group: group, stream: stream)
        return self.streams.withLock { streams in
            if let existing = streams[key] { return existing }
            let created = StreamMetrics(group: group, stream: stream, factory: self.factory)
            streams[key] = created
            return created
        }
    }

    public func batchQueued(group: String, stream: String, records: Int, bytes: Int) {
        let metrics = self.metrics(group, stream)
        metrics.accepted.increment(by: records)
        metrics.queued(bytes: bytes)
    }

    public func batchSent(group: String, stream: String, records: Int, frameBytes: Int, proxy: Endpoint) {
        let metrics = self.metrics(group, stream)
        metrics.sent.increment(by: records)
        metrics.batchesSent.increment()
        metrics.sentBytes.increment(by: frameBytes)
        metrics.inFlight(1)
    }

    public func batchAnswered(group: String, stream: String) {
        self.metrics(group, stream).inFlight(-1)
    }

    public func batchRetried(group: String, stream: String, attempt: Int, error: DataProxyError) {
        self.metrics(group, stream).retried.increment()
    }

    public func batchAcked(group: String, stream: String, records: Int, bytes: Int, latency: Duration) {
        let metrics = self.metrics(group, stream)
        metrics.acked.increment(by: records)
        metrics.ackLatency.recordNanoseconds(TimeAmount(latency).nanoseconds)
        metrics.queued(bytes: -bytes)
    }

    public func batchFailed(group: String, stream: String, records: Int, bytes: Int, error: DataProxyError) {
        let metrics = self.metrics(group, stream)
        metrics.failed(error.code).increment(by: records)
        metrics.queued(bytes: -bytes)
    }

    public func recordTooLarge(group: String, stream: String, bytes: Int) {
        self.metrics(group, stream).tooLarge.increment()
    }

    public func bufferFull(group: String, stream: String) {
        self.metrics(group, stream).bufferFull.increment()
    }

    public func heldBytesChanged(to bytes: Int) {
        self.heldBytes.record(bytes)
    }
}
