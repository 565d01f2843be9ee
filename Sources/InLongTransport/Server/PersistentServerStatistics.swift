import Synchronization

/// A count shared by a server and its connection handlers.
final class ServerCounter: Sendable {
    private let value = Atomic<Int>(0)

    func add(_ amount: Int) {
        self.value.add(amount, ordering: .relaxed)
    }

    var current: Int { self.value.load(ordering: .relaxed) }
}

/// Counts of a ``PersistentServer``'s connections and requests.
public struct PersistentServerStatistics: Sendable, Hashable {
    public var acceptedConnections = 0
    public var rejectedConnections = 0
    public var openConnections = 0
    public var requestsHandled = 0
    /// Requests waiting for a handler now.
    public var queuedRequests = 0
    /// Connections not reading now because the handler pool and its queue are full.
    public var pausedConnections = 0
    /// Receive buffers dropped because they held bytes that are not a frame (with the discard policy).
    public var receiveBuffersDiscarded = 0

    public init() {}
}
