public import InLongWire
import CoreMetrics
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
    public var errors: [DataProxyErrorCode: Int] = [:]

    public init() {}
}

/// Lock-free counters behind ``ReceiverStatistics``, mirrored to swift-metrics.
final class ReceiverCounters: Sendable {
    let openConnections = Atomic<Int>(0)
    let acceptedConnections = Atomic<Int>(0)
    let rejectedConnections = Atomic<Int>(0)
    let protocolErrors = Atomic<Int>(0)
    let frames = Atomic<Int>(0)
    let bytes = Atomic<Int>(0)
    let heartbeats = Atomic<Int>(0)
    let messages = Atomic<Int>(0)
    let records = Atomic<Int>(0)
    let payloadBytes = Atomic<Int>(0)
    let errors = Mutex<[DataProxyErrorCode: Int]>([:])

    private let factory: any MetricsFactory
    private let connectionsGauge: Gauge
    private let framesCounter: Counter
    private let bytesCounter: Counter
    private let recordsCounter: Counter
    private let payloadBytesCounter: Counter
    private let messagesCounter: Counter
    private let heartbeatsCounter: Counter
    private let rejectedCounter: Counter
    private let protocolErrorsCounter: Counter
    private let errorCounters = Mutex<[DataProxyErrorCode: Counter]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
        self.connectionsGauge = Gauge(label: "inlong.receiver.connections", factory: factory)
        self.framesCounter = Counter(label: "inlong.receiver.frames", factory: factory)
        self.bytesCounter = Counter(label: "inlong.receiver.bytes", factory: factory)
        self.recordsCounter = Counter(label: "inlong.receiver.records", factory: factory)
        self.payloadBytesCounter = Counter(label: "inlong.receiver.payload.bytes", factory: factory)
        self.messagesCounter = Counter(label: "inlong.receiver.messages", factory: factory)
        self.heartbeatsCounter = Counter(label: "inlong.receiver.heartbeats", factory: factory)
        self.rejectedCounter = Counter(label: "inlong.receiver.connections.rejected", factory: factory)
        self.protocolErrorsCounter = Counter(label: "inlong.receiver.protocol_errors", factory: factory)
    }

    func connectionOpened() {
        self.acceptedConnections.add(1, ordering: .relaxed)
        let open = self.openConnections.add(1, ordering: .relaxed).newValue
        self.connectionsGauge.record(open)
    }

    func connectionClosed() {
        let open = self.openConnections.subtract(1, ordering: .relaxed).newValue
        self.connectionsGauge.record(open)
    }

    func connectionRejected() {
        self.rejectedConnections.add(1, ordering: .relaxed)
        self.rejectedCounter.increment()
    }

    func frameRead(bytes: Int) {
        self.frames.add(1, ordering: .relaxed)
        self.bytes.add(bytes, ordering: .relaxed)
        self.framesCounter.increment()
        self.bytesCounter.increment(by: bytes)
    }

    func heartbeat() {
        self.heartbeats.add(1, ordering: .relaxed)
        self.heartbeatsCounter.increment()
    }

    func delivered(_ message: ReceivedMessage) {
        self.messages.add(1, ordering: .relaxed)
        self.records.add(message.recordCount, ordering: .relaxed)
        self.payloadBytes.add(message.payloadBytes, ordering: .relaxed)
        self.messagesCounter.increment()
        self.recordsCounter.increment(by: message.recordCount)
        self.payloadBytesCounter.increment(by: message.payloadBytes)
    }

    func protocolError() {
        self.protocolErrors.add(1, ordering: .relaxed)
        self.protocolErrorsCounter.increment()
    }

    func error(_ code: DataProxyErrorCode) {
        self.errors.withLock { $0[code, default: 0] += 1 }
        let counter = self.errorCounters.withLock { counters in
            if let counter = counters[code] { return counter }
            let counter = Counter(label: "inlong.receiver.errors", dimensions: [("code", String(code.rawValue))], factory: self.factory)
            counters[code] = counter
            return counter
        }
        counter.increment()
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
        statistics.errors = self.errors.withLock { $0 }
        return statistics
    }
}
