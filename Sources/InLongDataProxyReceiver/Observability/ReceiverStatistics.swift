public import InLongWire
public import CoreMetrics
import Synchronization

/// A snapshot of a receiver's counters.
public struct ReceiverStatistics: Sendable, Hashable {
    /// Connections open now.
    public var openConnections = 0
    /// Connections accepted since start.
    public var acceptedConnections = 0
    /// Connections refused because of ``DataProxyReceiver/Configuration/maxConnections``.
    public var rejectedConnections = 0
    /// Connections closed by the receiver on a malformed frame.
    public var protocolErrors = 0
    /// Frames read.
    public var frames = 0
    /// Bytes read in frames.
    public var bytes = 0
    /// Heartbeats (types 1 and 8) answered.
    public var heartbeats = 0
    /// Data messages the sink accepted.
    public var messages = 0
    /// Records the sink accepted.
    public var records = 0
    /// Payload bytes the sink accepted (decompressed).
    public var payloadBytes = 0
    /// Error replies (or would-be replies) by server error code.
    public var errors: [DataProxyResultCode: Int] = [:]
    /// The sink's error while its latest write failed (a full disk), `nil` once a write succeeds again: what
    /// `inlong receive`'s `/health` reports.
    public var sinkFailure: String?

    public init() {}
}

/// Hears of every event a ``DataProxyReceiver`` counts, once each; ``DataProxyReceiver/statistics()`` is fed
/// from the same calls. Called on event loops: keep the methods cheap and never block. Every method has a no-op
/// default.
public protocol DataProxyReceiverObservabilityDelegate: Sendable {
    /// A connection was accepted; `open` are open now.
    func connectionOpened(open: Int)
    /// A connection closed; `open` are open now.
    func connectionClosed(open: Int)
    /// A connection was refused at the connection limit.
    func connectionRejected()
    /// A frame of `bytes` bytes was read.
    func frameRead(bytes: Int)
    /// A heartbeat was answered.
    func heartbeatAnswered()
    /// The sink accepted a message.
    func messageDelivered(_ message: ReceivedMessage)
    /// A connection was closed on a malformed frame.
    func protocolError()
    /// An error was answered (or would have been, for requests that want no answer).
    func errorAnswered(_ code: DataProxyResultCode)
}

extension DataProxyReceiverObservabilityDelegate {
    public func connectionOpened(open: Int) {}
    public func connectionClosed(open: Int) {}
    public func connectionRejected() {}
    public func frameRead(bytes: Int) {}
    public func heartbeatAnswered() {}
    public func messageDelivered(_ message: ReceivedMessage) {}
    public func protocolError() {}
    public func errorAnswered(_ code: DataProxyResultCode) {}
}

/// The receiver's events as swift-metrics instruments with Prometheus names: `inlong_receiver_connections`
/// (gauge), `inlong_receiver_connections_rejected_total`, `inlong_receiver_frames_total`,
/// `inlong_receiver_bytes_total`, `inlong_receiver_heartbeats_total`, `inlong_receiver_messages_total`,
/// `inlong_receiver_records_total`, `inlong_receiver_payload_bytes_total`, `inlong_receiver_protocol_errors_total`
/// and `inlong_receiver_errors_total` (dimension `code`).
public final class DataProxyReceiverMetrics: DataProxyReceiverObservabilityDelegate {
    private let factory: any MetricsFactory
    private let connections: Gauge
    private let frames: Counter
    private let bytes: Counter
    private let records: Counter
    private let payloadBytes: Counter
    private let messages: Counter
    private let heartbeats: Counter
    private let rejected: Counter
    private let protocolErrors: Counter
    private let errors = Mutex<[DataProxyResultCode: Counter]>([:])
    /// Counted here, under the lock of the gauge's record, so that records cannot land out of order.
    private let open = Mutex(0)

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        self.connections = Gauge(label: "inlong_receiver_connections", factory: factory)
        self.frames = Counter(label: "inlong_receiver_frames_total", factory: factory)
        self.bytes = Counter(label: "inlong_receiver_bytes_total", factory: factory)
        self.records = Counter(label: "inlong_receiver_records_total", factory: factory)
        self.payloadBytes = Counter(label: "inlong_receiver_payload_bytes_total", factory: factory)
        self.messages = Counter(label: "inlong_receiver_messages_total", factory: factory)
        self.heartbeats = Counter(label: "inlong_receiver_heartbeats_total", factory: factory)
        self.rejected = Counter(label: "inlong_receiver_connections_rejected_total", factory: factory)
        self.protocolErrors = Counter(label: "inlong_receiver_protocol_errors_total", factory: factory)
    }

    public func connectionOpened(open: Int) { self.changeConnections(by: 1) }
    public func connectionClosed(open: Int) { self.changeConnections(by: -1) }

    private func changeConnections(by change: Int) {
        self.open.withLock { open in
            open += change
            self.connections.record(open)
        }
    }
    public func connectionRejected() { self.rejected.increment() }

    public func frameRead(bytes: Int) {
        self.frames.increment()
        self.bytes.increment(by: bytes)
    }

    public func heartbeatAnswered() { self.heartbeats.increment() }

    public func messageDelivered(_ message: ReceivedMessage) {
        self.messages.increment()
        self.records.increment(by: message.recordCount)
        self.payloadBytes.increment(by: message.payloadBytes)
    }

    public func protocolError() { self.protocolErrors.increment() }

    public func errorAnswered(_ code: DataProxyResultCode) {
        let counter = self.errors.withLock { counters in
            if let counter = counters[code] { return counter }
            let counter = Counter(label: "inlong_receiver_errors_total", dimensions: [("code", String(code.rawValue))], factory: self.factory)
            counters[code] = counter
            return counter
        }
        counter.increment()
    }
}

