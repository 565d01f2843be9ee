public import CoreMetrics
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The server side of a ``FrameCodec`` protocol: accepts persistent connections, splits what each peer sends into
/// frames, answers the peer's heartbeats on the event loop (``FrameCodec/heartbeatResponse(to:)``), and hands every
/// other frame to the application's handler with a ``FrameResponder`` bound to its connection.
///
/// Handlers run off the event loop in a pool shared by every connection: ``Configuration/handlerPool`` sets how
/// many run at once and how many requests may wait, ``Configuration/maxConcurrentRequests`` how many of one
/// connection's requests run at once. A slow handler does not hold the others back, and answers may leave out of
/// order (the codec's key pairs them). When a request can neither run nor wait, its connection stops reading
/// until there is room: a peer is slowed down, never dropped.
///
/// It is a `Service`: ``run()`` returns after ``stop()`` or a graceful shutdown, once every connection has finished
/// the requests it was handling.
///
/// ```swift
/// let server = PersistentServer(codec: MyCodec(), configuration: .init(host: "127.0.0.1", port: 7000)) { request, responder in
///     try? await responder.respond(MyCodec.answer(to: request))
/// }
/// try await server.run()
/// ```
public final class PersistentServer<Codec: FrameCodec>: Service, Sendable {
    /// Answers on the connection a request came from.
    public typealias Responder = FrameResponder<Codec>

    /// Handles one inbound frame; answer through the responder, or not at all.
    public typealias RequestHandler = @Sendable (Codec.Inbound, Responder) async -> Void

    /// An accepted connection, as its ``ConnectionHandler`` sees it.
    public struct Connection: Sendable {
        /// The peer's address.
        public let peer: SocketAddress?
        /// The server's address on this connection: the address the peer reached.
        public let local: SocketAddress?
        private let closeWhenAnswered: @Sendable () -> Void

        init(peer: SocketAddress?, local: SocketAddress?, closeWhenAnswered: @escaping @Sendable () -> Void) {
            self.peer = peer
            self.local = local
            self.closeWhenAnswered = closeWhenAnswered
        }

        /// Reads no further request, and closes once the answers handed over so far are written.
        public func close() {
            self.closeWhenAnswered()
        }
    }

    /// What the server does with one connection, made when the connection is accepted: state the application
    /// keeps per connection lives in these closures.
    public struct ConnectionHandler: Sendable {
        /// Handles each of the connection's requests.
        public var request: RequestHandler
        /// Called once, on the connection's event loop, when the connection has closed.
        public var closed: @Sendable () -> Void
        /// Called on the connection's event loop when the peer sent bytes that are not a frame, before
        /// ``Configuration/framingErrorPolicy`` applies.
        public var framingError: @Sendable (any Error) -> Void

        public init(
            request: @escaping RequestHandler,
            closed: @escaping @Sendable () -> Void = {},
            framingError: @escaping @Sendable (any Error) -> Void = { _ in }
        ) {
            self.request = request
            self.closed = closed
            self.framingError = framingError
        }
    }

    /// Makes a connection's handler when it is accepted; runs on the connection's event loop.
    public typealias ConnectionOpened = @Sendable (Connection) -> ConnectionHandler

    /// Where and how the server listens.
    public struct Configuration: Sendable {
        /// The address to listen on. Defaults to `127.0.0.1`.
        public var host = "127.0.0.1"
        /// The port; 0 picks a free one (see ``PersistentServer/localAddress()``). Defaults to 0.
        public var port = 0
        /// Connections open at once; more are closed as they arrive. Defaults to 1024.
        public var maxConnections = 1024
        /// Handlers running at once for one connection; its further requests wait in the pool's queue. Defaults
        /// to 64.
        public var maxConcurrentRequests = 64
        /// The handlers shared by every connection: how many run at once, and how many requests may wait for
        /// one; past both, a connection stops reading. Defaults to 256 handlers and 1024 waiting requests.
        public var handlerPool = HandlerPoolConfiguration(width: 256, queueLimit: 1024)
        /// A connection the peer sends nothing on (heartbeats included) for this long is closed. Defaults to 90
        /// seconds; `nil` never closes one for silence.
        public var readTimeout: Duration? = .seconds(90)
        /// The largest inbound frame; a larger one, or bytes that are not a frame, are handled by
        /// ``framingErrorPolicy``. Defaults to 16 MiB.
        public var maxFrameLength = 16 << 20
        /// What bytes that are not a frame do to a connection: close it, or drop what is buffered and go on.
        /// Defaults to ``PersistentConnection/Configuration/FramingErrorPolicy/close``.
        public var framingErrorPolicy = PersistentConnection<Codec>.Configuration.FramingErrorPolicy.close
        /// TCP keepalive on accepted sockets, for peers that vanish without a word. Defaults to `nil` (off).
        public var tcpKeepalive: TCPKeepalive?
        /// `SO_LINGER` on accepted sockets: closing waits up to this long for unsent data to go out; `.zero`
        /// resets the connection (unsent data is discarded). Whole seconds. Defaults to `nil` (an ordinary close).
        public var linger: Duration?
        /// Where the server's metrics go (see ``PersistentServer/statistics()``); `nil` (the default) for the
        /// bootstrapped `MetricsSystem.factory`. Published once a second and when the server stops, as
        /// `inlong_transport_server_*` with the dimension `listener`.
        public var metricsFactory: (any MetricsFactory)?
        /// Handlers in front of each connection's own, such as TLS (`InLongTransportTLS`); its future is not
        /// awaited: frames flow once the handlers let them through. Defaults to `nil` (plain TCP).
        public var channelSetup: ChannelSetup?

