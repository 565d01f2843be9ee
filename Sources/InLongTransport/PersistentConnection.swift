public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
public import Synchronization

/// A persistent TCP connection carrying any binary protocol described by a ``FrameCodec``: request/response
/// correlation by key with per-request timeouts, fire-and-forget sends, heartbeats, dead-peer detection and
/// automatic reconnection with backoff over several endpoints.
///
/// It is a `Service`: ``run()`` owns all background work and returns after a graceful shutdown (or ``close()``)
/// has drained in-flight requests.
///
/// ```swift
/// let connection = PersistentConnection(codec: MyCodec(), configuration: .init(endpoints: [endpoint]))
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await connection.run() }
///     let response = try await connection.request(myRequest)
///     connection.close()
/// }
/// ```
///
/// When a connection drops, every pending request fails at once with a ``TransportError`` whose
/// ``TransportError/mayHaveBeenDelivered`` says whether it had been written.
///
/// Frames the peer sends on its own (its requests) go to the inbound request handler with a ``FrameResponder``
/// bound to the connection, as on ``PersistentServer``: handlers run off the event loop, up to
/// ``Configuration/inboundHandlerPool`` at once, and when the pool and its queue are full the connection stops
/// reading until there is room.
public final class PersistentConnection<Codec: FrameCodec>: Service, Sendable {
    /// Answers an inbound request on the connection it came from.
    public typealias Responder = FrameResponder<Codec>

    /// Handles one frame the peer sent on its own; answer through the responder, or not at all.
    public typealias InboundRequestHandler = @Sendable (Codec.Inbound, Responder) async -> Void

    @usableFromInline typealias ChannelHandle = PersistentChannelHandle<Codec>
    /// The machine as it runs: over this connection's channels and its state watchers.
    @usableFromInline typealias ConnectionMachine = PersistentConnectionStateMachine<
        ChannelHandle, AsyncStream<PersistentConnectionState>.Continuation
    >

    /// Runs on every new connection before it counts as ready; throwing closes it, and it counts as a failed
    /// connect (backed off).
    public typealias ConnectHook = @Sendable (Handshake) async throws -> Void

    private enum Event: Sendable {
        case connected(ChannelHandle)
        case connectFailed(TransportError)
        case closed(channelID: Int, reason: TransportError)
        case backoffElapsed
        case ageExpired(channelID: Int)
        case provedHealthy(channelID: Int)
        case shutdown
    }

    public let codec: Codec
    public let configuration: Configuration
    /// The loop every channel of this connection lives on, reconnections included.
    public let eventLoop: any EventLoop
    /// Runs a task on ``eventLoop``: a nonisolated task that prefers it sends its requests and gets their
    /// responses without crossing threads (see ``EventLoopTaskExecutor`` for what that costs the loop).
    public let taskExecutor: EventLoopTaskExecutor
    private let logger: Logger
    /// Runs the peer's requests; `nil` without a handler.
    private let inbound: InboundHandlerPool<Codec>?
    /// Whether ``run()`` runs the inbound pool's workers (a ``PersistentConnectionPool`` runs one pool for all its connections).
    private let ownsInbound: Bool
    /// The channel handler's request path, compiled for the codec (see ``ConnectionHandlerEntryPoints``).
    private let entryPoints: ConnectionHandlerEntryPoints<Codec>
    /// Everything that changes, behind the one lock: see ``modifyStateAndRunActions(_:)``.
    @usableFromInline let state: Mutex<ConnectionMachine>
    private let nextWatcherID = Atomic<Int>(0)
    private let events: AsyncStream<Event>
    private let eventSink: AsyncStream<Event>.Continuation
    private let counters = StatisticsCounters()
    /// Per endpoint; `nil` values when metrics go nowhere.
    private let metrics: [Endpoint: TransportMetrics?]

