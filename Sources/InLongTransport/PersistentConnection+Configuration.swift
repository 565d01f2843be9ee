public import CoreMetrics
public import NIOCore

extension PersistentConnection {
    /// How a ``PersistentConnection`` connects, correlates, heartbeats and reconnects.
    public struct Configuration: Sendable {
        /// The endpoints, tried in rotation. Required, at least one.
        public var endpoints: [Endpoint]
        /// Where the connection's metrics go; `nil` (the default) for the bootstrapped `MetricsSystem.factory`.
        public var metricsFactory: (any MetricsFactory)?
        /// The limit of one connect attempt. Defaults to 5 seconds.
        public var connectTimeout: Duration = .seconds(5)
        /// The default timeout of ``PersistentConnection/request(_:timeout:)``: how long a response may take
        /// once the request has been written to the socket (handed to the kernel, in whose buffer it may still
        /// wait). Time spent queued before that (for an in-flight slot, or behind other frames while the socket
        /// drains) does not count, so that on a slow but healthy link a request is not failed, and retried as a
        /// duplicate, merely for waiting its turn; ``queueTimeout`` bounds that wait. Defaults to 30 seconds.
        public var requestTimeout: Duration = .seconds(30)
        /// How long a request or send may wait to be written to the socket.
        ///
        /// One still in the connection's queue this long after its submission fails with
        /// ``TransportError/Code/requestTimeout`` and ``TransportError/mayHaveBeenDelivered`` `false` (never
        /// written, so a retry cannot duplicate it). Frames already handed to the socket wait in its buffer; if
        /// the socket takes none of them for this long, the peer reads nothing, and the connection is closed with
        /// ``TransportError/Code/unresponsive`` and reopened.
        ///
        /// Set it above the time the slowest expected link needs to carry what can queue (``maxQueued``), or
        /// requests fail unwritten under load (back-pressure, not loss). `nil` lets requests wait until written,
        /// cancelled, or failed by the connection closing (see ``readTimeout``). Defaults to 60 seconds.
        public var queueTimeout: Duration? = .seconds(60)
        /// After this many request timeouts in a row with no response between, the connection is deemed
        /// unresponsive (a black-holed path, a hung peer behind a live socket) and closed, to be reopened; its
        /// pending requests fail with ``TransportError/Code/unresponsive`` (in-flight ones as possibly
        /// delivered).
        ///
        /// Any response resets the count, even a late one to a request that already timed out: the peer is slow,
        /// not gone, and a new connection would not help. Heartbeat replies do not: a peer that answers
        /// heartbeats while requests go unanswered is still suspect. Requests that timed out unwritten
        /// (``queueTimeout``) do not count. Values below 1 count as 1; `nil` never recycles. Defaults to 3.
        public var recycleAfterTimeouts: Int? = 3
        /// A heartbeat is sent after this long without writing. Defaults to 30 seconds; `nil` sends none.
        public var heartbeatInterval: Duration? = .seconds(30)
        /// The peer is declared dead, and the connection closed, after this long without a byte from it.
        /// Defaults to 90 seconds; `nil` never declares it dead.
        public var readTimeout: Duration? = .seconds(90)
        /// The reconnect backoff. Defaults to 100 ms doubling up to 10 s, ±20 % jitter.
        public var backoff = ExponentialBackoff()
        /// Whether to reconnect after a connection closes or every endpoint failed. Defaults to `true`; with
        /// `false`, ``PersistentConnection/run()`` returns at the first close or failed round of connects.
        public var reconnect = true
        /// Runs on every new connection before it counts as ready (log in, shake hands); throwing closes it and
        /// counts as a failed connect. Defaults to `nil`.
        public var onConnect: ConnectHook?
        /// Handlers in front of the connection's own, such as TLS (`InLongTransportTLS`). A connection counts as
        /// connected only once the setup's future succeeds, within ``connectTimeout`` of the dial; if it fails, or
        /// takes longer, the attempt fails like a refused connect and is retried with the backoff. Defaults to
        /// `nil` (plain TCP).
        public var channelSetup: ChannelSetup?
        /// A connection that stays up this long, or carries a response, counts as healthy: the backoff starts
        /// over and a later drop is retried at once. One that closes sooner counts as a failed attempt, so a peer
        /// that accepts and closes is redialled at the backoff's pace. Defaults to 5 seconds.
        public var healthyAfter: Duration = .seconds(5)
        /// Requests awaiting responses at once on the connection. Defaults to 1024.
        public var maxInFlight = 1024
        /// Requests and sends waiting for an in-flight slot or for the socket to become writable; beyond this,
        /// ``TransportError/Code/tooManyRequests``. Defaults to 8192.
        public var maxQueued = 8192
        /// The largest inbound frame accepted; a larger announced frame, or this many bytes buffered while the
        /// codec still needs more to find a frame's end, is a framing error. Defaults to 16 MiB.
        public var maxFrameLength = 16 << 20
        /// What a framing error does (the codec throws, or a frame exceeds ``maxFrameLength``). Defaults to
        /// ``FramingErrorPolicy/close``.
        public var framingErrorPolicy = FramingErrorPolicy.close
        /// Close and reopen a connection after this age (after draining it), for load balancers that pin
        /// connections. Defaults to `nil` (never).
        public var maxConnectionAge: Duration?
        /// Close and reopen a connection that carried no request or send (heartbeats aside) for this long, when
        /// nothing is pending: a long-idle connection may have been dropped silently by a middlebox.
        /// Defaults to `nil` (never).
        public var maxIdleTime: Duration?
        /// How long a graceful close waits for in-flight requests. Defaults to 10 seconds.
        public var drainTimeout: Duration = .seconds(10)
        /// Socket write-buffer watermarks: above `high` the channel is not writable and requests queue in the
        /// process until it drains below `low`. Defaults to 256 KiB / 1 MiB.
        public var writeBufferWaterMarks = ChannelOptions.Types.WriteBufferWaterMark(low: 256 << 10, high: 1 << 20)
        /// TCP keepalive on the socket, for peers that vanish without a word on protocols without heartbeats.
        /// Defaults to `nil` (off).
        public var tcpKeepalive: TCPKeepalive?
        /// `SO_LINGER`: closing waits up to this long for unsent data to go out; `.zero` resets the connection
        /// (unsent data is discarded). Whole seconds. Defaults to `nil` (an ordinary close).
        public var linger: Duration?
        /// The handlers of the peer's requests (``PersistentConnection/InboundRequestHandler``): how many run at
        /// once, and how many requests may wait for one; past both, the connection stops reading until there is
        /// room. A ``PersistentConnectionPool`` shares one such pool among its connections. Defaults to 16 handlers and
        /// 1024 waiting requests.
        public var inboundHandlerPool = HandlerPoolConfiguration(width: 16, queueLimit: 1024)

        /// What the connection does with bytes that are not a valid frame.
        public enum FramingErrorPolicy: Sendable, Hashable {
            /// Close the connection: pending requests fail, and it reconnects. For protocols that cannot find
            /// the next frame after garbage.
            case close
            /// Discard what is buffered and go on reading (counted in
            /// ``PersistentConnectionStatistics/receiveBuffersDiscarded``): for protocols whose framer resynchronises.
            case discardBuffer
        }

        public init(endpoints: [Endpoint]) {
            self.endpoints = endpoints
        }
    }
}
