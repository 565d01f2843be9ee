/// Where a ``DataProxyReceiver`` puts what it receives. A message is acked only after ``write(_:)`` returned;
/// a throw is answered with the server's retriable error 114 (`PUT_EVENT_TO_CHANNEL_FAILURE`), like a full channel.
public protocol DataProxyReceiverSink: Sendable {
    /// Whether ``ReceivedMessage/records`` must be filled. A sink that only counts says `false`, and the receiver
    /// then neither decompresses nor splits type-7 bodies (as the real DataProxy, which forwards them whole).
    var needsRecords: Bool { get }
    /// Stores one message. Called in order for the messages of one connection.
    func write(_ message: ReceivedMessage) async throws
    /// Makes everything written so far durable. Called when the receiver stops.
    func flush() async throws
    /// Whether ``write(_:)`` returns only once the message is durable (fsynced), so an ack means "on disk".
    /// Reported by the receiver's metrics.
    var acksAreDurable: Bool { get }
}

extension DataProxyReceiverSink {
    public var needsRecords: Bool { true }
    public func flush() async throws {}
    public var acksAreDurable: Bool { false }
}
