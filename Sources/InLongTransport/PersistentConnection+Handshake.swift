import NIOCore

extension PersistentConnection {
    /// A connection that is open but not ready yet, as an on-connect hook sees it
    /// (``Configuration/onConnect``): it can log in or shake hands before other requests are let through.
    public struct Handshake: Sendable {
        /// The endpoint connected to.
        public let endpoint: Endpoint
        private let handle: PersistentChannelHandle<Codec>
        private let codec: Codec
        private let defaultTimeout: Duration

        init(endpoint: Endpoint, handle: PersistentChannelHandle<Codec>, codec: Codec, defaultTimeout: Duration) {
            self.endpoint = endpoint
            self.handle = handle
            self.codec = codec
            self.defaultTimeout = defaultTimeout
        }

        /// Sends `request` on this connection and returns its response.
        public func request(_ request: Codec.Outbound, timeout: Duration? = nil) async throws -> Codec.Inbound {
            try await self.handle.request(request, codec: self.codec, key: self.codec.key(of: request), timeout: TimeAmount(timeout ?? self.defaultTimeout))
        }

        /// Writes `frame` on this connection.
        public func send(_ frame: Codec.Outbound) async throws {
            try await self.handle.send(frame, codec: self.codec)
        }
    }
}