        public init(host: String = "127.0.0.1", port: Int = 0) {
            self.host = host
            self.port = port
        }
    }

    /// What the server tracks: its listener and open connections. Changed through ``modify(_:)`` only.
    private struct State {
        var listener: (any Channel)?
        var open: [ObjectIdentifier: any Channel] = [:]
        /// `run()` waiting for the last connection to close, once stopped.
        var allClosed: CheckedContinuation<Void, Never>?
        var stopped = false
        var started = false

        /// `false` if the server ran already.
        mutating func start() -> Bool {
            defer { self.started = true }
            return !self.started
        }

        /// The server listens; `true` if it was stopped meanwhile (and must close the listener).
        mutating func listening(on listener: any Channel) -> Bool {
            self.listener = listener
            return self.stopped
        }

        /// Stops; the listener to close, if any.
        mutating func stop() -> (any Channel)? {
            self.stopped = true
            return self.listener
        }

        mutating func accept(_ channel: any Channel, maxConnections: Int) -> Verdict {
            guard !self.stopped else { return .close }
            guard self.open.count < maxConnections else { return .reject }
            self.open[ObjectIdentifier(channel)] = channel
            return .serve
        }

        /// A connection closed; the waiter to resume if it was the last.
        mutating func closed(_ id: ObjectIdentifier) -> CheckedContinuation<Void, Never>? {
            self.open.removeValue(forKey: id)
            guard self.open.isEmpty else { return nil }
            defer { self.allClosed = nil }
            return self.allClosed
        }

        /// `true` if no connection is open; otherwise `waiter` is resumed when the last closes.
        mutating func waitUntilAllClosed(_ waiter: CheckedContinuation<Void, Never>) -> Bool {
            guard self.open.isEmpty else {
                self.allClosed = waiter
                return false
            }
            return true
        }
    }

    public let codec: Codec
    public let configuration: Configuration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let pool: HandlerPoolCore
    private let state = Mutex(State())
    private let address: (stream: AsyncStream<SocketAddress>, continuation: AsyncStream<SocketAddress>.Continuation)
    private let accepted = Atomic<Int>(0)
    private let rejected = Atomic<Int>(0)
    private let discarded = ServerCounter()
    private let connectionOpened: ConnectionOpened
    private let connectionRejected: @Sendable () -> Void

    /// Counts of the server's connections and requests.
    public typealias Statistics = PersistentServerStatistics

    /// A server whose every request goes to `handler`.
    public convenience init(
        codec: Codec,
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger.disabled,
        handler: @escaping RequestHandler
    ) {
        let connectionHandler = ConnectionHandler(request: handler)
        self.init(codec: codec, configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger) { _ in
            connectionHandler
        }
    }