/// The one path of the receiver's events: lock-free counters behind ``ReceiverStatistics``, then the delegate.
final class ReceiverObservation: Sendable {
    private let openConnections = Atomic<Int>(0)
    private let acceptedConnections = Atomic<Int>(0)
    private let rejectedConnections = Atomic<Int>(0)
    private let protocolErrors = Atomic<Int>(0)
    private let frames = Atomic<Int>(0)
    private let bytes = Atomic<Int>(0)
    private let heartbeats = Atomic<Int>(0)
    private let messages = Atomic<Int>(0)
    private let records = Atomic<Int>(0)
    private let payloadBytes = Atomic<Int>(0)
    private let errors = Mutex<[DataProxyResultCode: Int]>([:])
    /// Set under `sinkFailure`'s lock with it; read alone only as a hint, so a delivery pays one load.
    private let sinkFailing = Atomic<Bool>(false)
    private let sinkFailure = Mutex<String?>(nil)
    private let delegate: (any DataProxyReceiverObservabilityDelegate)?

    init(delegate: (any DataProxyReceiverObservabilityDelegate)?) {
        self.delegate = delegate
    }

    /// The configuration's delegate, else swift-metrics over its factory or a bootstrapped `MetricsSystem`, else
    /// none.
    static func delegate(for configuration: DataProxyReceiver.Configuration) -> (any DataProxyReceiverObservabilityDelegate)? {
        if let delegate = configuration.observabilityDelegate { return delegate }
        let factory = configuration.metricsFactory ?? MetricsSystem.factory
        if factory is NOOPMetricsHandler { return nil }
        return DataProxyReceiverMetrics(factory: factory)
    }

    func connectionOpened() {
        self.acceptedConnections.add(1, ordering: .relaxed)
        let open = self.openConnections.add(1, ordering: .relaxed).newValue
        self.delegate?.connectionOpened(open: open)
    }

    func connectionClosed() {
        let open = self.openConnections.subtract(1, ordering: .relaxed).newValue
        self.delegate?.connectionClosed(open: open)
    }

    func connectionRejected() {
        self.rejectedConnections.add(1, ordering: .relaxed)
        self.delegate?.connectionRejected()
    }

    func frameRead(bytes: Int) {
        self.frames.add(1, ordering: .relaxed)
        self.bytes.add(bytes, ordering: .relaxed)
        self.delegate?.frameRead(bytes: bytes)
    }

    func heartbeat() {
        self.heartbeats.add(1, ordering: .relaxed)
        self.delegate?.heartbeatAnswered()
    }

    func delivered(_ message: ReceivedMessage) {
        if self.sinkFailing.load(ordering: .relaxed) {
            self.sinkFailure.withLock { failure in
                failure = nil
                self.sinkFailing.store(false, ordering: .relaxed)
            }
        }
        self.messages.add(1, ordering: .relaxed)
        self.records.add(message.recordCount, ordering: .relaxed)
        self.payloadBytes.add(message.payloadBytes, ordering: .relaxed)
        self.delegate?.messageDelivered(message)
    }

    func sinkFailed(_ error: any Error) {
        self.sinkFailure.withLock { failure in
            failure = "\(error)"
            self.sinkFailing.store(true, ordering: .relaxed)
        }
        self.error(.putEventToChannelFailure)
    }

    func protocolError() {
        self.protocolErrors.add(1, ordering: .relaxed)
        self.delegate?.protocolError()
    }

    func error(_ code: DataProxyResultCode) {
        self.countErrors { $0[code, default: 0] += 1 }
        self.delegate?.errorAnswered(code)
    }

    private func countErrors<Value>(_ body: (inout [DataProxyResultCode: Int]) -> Value) -> Value {
        self.errors.withLock { body(&$0) }
    }

    func snapshot() -> ReceiverStatistics {
        var statistics = ReceiverStatistics()
        statistics.openConnections = self.openConnections.load(ordering: .relaxed)
        statistics.acceptedConnections = self.acceptedConnections.load(ordering: .relaxed)
        statistics.rejectedConnections = self.rejectedConnections.load(ordering: .relaxed)
        statistics.protocolErrors = self.protocolErrors.load(ordering: .relaxed)
        statistics.frames = self.frames.load(ordering: .relaxed)
        statistics.bytes = self.bytes.load(ordering: .relaxed)
        statistics.heartbeats = self.heartbeats.load(ordering: .relaxed)
        statistics.messages = self.messages.load(ordering: .relaxed)
        statistics.records = self.records.load(ordering: .relaxed)
        statistics.payloadBytes = self.payloadBytes.load(ordering: .relaxed)
        statistics.errors = self.countErrors { $0 }
        statistics.sinkFailure = self.sinkFailure.withLock { $0 }
        return statistics
    }
}
