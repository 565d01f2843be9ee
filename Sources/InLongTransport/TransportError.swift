/// An error of the persistent-connection layer.
///
/// ``mayHaveBeenDelivered`` tells whether the peer may have received the request the error is about: `false` when
/// it never left this process, `true` when it was written but no response came.
public struct TransportError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What happened.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case notConnected, connectFailed, connectTimeout, connectionClosed, heartbeatTimeout, requestTimeout
            case cancelled, tooManyRequests, duplicateKey, protocolViolation, encodingFailed, shutDown
            case noEndpoints, idleTimeout, unresponsive
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// No connection is ready.
        public static let notConnected = Code(.notConnected)
        /// Connecting failed (refused, unreachable).
        public static let connectFailed = Code(.connectFailed)
        /// A connect attempt took longer than the connect timeout.
        public static let connectTimeout = Code(.connectTimeout)
        /// The connection closed (by the peer, a reset, or locally) while the request was pending.
        public static let connectionClosed = Code(.connectionClosed)
        /// Nothing arrived from the peer within the read timeout; the connection was closed as dead.
        public static let heartbeatTimeout = Code(.heartbeatTimeout)
        /// No response within the request's timeout, counted from when its frame was written to the socket
        /// (``mayHaveBeenDelivered`` is `true`); or the request waited in the connection's queue longer than the
        /// queue timeout and was never written (``mayHaveBeenDelivered`` is `false`).
        public static let requestTimeout = Code(.requestTimeout)
        /// The awaiting task was cancelled.
        public static let cancelled = Code(.cancelled)
        /// The in-flight cap and the wait queue are full.
        public static let tooManyRequests = Code(.tooManyRequests)
        /// A request with the same key is already pending on the connection.
        public static let duplicateKey = Code(.duplicateKey)
        /// The peer sent bytes the codec rejected.
        public static let protocolViolation = Code(.protocolViolation)
        /// The codec could not encode the frame.
        public static let encodingFailed = Code(.encodingFailed)
        /// The connection or pool is shut down.
        public static let shutDown = Code(.shutDown)
        /// The pool has no endpoints.
        public static let noEndpoints = Code(.noEndpoints)
        /// The connection carried nothing for the maximum idle time and was closed, to be reopened.
        public static let idleTimeout = Code(.idleTimeout)
        /// The connection was closed as unresponsive, to be reopened: several requests in a row timed out with no
        /// response between, or the socket took no bytes for the queue timeout while frames waited.
        public static let unresponsive = Code(.unresponsive)

        public var description: String {
            switch self.base {
            case .notConnected: "notConnected"
            case .connectFailed: "connectFailed"
            case .connectTimeout: "connectTimeout"
            case .connectionClosed: "connectionClosed"
            case .heartbeatTimeout: "heartbeatTimeout"
            case .requestTimeout: "requestTimeout"
            case .cancelled: "cancelled"
            case .tooManyRequests: "tooManyRequests"
            case .duplicateKey: "duplicateKey"
            case .protocolViolation: "protocolViolation"
            case .encodingFailed: "encodingFailed"
            case .shutDown: "shutDown"
            case .noEndpoints: "noEndpoints"
            case .idleTimeout: "idleTimeout"
            case .unresponsive: "unresponsive"
            }
        }
    }

    /// What happened.
    public var code: Code
    /// Whether the peer may have received the request (it was written before the failure).
    public var mayHaveBeenDelivered: Bool
    /// The endpoint involved, when known.
    public var endpoint: Endpoint?
    /// The underlying error, when there is one (a socket error, a codec error).
    public var underlying: (any Error & Sendable)?

    public init(
        _ code: Code,
        mayHaveBeenDelivered: Bool = false,
        endpoint: Endpoint? = nil,
        underlying: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.mayHaveBeenDelivered = mayHaveBeenDelivered
        self.endpoint = endpoint
        self.underlying = underlying
    }

    /// The same error for a request that was (or was not) written.
    func delivered(_ written: Bool) -> TransportError {
        var copy = self
        copy.mayHaveBeenDelivered = written
        return copy
    }

    public static func == (lhs: TransportError, rhs: TransportError) -> Bool {
        lhs.code == rhs.code && lhs.mayHaveBeenDelivered == rhs.mayHaveBeenDelivered && lhs.endpoint == rhs.endpoint
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.code)
        hasher.combine(self.mayHaveBeenDelivered)
    }

    public var description: String {
        var text = "transport error \(self.code)"
        if let endpoint { text += " (\(endpoint))" }
        if self.mayHaveBeenDelivered { text += ", request may have been delivered" }
        if let underlying { text += ": \(underlying)" }
        return text
    }
}