    /// Creates a connection; nothing happens until ``run()``.
    ///
    /// - Parameters:
    ///   - codec: The protocol.
    ///   - configuration: Endpoints, timeouts, heartbeats, backoff and limits.
    ///   - eventLoopGroup: Where the socket lives: one of its loops, the same for every reconnection. Defaults to
    ///     the shared singleton group.
    ///   - logger: Background logger. Defaults to one that logs nothing.
    ///   - random: The jitter source for backoff (inject a fixed one in tests).
    ///   - inboundRequestHandler: Handles each frame the peer sends on its own (see ``FrameCodec/kind(of:)``), off
    ///     the event loop; without one, such frames are dropped and counted in
    ///     ``PersistentConnectionStatistics/unsolicitedDropped``.
    @inlinable
    public convenience init(
        codec: Codec,
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger.disabled,
        random: @escaping @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) },
        inboundRequestHandler: InboundRequestHandler? = nil
    ) {
        // Inlined into the application's module, which names the codec: the handler's entry points are made there.
        self.init(
            codec: codec,
            configuration: configuration,
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            random: random,
            inboundRequestHandler: inboundRequestHandler,
            entryPoints: ConnectionHandlerEntryPoints()
        )
    }

    @usableFromInline
    convenience init(
        codec: Codec,
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        random: @escaping @Sendable (ClosedRange<Double>) -> Double,
        inboundRequestHandler: InboundRequestHandler?,
        entryPoints: ConnectionHandlerEntryPoints<Codec>
    ) {
        self.init(
            codec: codec,
            configuration: configuration,
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            random: random,
            inbound: inboundRequestHandler.map {
                InboundHandlerPool(configuration: configuration.inboundHandlerPool, handler: $0)
            },
            ownsInbound: true,
            entryPoints: entryPoints
        )
    }

    /// With `ownsInbound` false, `inbound` is run (and stopped) by whoever shares it.
    init(
        codec: Codec,
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        random: @escaping @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) },
        inbound: InboundHandlerPool<Codec>?,
        ownsInbound: Bool,
        entryPoints: ConnectionHandlerEntryPoints<Codec>
    ) {
        self.entryPoints = entryPoints
        self.codec = codec
        self.configuration = configuration
        self.eventLoop = eventLoopGroup.next()
        self.taskExecutor = EventLoopTaskExecutor(eventLoop: self.eventLoop)
        self.logger = logger
        self.inbound = inbound
        self.ownsInbound = ownsInbound
        self.state = Mutex(
            ConnectionMachine(
                endpoints: configuration.endpoints,
                reconnect: ReconnectStateMachine(
                    endpointCount: configuration.endpoints.count,
                    backoff: configuration.backoff,
                    reconnects: configuration.reconnect,
                    random: random
                )
            )
        )
        (self.events, self.eventSink) = AsyncStream.makeStream()
        self.metrics = Dictionary(
            configuration.endpoints.map { ($0, TransportMetrics.make(endpoint: $0, factory: configuration.metricsFactory)) }
        ) { first, _ in first }
    }

    // MARK: Public API

    /// The current connectivity state.
    public var connectivityState: PersistentConnectionState { self.read { $0.connectivity } }

    /// The current state, then every change, until the connection shuts down.
    public func connectivityStates() -> AsyncStream<PersistentConnectionState> {
        let (stream, continuation) = AsyncStream.makeStream(of: PersistentConnectionState.self)
        let id = self.nextWatcherID.wrappingAdd(1, ordering: .relaxed).newValue
        continuation.onTermination = { [weak self] _ in
            self?.modifyStateAndRunActions { $0.watcherRemoved(id: id) }
        }
        self.modifyStateAndRunActions { $0.watcherAdded(continuation, id: id) }
        return stream
    }

    /// Whether a request submitted now would be written: the connection is ready and not draining. A pool
    /// chooses among these only, so a draining connection's refusals never count against its peer.
    public var isAcceptingRequests: Bool { self.read { $0.isAcceptingRequests } }

    /// The endpoint of the open channel, when ready.
    public var connectedEndpoint: Endpoint? { self.read { $0.connectedEndpoint } }

    /// The open channel (for tests that read socket options).
    var currentChannel: (any Channel)? { self.read { $0.openChannel?.channel } }

    /// A snapshot of the counters.
    public func statistics() -> PersistentConnectionStatistics { self.counters.snapshot() }

    /// Requests in flight now.
    public var inFlightCount: Int { self.counters.inFlight.load(ordering: .relaxed) }

    /// The load the peer reports in heartbeat replies on the open channel, smoothed, or `nil` when it reports
    /// none (see ``FrameCodec/reportedLoad(in:)``).
    public var reportedLoad: Int? {
        let load = self.counters.reportedLoad.load(ordering: .relaxed)
        return load == .min ? nil : load
    }

    /// Sends `request` and returns the response whose key matches, or throws ``TransportError`` (timeout,
    /// connection lost, not connected, cancellation). Fails at once with ``TransportError/Code/notConnected``
    /// when no connection is ready. The `timeout` (default ``Configuration/requestTimeout``) runs from when the
    /// request is written to the socket; the wait before that is bounded by ``Configuration/queueTimeout``.
    @inlinable
    public func request(_ request: Codec.Outbound, timeout: Duration? = nil) async throws -> Codec.Inbound {
        guard let handle = self.read({ $0.openChannel }) else {
            throw TransportError(.notConnected, endpoint: nil)
        }
        return try await handle.request(
            request,
            codec: self.codec,
            key: self.codec.key(of: request),
            timeout: TimeAmount(timeout ?? self.configuration.requestTimeout)
        )
    }

    /// Submits `request` at once, without suspending, and returns the future response: requests submitted one
    /// after another from one task are written in that order. Throws ``TransportError/Code/notConnected`` when
    /// no connection is ready. The future fails as ``request(_:timeout:)`` throws; it is not cancelled with the
    /// caller's task.
    @inlinable
    public func submit(_ request: Codec.Outbound, timeout: Duration? = nil) throws -> EventLoopFuture<Codec.Inbound> {
        guard let handle = self.read({ $0.openChannel }) else {
            throw TransportError(.notConnected, endpoint: nil)
        }
        return handle.submit(request, codec: self.codec, timeout: TimeAmount(timeout ?? self.configuration.requestTimeout))
    }

    /// Writes `frame` without expecting a response; returns once it is written to the socket.
    @inlinable
    public func send(_ frame: Codec.Outbound) async throws {
        guard let handle = self.read({ $0.openChannel }) else {
            throw TransportError(.notConnected, endpoint: nil)
        }
        try await handle.send(frame, codec: self.codec)
    }

    /// Writes `frame` without waiting for anything; errors are dropped.
    @inlinable
    public func sendAndForget(_ frame: Codec.Outbound) {
        guard let handle = self.read({ $0.openChannel }) else { return }
        handle.sendAndForget(frame, codec: self.codec)
    }

    /// Begins a graceful close: no new requests, in-flight ones complete (up to the drain timeout), then
    /// ``run()`` returns. The same happens on graceful shutdown of a `ServiceGroup`.
    public func close() {
        self.eventSink.yield(.shutdown)
    }

    /// Drains the open channel and reconnects (to the next endpoint): for rebalancing.
    public func recycle() {
        self.modifyStateAndRunActions { $0.recycleRequested() }
    }

    // MARK: State

    /// Every change of state: lock, one event of the machine, tell the watchers, unlock, then run the action.
    /// Returns the action, for what only ``runUntilClosed()`` can start: a connect or a backoff in its task group,
    /// the end of its loop.
    @discardableResult
    private func modifyStateAndRunActions(
        _ event: (inout ConnectionMachine) -> ConnectionMachine.Actions
    ) -> ConnectionMachine.Action {
        let action = self.state.withLock { machine in
            let actions = event(&machine)
            // Under the lock, so that every watcher is told the states in the order they were taken; a yield
            // neither blocks nor calls back.
            for (watcher, state) in actions.tell { watcher.yield(state) }
            return actions.then
        }
        switch action {
        case .drain(let handle):
            handle.drain(within: self.configuration.drainTimeout)
        case .endWatches(let watchers):
            // After the lock: ending a stream calls its termination handler, which takes the lock.
            for watcher in watchers { watcher.finish() }
        case .none, .connect, .backoff, .finishRun:
            break
        }
        return action
    }

    /// What the machine says now, without changing it. Inlinable, as the request methods that read their channel
    /// here: the application's module compiles them for its codec.
    @inlinable
    func read<Value: Sendable>(_ query: (borrowing ConnectionMachine) -> Value) -> Value {
        self.state.withLock { query($0) }
    }

    // MARK: Run

    /// Connects, keeps the connection up, and returns after ``close()`` or a graceful shutdown.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await self.runUntilClosed()
        } onGracefulShutdown: {
            self.close()
        }
    }

    /// ``run()`` without a graceful-shutdown handler, for an owner that closes the connection itself (a pool).
    package func runUntilClosed() async {
        await withDiscardingTaskGroup { group in
            if self.ownsInbound, let inbound = self.inbound {
                group.addTask { await inbound.run() }
            }
            var running = self.start(self.modifyStateAndRunActions { $0.runStarted() }, in: &group)
            var events = self.events.makeAsyncIterator()
            while running, let event = await events.next() {
                running = self.start(self.modifyStateAndRunActions { Self.handle(event, in: &$0) }, in: &group)
            }
            // Cancelled or finished: make sure no channel stays open.
            if let handle = self.read({ $0.openChannel }) {
                handle.channel.close(promise: nil)
                try? await handle.channel.closeFuture.get()
            }
            self.modifyStateAndRunActions { $0.runEnded() }
            self.eventSink.finish()
            // Handlers under way finish (answers to a closed connection fail); then the workers end.
            if self.ownsInbound { self.inbound?.stop() }
            group.cancelAll()
        }
    }

    private static func handle(_ event: Event, in machine: inout ConnectionMachine) -> ConnectionMachine.Actions {
        switch event {
        case .connected(let handle): machine.connected(handle, channelID: handle.id)
        case .connectFailed: machine.connectFailed()
        case .closed(let channelID, _): machine.channelClosed(channelID: channelID)
        case .backoffElapsed: machine.backoffElapsed()
        case .provedHealthy(let channelID): machine.provedHealthy(channelID: channelID)
        case .ageExpired(let channelID): machine.ageExpired(channelID: channelID)
        case .shutdown: machine.shutdownRequested()
        }
    }

    /// Starts what the machine asked of the run in its task group; `false` once the run is over.
    private func start(_ action: ConnectionMachine.Action, in group: inout DiscardingTaskGroup) -> Bool {
        switch action {
        case .connect(let endpoint, let channelID):
            group.addTask { await self.connect(to: endpoint, channelID: channelID) }
        case .backoff(let delay):
            group.addTask {
                do {
                    try await Task.sleep(for: delay)
                    self.eventSink.yield(.backoffElapsed)
                } catch {}
            }
        case .finishRun:
            return false
        case .none, .drain, .endWatches:
            // Run by modifyStateAndRunActions(_:).
            break
        }
        return true
    }

    private func connect(to endpoint: Endpoint, channelID: Int) async {
        let observer = ConnectionObserver(
            counters: self.counters,
            metrics: self.metrics[endpoint] ?? TransportMetrics.make(endpoint: endpoint, factory: self.configuration.metricsFactory)
        )
        let configuration = self.configuration
        let handlerConfiguration = ConnectionChannelHandler<Codec>.Configuration(
            stateMachine: .init(
                maxInFlight: configuration.maxInFlight,
                maxQueued: configuration.maxQueued,
                heartbeatInterval: configuration.heartbeatInterval.map(TimeAmount.init),
                readTimeout: configuration.readTimeout.map(TimeAmount.init),
                maxIdleTime: configuration.maxIdleTime.map(TimeAmount.init),
                queueTimeout: configuration.queueTimeout.map(TimeAmount.init),
                recycleAfterTimeouts: configuration.recycleAfterTimeouts.map { max($0, 1) }
            ),
            maxFrameLength: configuration.maxFrameLength,
            flushThreshold: configuration.writeBufferWaterMarks.high,
            framingErrorPolicy: configuration.framingErrorPolicy
        )
        let inbound = self.inbound
        let socketOptions = SocketOptions(keepalive: configuration.tcpKeepalive, linger: configuration.linger)
        let eventSink = self.eventSink
        let codec = self.codec
        let logger = self.logger
        let entryPoints = self.entryPoints
        let deadline = NIODeadline.now() + TimeAmount(configuration.connectTimeout)
        // Completed by the setup's own future, the deadline or the close, whichever comes first (later ones are
        // ignored), and failed on every path where the dial fails, so that it never leaks.
        let ready = configuration.channelSetup.map { _ in self.eventLoop.makePromise(of: Void.self) }
        do {
            let channel = try await ClientBootstrap(group: self.eventLoop)
                .connectTimeout(TimeAmount(configuration.connectTimeout))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.writeBufferWaterMark, value: configuration.writeBufferWaterMarks)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let setup = configuration.channelSetup, let ready {
                            try setup.prepare(channel, endpoint).cascade(to: ready)
                        }
                        let handler = ConnectionChannelHandler(
                            codec: codec,
                            configuration: handlerConfiguration,
                            endpoint: endpoint,
                            observer: observer,
                            logger: logger,
                            now: .now(),
                            inbound: inbound,
                            entryPoints: entryPoints,
                            onFirstResponse: { eventSink.yield(.provedHealthy(channelID: channelID)) }
                        )
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }.flatMap {
                        socketOptions.apply(to: channel)
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port)
                .get()
            if let ready {
                let expiry = channel.eventLoop.scheduleTask(deadline: deadline) {
                    ready.fail(ChannelError.connectTimeout(TimeAmount(configuration.connectTimeout)))
                }
                channel.closeFuture.whenComplete { _ in ready.fail(ChannelError.ioOnClosedChannel) }
                do {
                    try await ready.futureResult.get()
                    expiry.cancel()
                } catch {
                    expiry.cancel()
                    channel.close(promise: nil)
                    throw error
                }
            }
            let handler = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ConnectionChannelHandler<Codec>.self), eventLoop: channel.eventLoop)
            }.get()
            let handle = ChannelHandle(id: channelID, channel: channel, handler: handler, entryPoints: entryPoints, endpoint: endpoint)
            if let hook = configuration.onConnect {
                do {
                    try await hook(Handshake(endpoint: endpoint, handle: handle, codec: codec, defaultTimeout: configuration.requestTimeout))
                } catch {
                    channel.close(promise: nil)
                    throw error
                }
            }
            observer.connected()
            logger.debug("connected", metadata: ["inlong.endpoint": "\(endpoint)"])
            // The age timer lives on the channel's loop and dies with the channel, so no task outlives run().
            let ageTimer = configuration.maxConnectionAge.map { age in
                channel.eventLoop.scheduleTask(in: TimeAmount(age)) {
                    self.eventSink.yield(.ageExpired(channelID: channelID))
                }
            }
            // `.connected` goes first: a channel the peer closed at once must still be seen to close, and its
            // close callback may run before this line returns.
            self.eventSink.yield(.connected(handle))
            let healthyTimer = channel.eventLoop.scheduleTask(in: TimeAmount(configuration.healthyAfter)) {
                self.eventSink.yield(.provedHealthy(channelID: channelID))
            }
            channel.closeFuture.whenComplete { _ in
                ageTimer?.cancel()
                healthyTimer.cancel()
                let reason = handler.value.closeReason ?? TransportError(.connectionClosed, endpoint: endpoint)
                let label = Self.disconnectLabel(reason)
                observer.disconnected(reason: label)
                self.eventSink.yield(.closed(channelID: channelID, reason: reason))
            }
        } catch {
            ready?.fail(error)
            let code: TransportError.Code = Self.isTimeout(error) ? .connectTimeout : .connectFailed
            let failure = TransportError(code, endpoint: endpoint, underlying: error)
            // Said once per outage at warning, with the address and the cause; each retry after it at debug.
            if observer.connectFailed(failure) {
                logger.warning("\(failure)", metadata: ["inlong.endpoint": "\(endpoint)"])
            } else {
                logger.debug("\(failure)", metadata: ["inlong.endpoint": "\(endpoint)"])
            }
            self.eventSink.yield(.connectFailed(failure))
        }
    }

    private static func isTimeout(_ error: any Error) -> Bool {
        if case .connectTimeout = error as? ChannelError { return true }
        return false
    }

    private static func disconnectLabel(_ reason: TransportError) -> String {
        switch reason.code {
        case .heartbeatTimeout: "heartbeatTimeout"
        case .idleTimeout: "idle"
        case .unresponsive: "unresponsive"
        case .protocolViolation: "protocolViolation"
        case .shutDown: "local"
        default: reason.underlying == nil ? "closedByPeer" : "error"
        }
    }
}
