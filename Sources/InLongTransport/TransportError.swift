import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

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
    @usableFromInline
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

    /// One plain line naming the address and the cause, e.g. `cannot connect to 127.0.0.1:1: connection
    /// refused`: what an operator reads, never a dump of the socket library's errors.
    public var description: String {
        let peer = self.endpoint.map { "\($0)" } ?? "the peer"
        var text: String
        switch self.code {
        case .connectFailed: text = "cannot connect to \(peer)"
        case .connectTimeout: text = "cannot connect to \(peer): timed out"
        case .notConnected: text = "no connection to \(peer) is ready"
        case .connectionClosed: text = "the connection to \(peer) closed"
        case .heartbeatTimeout: text = "\(peer) sent nothing within the read timeout"
        case .requestTimeout: text = "no answer from \(peer) in time"
        case .cancelled: text = "cancelled"
        case .tooManyRequests: text = "too many requests wait for \(peer)"
        case .duplicateKey: text = "a request with the same key already waits for \(peer)"
        case .protocolViolation: text = "\(peer) sent bytes that break the protocol"
        case .encodingFailed: text = "the request to \(peer) cannot be encoded"
        case .shutDown: text = "the connection to \(peer) is shut down"
        case .noEndpoints: text = "no address to connect to"
        case .idleTimeout: text = "the idle connection to \(peer) was closed"
        case .unresponsive: text = "\(peer) stopped answering; its connection was closed"
        default: text = "\(self.code) (\(peer))"
        }
        if let underlying, self.code != .connectTimeout { text += ": " + Self.plainCause(underlying) }
        if self.mayHaveBeenDelivered { text += " (the request may have been delivered)" }
        return text
    }

    /// A socket library's error in a few plain words: `connection refused`, `cannot resolve example.invalid`.
    package static func plainCause(_ error: any Error) -> String {
        switch error {
        case let error as NIOConnectionError:
            if let failure = error.connectionErrors.first { return Self.plainCause(failure.error) }
            if error.dnsAError != nil || error.dnsAAAAError != nil { return "cannot resolve \(error.host)" }
            return "no address for \(error.host)"
        case let error as IOError:
            return String(cString: strerror(error.errnoCode)).lowercased()
        case let error as SocketAddressError:
            if case .unknown(let host, _) = error { return "cannot resolve \(host)" }
            return "\(error)"
        case let error as ChannelPipelineError where error == .notFound:
            // The connection's handler was gone when looked for: the channel closed as soon as it opened.
            return "the peer closed the connection at once"
        case let error as ChannelError:
            if case .connectTimeout(let timeout) = error { return "timed out after \(Duration(timeout))" }
            return "\(error)"
        case let error as TransportError:
            return error.description
        default:
            return "\(error)"
        }
    }
}
