import NIOCore

/// A served connection on its event loop: splits inbound bytes into frames, answers the peer's heartbeats,
/// hands requests to the handler pool and stops reading while the pool has no room for them, and writes the
/// handlers' answers. Closes on bytes that are not a frame, or on read idleness.
final class ServerConnectionHandler<Codec: FrameCodec>: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let codec: Codec
    private let pool: HandlerPoolCore
    private let connectionOpened: PersistentServer<Codec>.ConnectionOpened
    private var handler: PersistentServer<Codec>.ConnectionHandler?
    private let discarded: ServerCounter
    private var reader: FrameReader
    private var context: ChannelHandlerContext?
    private var connection: PoolConnection?
    private var runner: InboundRequestRunner<Codec>?
    private var outbox: AnswerOutbox?
    private var closing = false

    init(
        codec: Codec,
        pool: HandlerPoolCore,
        connectionOpened: @escaping PersistentServer<Codec>.ConnectionOpened,
        maxFrameLength: Int,
        framingErrorPolicy: PersistentConnection<Codec>.Configuration.FramingErrorPolicy,
        discarded: ServerCounter
    ) {
        self.codec = codec
        self.pool = pool
        self.connectionOpened = connectionOpened
        self.discarded = discarded
        self.reader = FrameReader(maxFrameLength: maxFrameLength, framingErrorPolicy: framingErrorPolicy)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let eventLoop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let outbox = AnswerOutbox(eventLoop: eventLoop) { answers in bound.value.write(answers) }
        let connection = PoolConnection(
            resumeReading: { eventLoop.execute { bound.value.resumeReading() } },
            close: { eventLoop.execute { bound.value.closeWhenAnswered() } }
        )
        let peer = context.channel.remoteAddress
        let handler = self.connectionOpened(
            PersistentServer<Codec>.Connection(peer: peer, local: context.channel.localAddress) {
                eventLoop.execute { bound.value.closeWhenAnswered() }
            }
        )
        self.handler = handler
        self.runner = InboundRequestRunner(
            handler: handler.request,
            responder: FrameResponder(peer: peer, codec: self.codec, outbox: outbox)
        )
        self.outbox = outbox
        self.connection = connection
        if !self.pool.connectionOpened(connection) { self.closeWhenAnswered() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // A connection closed before it became active is never inactive.
        self.connectionEnded()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.connectionEnded()
        context.fireChannelInactive()
    }

    private func connectionEnded() {
        // Also breaks the cycle between this handler and its pool connection.
        if let connection = self.connection.take() { self.pool.connectionClosed(connection) }
        self.outbox?.close()
        self.handler.take()?.closed()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.reader.append(self.unwrapInboundIn(data))
        self.processFrames(context: context)
    }

    func read(context: ChannelHandlerContext) {
        if self.reader.readRequested() { context.read() }
    }

    private func resumeReading() {
        guard let context = self.context else { return }
        self.reader.resume()
        self.processFrames(context: context)
        if self.reader.takeHeldRead() { context.read() }
    }

    private func processFrames(context: ChannelHandlerContext) {
        var answeredHeartbeat = false
        defer { if answeredHeartbeat { context.flush() } }
        do {
            while !self.closing, let connection = self.connection, let runner = self.runner,
                let frame = try self.reader.next(with: self.codec)
            {
                if let answer = self.codec.heartbeatResponse(to: frame) {
                    var out = context.channel.allocator.buffer(capacity: 0)
                    try self.codec.encode(answer, into: &out)
                    context.write(self.wrapOutboundOut(out), promise: nil)
                    answeredHeartbeat = true
                    continue
                }
                switch self.pool.submit({ await runner.run(frame) }, from: connection) {
                case .accepted, .refused:
                    // Refused: the server is stopping, and handles no new request.
                    break
                case .pauseReading:
                    self.reader.pause()
                }
            }
        } catch {
            self.handler?.framingError(error)
            switch self.reader.framingFailed() {
            case .close: context.close(promise: nil)
            case .discardBuffer: self.discarded.add(1)
            }
        }
    }

    /// Writes a batch of answers through a coalescer, so that a batch costs few writes, and flushes once.
    private func write(_ answers: [ByteBuffer]) {
        guard let context = self.context else { return }
        var coalescer = OutboundCoalescer()
        for answer in answers {
            let writes = coalescer.append(answer, items: 0)
            if let before = writes.before { context.write(self.wrapOutboundOut(before.buffer), promise: nil) }
            if let including = writes.including { context.write(self.wrapOutboundOut(including.buffer), promise: nil) }
        }
        if let rest = coalescer.take() { context.write(self.wrapOutboundOut(rest.buffer), promise: nil) }
        context.flush()
    }

    /// Closes once the answers handed over so far are written.
    private func closeWhenAnswered() {
        guard !self.closing, let context = self.context else { return }
        self.closing = true
        self.outbox?.drain()
        let channel = context.channel
        // Writes complete in order: an empty one written last completes after the answers.
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case IdleStateHandler.IdleStateEvent.read = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ServerConnectionHandler: Sendable {}
