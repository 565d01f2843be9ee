public import CoreMetrics
public import InLongWire
public import NIOSSL

extension DataProxyReceiver {
    /// How a ``DataProxyReceiver`` listens, validates and answers.
    public struct Configuration: Sendable {
        /// The address to listen on. Defaults to `127.0.0.1`.
        public var host = "127.0.0.1"
        /// The port; `0` picks a free one (see ``DataProxyReceiver/localAddress()``). Defaults to 46801, the
        /// DataProxy's port.
        public var port = InLongWireConstants.defaultPort
        /// The `dpIp` written in acks. Defaults to `nil`: the address the receiver listens on.
        public var advertisedIP: String?
        /// The largest frame accepted, length prefix included; a larger one closes the connection. Defaults to
        /// 524,288 bytes, the `max-msg-length` of the DataProxy's shipped configuration (its code default is 65,536).
        public var maxFrameSize = 512 << 10
        /// The largest decompressed body accepted. Defaults to 64 MiB.
        public var maxUncompressedLength = 64 << 20
        /// Connections accepted at once; more are closed on accept, as the server does. Defaults to 5000.
        public var maxConnections = 5000
        /// A connection that sends nothing for this long is closed. Defaults to 180 seconds, the server's
        /// `maxReadIdleTime`; `nil` never closes one.
        public var readIdleTimeout: Duration? = .seconds(180)
        /// Requests of one connection processed at once. Defaults to 1: as the DataProxy does, a connection's
        /// requests reach the sink in the order they were sent; more lets a slow sink overlap them.
        public var maxConcurrentRequests = 1
        /// Requests read ahead and waiting to be processed, over every connection. Beyond this the receiver stops
        /// reading the connection whose request does not fit, so a fast client is slowed by TCP instead of growing
        /// memory. Defaults to 1024.
        public var maxQueuedRequests = 1024
        /// Whether a request is acked only once the sink made it durable (fsync), so an ack means "on disk", as
        /// the DataProxy's sink-ack mode means "stored by the message queue". The sink does the syncing
        /// (``JSONLinesSink/init(url:append:fsync:metricsFactory:)`` with `fsync`, as `inlong receive --fsync`
        /// makes it); ``DataProxyReceiver/run()`` refuses to start with a sink that does not
        /// (``ReceiverError/sinkNotDurable``). Defaults to `false`: acked once written.
        public var fsync = false
        /// Groups accepted; requests for others are answered with error 115 (no topic). Defaults to `nil`: any.
        public var knownGroups: Set<String>?
        /// The port of DataProxy's HTTP API (`/dataproxy/message`) to serve on ``host`` next to the TCP port,
        /// `0` for a free one (see ``DataProxyReceiver/httpLocalAddress()``), or `nil` for none. Defaults to `nil`.
        public var httpPort: Int?
        /// Serves the HTTP API (``httpPort``) over `https://` with this configuration (a certificate chain and its
        /// key), or plain HTTP when `nil`. Defaults to `nil`.
        public var httpTLSConfiguration: TLSConfiguration?
        /// The Manager endpoint to serve next to the receiver, or `nil` for none. Defaults to `nil`.
        public var manager: DataProxyManagerServer.Configuration?
        /// Faults to inject from the start; see ``DataProxyReceiver/updateFaults(_:)``. Defaults to none.
        public var faults = Faults()
        /// Where the default observability delegate, ``DataProxyReceiverMetrics``, creates its instruments.
        /// Defaults to `nil`: the bootstrapped `MetricsSystem.factory` (nothing, when none is bootstrapped).
        public var metricsFactory: (any MetricsFactory)?
        /// Hears of every event the receiver counts. Defaults to `nil`: ``DataProxyReceiverMetrics`` over
        /// ``metricsFactory``.
        public var observabilityDelegate: (any DataProxyReceiverObservabilityDelegate)?

        public init() {}

        /// A receiver on `127.0.0.1` on a free port.
        public static var loopback: Configuration {
            var configuration = Configuration()
            configuration.port = 0
            return configuration
        }
    }

    /// Misbehaviour on purpose, for testing clients. Every fault can be changed while the receiver runs.
    public struct Faults: Sendable, Hashable {
        /// Answer each data request only after this delay. Defaults to `nil`.
        public var ackDelay: Duration?
        /// Store data requests but never answer them. Defaults to `false`.
        public var dropAcks = false
        /// Answer data requests with this error code instead of storing them, for ``errorRate`` of them.
        /// Defaults to `nil`.
        public var errorCode: DataProxyResultCode?
        /// The fraction (0 to 1) of data requests answered with ``errorCode``, spread evenly
        /// (0.5: every second one). Defaults to 1.
        public var errorRate = 1.0
        /// Close each connection after it delivered this many data requests; requests it had read ahead are
        /// neither stored nor answered. Defaults to `nil`.
        public var closeAfterFrames: Int?
        /// Stop reading from every connection (the client's writes then back up). Defaults to `false`.
        public var stopReading = false
        /// Answer HTTP requests with this status and no body instead of judging them, as a failing proxy
        /// behind a load balancer would. Defaults to `nil`.
        public var httpStatus: Int?
        /// The load reported in type-8 heartbeat replies; `nil` sends 0xFFFF (unknown), like the stock server.
        /// Defaults to `nil`.
        public var load: Int16?

        public init() {}
    }
}