    /// A server that makes each connection's handler when it accepts the connection (`connectionOpened`), and
    /// calls `connectionRejected` for each connection turned away by ``Configuration/maxConnections``.
    public init(
        codec: Codec,
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger.disabled,
        connectionRejected: @escaping @Sendable () -> Void = {},
        connectionOpened: @escaping ConnectionOpened
    ) {
        self.codec = codec
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.connectionOpened = connectionOpened
        self.connectionRejected = connectionRejected
        // Each connection brings its own handler (see ServerConnectionHandler): the pool only schedules requests.
        self.pool = HandlerPoolCore(
            configuration: configuration.handlerPool,
            perConnectionLimit: max(configuration.maxConcurrentRequests, 1)
        )
        self.address = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// The address it listens on, once it does.
    public func localAddress() async throws -> SocketAddress {
        for await address in self.address.stream { return address }
        throw TransportError(.shutDown)
    }

    public func statistics() -> Statistics {
        var statistics = Statistics()
        statistics.acceptedConnections = self.accepted.load(ordering: .relaxed)
        statistics.rejectedConnections = self.rejected.load(ordering: .relaxed)
        statistics.requestsHandled = self.pool.handledCount
        statistics.queuedRequests = self.pool.queuedCount
        statistics.pausedConnections = self.pool.pausedCount
        statistics.receiveBuffersDiscarded = self.discarded.current
        statistics.openConnections = self.modify { $0.open.count }
        return statistics
    }

    /// The open connections' channels (for tests that read socket options).
    var openChannels: [any Channel] { self.modify { Array($0.open.values) } }

    private func modify<Value>(_ body: (inout State) -> Value) -> Value {
        self.state.withLock { body(&$0) }
    }

    /// Closes every open connection at once, answers under way or not, as a crashing server would; the server
    /// keeps listening.
    package func closeConnections() {
        for channel in self.openChannels { channel.close(promise: nil) }
    }

    /// Stops accepting; every connection handles no new request, answers those under way, then closes, and
    /// ``run()`` returns.
    public func stop() {
        let listener = self.modify { $0.stop() }
        listener?.close(promise: nil)
        self.pool.stop()
    }

    public func run() async throws {
        precondition(self.modify { $0.start() }, "PersistentServer.run() must be called once")
        defer { self.address.continuation.finish() }
        let listener: any Channel
        do {
            listener = try await self.bind()
        } catch {
            self.stop()
            throw error
        }
        if self.modify({ $0.listening(on: listener) }) { listener.close(promise: nil) }
        if let address = listener.localAddress { self.address.continuation.yield(address) }
        let bound = listener.localAddress
        let host = bound?.ipAddress ?? self.configuration.host
        let label = "\(host.contains(":") ? "[\(host)]" : host):\(bound?.port ?? self.configuration.port)"
        // Published once a second by an event-loop timer, and once more when the server has stopped.
        let eventLoop = listener.eventLoop
        let publisher = ServerMetrics.make(listener: label, factory: self.configuration.metricsFactory).map { metrics in
            let timer = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                metrics.publish(self.statistics())
            }
            return (metrics, timer)
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withDiscardingTaskGroup { group in
                    group.addTask { await self.pool.run() }
                    try? await listener.closeFuture.get()
                    // However the listener closed, the server is stopping.
                    self.stop()
                    await self.waitUntilAllClosed()
                }
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.stop()
            for channel in self.openChannels { channel.close(promise: nil) }
        }
        if let (metrics, timer) = publisher {
            // The last publication is the final count: the periodic one has ended before it.
            let cancelled = eventLoop.makePromise(of: Void.self)
            timer.cancel(promise: cancelled)
            try? await cancelled.futureResult.get()
            metrics.publish(self.statistics())
        }
    }

    private func waitUntilAllClosed() async {
        await withCheckedContinuation { continuation in
            if self.modify({ $0.waitUntilAllClosed(continuation) }) { continuation.resume() }
        }
    }

    private func bind() async throws -> any Channel {
        try await ServerBootstrap(group: self.eventLoopGroup)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try self.accept(channel) }.flatMap { served in
                    guard served else { return channel.eventLoop.makeSucceededVoidFuture() }
                    let options = SocketOptions(keepalive: self.configuration.tcpKeepalive, linger: self.configuration.linger)
                    return options.apply(to: channel).flatMapErrorThrowing { error in
                        channel.close(promise: nil)
                        throw error
                    }
                }
            }
            .bind(host: self.configuration.host, port: self.configuration.port)
            .get()
    }

    fileprivate enum Verdict { case serve, reject, close }

    /// On the new connection's event loop; `false` when it is turned away (and closed).
    private func accept(_ channel: any Channel) throws -> Bool {
        let id = ObjectIdentifier(channel)
        switch self.modify({ $0.accept(channel, maxConnections: self.configuration.maxConnections) }) {
        case .serve:
            self.accepted.add(1, ordering: .relaxed)
        case .reject:
            self.rejected.add(1, ordering: .relaxed)
            self.connectionRejected()
            channel.close(promise: nil)
            return false
        case .close:
            channel.close(promise: nil)
            return false
        }
        channel.closeFuture.whenComplete { _ in
            self.modify { $0.closed(id) }?.resume()
        }
        do {
            let operations = channel.pipeline.syncOperations
            // A setup that fails later (a TLS handshake refused) closes the connection itself.
            _ = try self.configuration.channelSetup?.prepare(channel, nil)
            if let timeout = self.configuration.readTimeout {
                try operations.addHandler(IdleStateHandler(readTimeout: TimeAmount(timeout)))
            }
            try operations.addHandler(
                ServerConnectionHandler(
                    codec: self.codec,
                    pool: self.pool,
                    connectionOpened: self.connectionOpened,
                    maxFrameLength: self.configuration.maxFrameLength,
                    framingErrorPolicy: self.configuration.framingErrorPolicy,
                    discarded: self.discarded
                )
            )
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return true
    }
}
