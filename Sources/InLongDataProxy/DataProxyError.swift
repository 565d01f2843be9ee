public import InLongTransport
public import InLongWire

/// Why records were not accepted or not delivered.
public struct DataProxyError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case bufferFull, messageTooLarge, invalidArgument, shutDown, deliveryTimeout, serverRejected
            case connectionFailed, noProxies, discoveryFailed, invalidConfiguration
            case requestTimeout, notConnected, connectionLost, cancelled, spoolFailed
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The byte or record quota is used up and the policy is to fail fast.
        public static let bufferFull = Code(.bufferFull)
        /// The record does not fit in one frame.
        public static let messageTooLarge = Code(.messageTooLarge)
        /// An empty record, group or stream, or an attribute with `&` or `=`.
        public static let invalidArgument = Code(.invalidArgument)
        /// The client is closed, or closed before the record could be delivered.
        public static let shutDown = Code(.shutDown)
        /// The record's delivery deadline passed before an ack.
        public static let deliveryTimeout = Code(.deliveryTimeout)
        /// The proxy answered with an error code (see ``DataProxyError/serverResultCode``).
        public static let serverRejected = Code(.serverRejected)
        /// The proxy answered something that is not an ack, or the transport failed in another way.
        public static let connectionFailed = Code(.connectionFailed)
        /// No ack came within the request timeout (the request was written; the proxy may have stored it).
        public static let requestTimeout = Code(.requestTimeout)
        /// No connection could take the request; nothing was written.
        public static let notConnected = Code(.notConnected)
        /// The connection closed, reset or went silent while the request was pending.
        public static let connectionLost = Code(.connectionLost)
        /// No proxy is known (static list empty and discovery found none).
        public static let noProxies = Code(.noProxies)
        /// The Manager could not be asked or answered something unusable.
        public static let discoveryFailed = Code(.discoveryFailed)
        /// The configuration cannot be used.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// The calling task was cancelled while a call of many records waited to accept the rest: the records it
        /// accepted are in ``DataProxyError/acceptedRecords`` (and ``DataProxyError/acceptedReceipt``), and are
        /// delivered and reported as usual.
        public static let cancelled = Code(.cancelled)
        /// The spool could not store accepted records (a full or failing disk): they are in
        /// ``DataProxyError/acceptedRecords`` and are delivered and reported as usual, but would not survive a
        /// crash.
        public static let spoolFailed = Code(.spoolFailed)

        public var description: String {
            switch self.base {
            case .bufferFull: "bufferFull"
            case .messageTooLarge: "messageTooLarge"
            case .invalidArgument: "invalidArgument"
            case .shutDown: "shutDown"
            case .deliveryTimeout: "deliveryTimeout"
            case .serverRejected: "serverRejected"
            case .connectionFailed: "connectionFailed"
            case .noProxies: "noProxies"
            case .discoveryFailed: "discoveryFailed"
            case .invalidConfiguration: "invalidConfiguration"
            case .requestTimeout: "requestTimeout"
            case .notConnected: "notConnected"
            case .connectionLost: "connectionLost"
            case .cancelled: "cancelled"
            case .spoolFailed: "spoolFailed"
            }
        }
    }

    /// Whether the records may be stored by the proxy despite the error. Once a request of a batch may have
    /// been written, the batch is ``possiblySent`` whatever happens after (a later refusal or rejection does not
    /// undo an earlier write).
    public enum Persistence: Sendable, Hashable {
        /// No proxy can have stored the records: no request carrying them was written, or every one written was
        /// refused with an error code. Resending cannot duplicate them.
        case notSent
        /// A request was written (or may have been), but no ack came back: the proxy may have stored them, and
        /// resending may duplicate them.
        case possiblySent
        /// Acked by the proxy (for example a duplicate it had already stored).
        case acked
    }

    public var code: Code
    /// Whether trying again later may succeed.
    public var isRetriable: Bool
    /// The proxy that answered or failed last.
    public var proxy: Endpoint?
    /// The proxy's `errCode`, when it answered with one.
    public var serverResultCode: DataProxyResultCode?
    /// The proxy's `errMsg`.
    public var serverErrorMessage: String?
    public var group: String?
    public var stream: String?
    /// Attempts made.
    public var attempts: Int
    public var persistence: Persistence
    /// A human-readable detail.
    public var detail: String
    /// The transport or discovery error behind it.
    public var underlying: (any Error & Sendable)?
    /// For ``Code/shutDown`` and ``Code/deliveryTimeout``: why the records were not acked before the close or
    /// the deadline: what the last attempt failed with, or for a close, ``Code/notConnected`` (``Code/noProxies``)
    /// when they never got a connection; `nil` otherwise, and after a cancelled run.
    public var lastFailure: Code?
    /// For a `send(contentsOf:)` call that failed part way: the records it accepted before the failure (they
    /// end in delivery reports like any other).
    public var acceptedRecords: DataProxyRecordIDs?
    /// For a `sendWithReceipt(contentsOf:)` call that failed part way: a receipt for the records it accepted, to
    /// await their outcome.
    public var acceptedReceipt: DeliveryReceipt?

    public init(
        _ code: Code,
        _ detail: String,
        isRetriable: Bool = false,
        persistence: Persistence = .notSent,
        group: String? = nil,
        stream: String? = nil,
        attempts: Int = 0,
        proxy: Endpoint? = nil,
        serverResultCode: DataProxyResultCode? = nil,
        serverErrorMessage: String? = nil,
        underlying: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.detail = detail
        self.isRetriable = isRetriable
        self.persistence = persistence
        self.group = group
        self.stream = stream
        self.attempts = attempts
        self.proxy = proxy
        self.serverResultCode = serverResultCode
        self.serverErrorMessage = serverErrorMessage
        self.underlying = underlying
    }

    public var description: String {
        var text = "DataProxyError.\(self.code): \(self.detail)"
        if let code = self.serverResultCode { text += " (errCode \(code))" }
        if let group = self.group { text += " [\(group)/\(self.stream ?? "")]" }
        if self.attempts > 0 { text += " after \(self.attempts) attempt(s)" }
        if let proxy = self.proxy { text += " via \(proxy)" }
        return text
    }
}
