import InLongTransport
import InLongWire
import NIOCore

/// A sealed batch on its way: maybe encoded, maybe attempted. It carries its own backoff, so that each retry
/// waits the next delay of the job's own sequence.
struct DeliveryJob: Sendable {
    let id: Int
    var batch: SealedBatch
    // Instants held with a fixed layout (see `FixedInstant`): a job is copied several times on its way.
    let deadlineInstant: FixedInstant
    var backoff: ExponentialBackoff.Iterator
    /// The encoded frame, once encoded (the block is recycled then).
    var frame: ByteBuffer?
    var uniq: UInt32 = 0
    /// Requests that reached a connection's socket or may have (refusals before writing are not attempts).
    var attempts = 0
    var lastProxy: Endpoint?
    private var sentInstant: FixedInstant?
    var lastError: DataProxyError?
    /// Sticky: once a request may have reached a proxy, no later event makes the records "not sent".
    var mayHaveBeenDelivered = false
    /// Waited for its group's proxies to be discovered (a group first used after start).
    var awaitedRoute = false
    /// The dispatcher took it and is handing it to a connection: whether its bytes get written is not known until
    /// it reports back.
    var handingOver = false
    /// It ended (its deadline, the close) while handed over: it fails with this once the dispatcher reports, as
    /// possibly sent if the connection took it.
    var endedWhileHandingOver: DataProxyError?

    init(id: Int, batch: SealedBatch, deadline: ContinuousClock.Instant, backoff: ExponentialBackoff.Iterator) {
        self.id = id
        self.batch = batch
        self.deadlineInstant = FixedInstant(deadline)
        self.backoff = backoff
    }

    /// When the records stop being worth retrying: the batch's first acceptance plus the delivery timeout.
    var deadline: ContinuousClock.Instant { self.deadlineInstant.instant }

    /// When its last request was handed to a connection.
    var sentAt: ContinuousClock.Instant? {
        get { self.sentInstant?.instant }
        set { self.sentInstant = newValue.map(FixedInstant.init) }
    }

    /// What a failure of this job is reported as now.
    var persistence: DataProxyError.Persistence { self.mayHaveBeenDelivered ? .possiblySent : .notSent }

    func error(_ code: DataProxyError.Code, _ detail: String, retriable: Bool) -> DataProxyError {
        DataProxyError(
            code,
            detail,
            isRetriable: retriable,
            persistence: self.persistence,
            group: self.batch.key.group,
            stream: self.batch.key.stream,
            attempts: self.attempts,
            proxy: self.lastProxy
        )
    }
}

/// How a submitted request ended, as the state machine needs it.
enum DeliveryOutcome: Sendable {
    /// What the outcome says of the proxy, for the router's health of proxies: `nil` when it says nothing (a fatal
    /// error code is about the records).
    var proxySucceeded: Bool? {
        switch self {
        case .acked: true
        case .rejected(let code, _): code.disposition == .retriable ? false : nil
        case .transportFailed, .unexpectedReply: false
        }
    }

    /// The proxy stored the records (`dpIp` as it reported it).
    case acked(proxyIP: String?)
    /// The proxy answered with an error code.
    case rejected(DataProxyResultCode, message: String?)
    /// The transport failed the request.
    case transportFailed(TransportError)
    /// The proxy answered something that is not an ack.
    case unexpectedReply(String)
}
