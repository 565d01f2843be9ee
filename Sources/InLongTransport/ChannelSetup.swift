public import NIOCore

/// Handlers placed in front of the transport's own on every connection, such as TLS.
///
/// The transport knows nothing of what they do: ``PersistentConnection``, ``PersistentConnectionPool`` and
/// ``PersistentServer`` call `prepare` on the new connection's event loop before they add their own handler, so what
/// it adds sits between the socket and the frames. `InLongTransportTLS` makes the TLS ones
/// (`ChannelSetup.tlsClient(_:serverHostname:)` and `ChannelSetup.tlsServer(_:)`).
public struct ChannelSetup: Sendable {
    /// Adds handlers to `channel`'s pipeline (with `channel.pipeline.syncOperations`: it runs on the channel's
    /// event loop) and returns a future that succeeds once the connection can carry frames (a TLS handshake
    /// completed), or fails if it never will. `endpoint` is the address dialled, `nil` on a server's accepted
    /// connection.
    public typealias Prepare = @Sendable (_ channel: any Channel, _ endpoint: Endpoint?) throws -> EventLoopFuture<Void>

    @usableFromInline let prepare: Prepare

    public init(_ prepare: @escaping Prepare) {
        self.prepare = prepare
    }
}
