public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The server side of a ``FrameCodec`` protocol: accepts persistent connections, splits what each peer sends into
/// frames, answers the peer's heartbeats on the event loop (``FrameCodec/heartbeatResponse(to:)``), and hands every
/// other frame to the application's handler with a ``Responder`` bound to its connection.
///
/// Handlers run off the event loop, up to ``Configuration/maxConcurrentRequests`` at once per connection, so a slow
/// one does not hold the others back and answers may leave out of order (the codec's key pairs them). When that
/// many are running, the connection stops reading until one ends: a peer is slowed down, never dropped.
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
    public struct Responder: Sendable {
        /// The peer's address.
        public let peer: SocketAddress?
        private let codec: Codec
        private let framing: NIOLoopBound<ServerFramingHandler<Codec>>
        private let allocator: ByteBufferAllocator

        fileprivate init(peer: SocketAddress?, codec: Codec, framing: NIOLoopBound<ServerFramingHandler<Codec>>, allocator: ByteBufferAllocator) {
            self.peer = peer
            self.codec = codec
            self.framing = framing
            self.allocator = allocator
        }

        /// Writes `frame` to the peer (an answer, or a frame of the server's own); returns once it is written to
        /// the socket, so an answer is never lost to the connection closing after its handler returned.
        public func respond(_ frame: Codec.Outbound) async throws {
            var buffer = self.allocator.buffer(capacity: 0)
            try self.codec.encode(frame, into: &buffer)
            let framing = self.framing
            try await framing.eventLoop.flatSubmit { framing.value.write(buffer, on: framing.eventLoop) }.get()
        }
    }

    /// Handles one inbound frame; answer through the responder, or not at all.
    public typealias RequestHandler = @Sendable (Codec.Inbound, Responder) async -> Void

    /// Where and how the server listens.
    public struct Configuration: Sendable {
        /// The address to listen on. Defaults to `127.0.0.1`.
        public var host = "127.0.0.1"
        /// The port; 0 picks a free one (see ``PersistentServer/localAddress()``). Defaults to 0.
        public var port = 0
        /// Connections open at once; more are closed as they arrive. Defaults to 1024.
        public var maxConnections = 1024
        /// Handlers running at once per connection; beyond this the connection stops reading. Defaults to 64.
        public var maxConcurrentRequests = 64
        /// A connection the peer sends nothing on (heartbeats included) for this long is closed. Defaults to 90
        /// seconds; `nil` never closes one for silence.
        public var readTimeout: Duration? = .seconds(90)
        /// The largest inbound frame; a larger one, or bytes that are not a frame, close the connection. Defaults
        /// to 16 MiB.
        public var maxFrameLength = 16 << 20

        public init(host: String = "127.0.0.1", port: Int = 0) {
            self.host = host
            self.port = port
        }
    }

    private typealias Connection = NIOAsyncChannel<Codec.Inbound, Never>

    /// A served connection: it closes once stopping and no handler is running, so that every request under way
    /// is answered first.
    private final class OpenConnection: Sendable {
        let channel: any Channel
        private let state = Mutex<(running: Int, stopping: Bool)>((0, false))

        init(channel: any Channel) { self.channel = channel }

        /// Counts a handler starting; `false` once stopping (the frame is not handled).
        func handlerStarts() -> Bool {
            self.state.withLock { state in
                guard !state.stopping else { return false }
                state.running += 1
                return true
            }
        }

        func handlerEnded() {
            let close = self.state.withLock { state in
                state.running -= 1
                return state.stopping && state.running == 0
            }
            if close { self.channel.close(promise: nil) }
        }

        func stop() {
            let close = self.state.withLock { state in
                state.stopping = true
                return state.running == 0
            }
            if close { self.channel.close(promise: nil) }
        }
    }

    private struct State {
        var serverChannel: (any Channel)?
        /// Connections wrapped on accept that the accept loop has not taken yet: NIO drops those it has not
        /// handed over when the listener closes or the loop is cancelled, and an unfinished `NIOAsyncChannel`
        /// must not be dropped.
        var unclaimed: [ObjectIdentifier: Connection] = [:]
        var open: [ObjectIdentifier: OpenConnection] = [:]
        var stopped = false
        var started = false
    }

    public let codec: Codec
    public let configuration: Configuration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let handler: RequestHandler
    private let state = Mutex(State())
    private let address: (stream: AsyncStream<SocketAddress>, continuation: AsyncStream<SocketAddress>.Continuation)
    private let counters = Counters()

    /// Counts of the server's connections.
    public struct Statistics: Sendable, Hashable {
        public var acceptedConnections = 0
        public var rejectedConnections = 0
        public var openConnections = 0
        public var requestsHandled = 0
    }

    private final class Counters: Sendable {
        let accepted = Atomic<Int>(0)
        let rejected = Atomic<Int>(0)
        let handled = Atomic<Int>(0)
    }

    public init(
        codec: Codec,
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "inlong.transport.server", factory: { _ in SwiftLogNoOpLogHandler() }),
        handler: @escaping RequestHandler
    ) {
        self.codec = codec
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.handler = handler
        self.address = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// The address it listens on, once it does.
    public func localAddress() async throws -> SocketAddress {
        for await address in self.address.stream { return address }
        throw TransportError(.shutDown)
    }

    public func statistics() -> Statistics {
        var statistics = Statistics()
        statistics.acceptedConnections = self.counters.accepted.load(ordering: .relaxed)
        statistics.rejectedConnections = self.counters.rejected.load(ordering: .relaxed)
        statistics.requestsHandled = self.counters.handled.load(ordering: .relaxed)
        statistics.openConnections = self.state.withLock { $0.open.count }
        return statistics
    }

    /// Stops accepting; every connection handles no new request, answers those under way, then closes, and
    /// ``run()`` returns.
    public func stop() {
        let (server, open) = self.state.withLock { state -> ((any Channel)?, [OpenConnection]) in
            state.stopped = true
            return (state.serverChannel, Array(state.open.values))
        }
        server?.close(promise: nil)
        // New requests are not handled; those under way are answered, then each connection closes.
        for connection in open { connection.stop() }
    }

    public func run() async throws {
        let alreadyStarted = self.state.withLock { state in
            defer { state.started = true }
            return state.started
        }
        precondition(!alreadyStarted, "PersistentServer.run() must be called once")
        defer { self.address.continuation.finish() }
        let server = try await self.bind()
        let stopped = self.state.withLock { state in
            state.serverChannel = server.channel
            return state.stopped
        }
        if stopped { server.channel.close(promise: nil) }
        if let address = server.channel.localAddress { self.address.continuation.yield(address) }
        try await withGracefulShutdownHandler {
            try await self.acceptLoop(server)
        } onGracefulShutdown: {
            self.stop()
        }
    }

    private func bind() async throws -> NIOAsyncChannel<Connection, Never> {
        let configuration = self.configuration
        let codec = self.codec
        return try await ServerBootstrap(group: self.eventLoopGroup)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    do {
                        let operations = channel.pipeline.syncOperations
                        if let timeout = configuration.readTimeout {
                            try operations.addHandler(IdleStateHandler(readTimeout: TimeAmount(timeout)))
                        }
                        try operations.addHandler(
                            ServerFramingHandler(codec: codec, maxFrameLength: configuration.maxFrameLength)
                        )
                        return try self.adopt(channel) {
                            // A small inbound buffer: the handler pool, not this buffer, is what absorbs bursts.
                            try Connection(
                                wrappingChannelSynchronously: channel,
                                configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8))
                            )
                        }
                    } catch {
                        // NIO neither registers nor closes a child whose initializer failed.
                        channel.close(promise: nil)
                        throw error
                    }
                }
            }
    }

    private func adopt(_ channel: any Channel, wrap: () throws -> Connection) throws -> Connection {
        try self.state.withLock { state in
            guard !state.stopped else { throw TransportError(.shutDown) }
            let connection = try wrap()
            state.unclaimed[ObjectIdentifier(channel)] = connection
            return connection
        }
    }

    private enum Verdict { case serve, reject, close, ownedElsewhere }

    private func acceptLoop(_ server: NIOAsyncChannel<Connection, Never>) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            defer {
                // Whatever ended the loop, connections accepted but never handed over are finished here.
                let leftovers = self.state.withLock { state in
                    state.stopped = true
                    defer { state.unclaimed.removeAll() }
                    return Array(state.unclaimed.values)
                }
                for connection in leftovers {
                    group.addTask { try? await connection.executeThenClose { _, _ in } }
                }
            }
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    let id = ObjectIdentifier(connection.channel)
                    let verdict = self.state.withLock { state -> Verdict in
                        guard state.unclaimed.removeValue(forKey: id) != nil else { return .ownedElsewhere }
                        guard !state.stopped else { return .close }
                        guard state.open.count < self.configuration.maxConnections else { return .reject }
                        state.open[id] = OpenConnection(channel: connection.channel)
                        return .serve
                    }
                    switch verdict {
                    case .serve:
                        self.counters.accepted.add(1, ordering: .relaxed)
                        group.addTask { await self.serve(connection) }
                    case .reject:
                        self.counters.rejected.add(1, ordering: .relaxed)
                        fallthrough
                    case .close:
                        group.addTask { try? await connection.executeThenClose { _, _ in } }
                    case .ownedElsewhere:
                        continue
                    }
                }
            }
        }
    }

    private func serve(_ connection: Connection) async {
        let id = ObjectIdentifier(connection.channel)
        defer { _ = self.state.withLock { $0.open.removeValue(forKey: id) } }
        guard let open = self.state.withLock({ $0.open[id] }) else { return }
        let channel = connection.channel
        let width = max(1, self.configuration.maxConcurrentRequests)
        do {
            let framing = try await channel.eventLoop.submit {
                NIOLoopBound(
                    try channel.pipeline.syncOperations.handler(type: ServerFramingHandler<Codec>.self),
                    eventLoop: channel.eventLoop
                )
            }.get()
            let responder = Responder(peer: channel.remoteAddress, codec: self.codec, framing: framing, allocator: channel.allocator)
            try await connection.executeThenClose { inbound, _ in
                await withTaskGroup(of: Void.self) { group in
                    var running = 0
                    do {
                        for try await frame in inbound {
                            // At the width, wait for a handler to end before reading on: the peer is slowed down.
                            if running >= width {
                                await group.next()
                                running -= 1
                            }
                            guard open.handlerStarts() else { continue }
                            running += 1
                            group.addTask {
                                await self.handler(frame, responder)
                                self.counters.handled.add(1, ordering: .relaxed)
                                open.handlerEnded()
                            }
                        }
                    } catch {
                        self.logger.debug("connection ended", metadata: ["error": "\(error)"])
                    }
                    // Requests under way are finished and answered before the connection closes.
                    await group.waitForAll()
                }
            }
        } catch {
            self.logger.debug("connection failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Splits inbound bytes into frames with the codec, answers the peer's heartbeats, and passes other frames on;
/// closes the connection on bytes that are not a frame or on read idleness. Answers are written through it, from
/// its place in the pipeline.
final class ServerFramingHandler<Codec: FrameCodec>: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Codec.Inbound
    typealias OutboundOut = ByteBuffer

    private let codec: Codec
    private let maxFrameLength: Int
    private var buffer: ByteBuffer?
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Writes an answer; the future completes once it is written to the socket.
    func write(_ bytes: ByteBuffer, on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        guard let context = self.context else { return eventLoop.makeFailedFuture(TransportError(.connectionClosed)) }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(bytes), promise: promise)
        return promise.futureResult
    }

    init(codec: Codec, maxFrameLength: Int) {
        self.codec = codec
        self.maxFrameLength = maxFrameLength
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        if self.buffer == nil {
            self.buffer = bytes
        } else {
            if self.buffer!.readerIndex > 0 && self.buffer!.readerIndex >= self.buffer!.readableBytes {
                self.buffer!.discardReadBytes()
            }
            self.buffer!.writeImmutableBuffer(bytes)
        }
        do {
            try self.processFrames(context: context)
        } catch {
            self.buffer = nil
            context.close(promise: nil)
        }
    }

    private func processFrames(context: ChannelHandlerContext) throws {
        var answeredHeartbeat = false
        defer { if answeredHeartbeat { context.flush() } }
        while var buffer = self.buffer, buffer.readableBytes > 0 {
            switch try self.codec.frameBoundary(in: buffer) {
            case .needMoreBytes:
                guard buffer.readableBytes < self.maxFrameLength else { throw TransportError(.protocolViolation) }
                return
            case .skip(let count):
                guard count > 0, count <= buffer.readableBytes else { throw TransportError(.protocolViolation) }
                buffer.moveReaderIndex(forwardBy: count)
                self.buffer = buffer
            case .frame(let length):
                guard length > 0, length <= self.maxFrameLength else { throw TransportError(.protocolViolation) }
                guard buffer.readableBytes >= length else { return }
                let bytes = buffer.readSlice(length: length)!
                self.buffer = buffer.readableBytes == 0 ? nil : buffer
                let frame = try self.codec.decode(bytes)
                if let answer = self.codec.heartbeatResponse(to: frame) {
                    var out = context.channel.allocator.buffer(capacity: 0)
                    try self.codec.encode(answer, into: &out)
                    context.write(self.wrapOutboundOut(out), promise: nil)
                    answeredHeartbeat = true
                } else {
                    context.fireChannelRead(NIOAny(frame))
                }
            }
        }
        if self.buffer?.readableBytes == 0 { self.buffer = nil }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case IdleStateHandler.IdleStateEvent.read = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
