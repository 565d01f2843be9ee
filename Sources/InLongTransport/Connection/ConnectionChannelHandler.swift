public import DequeModule
import Logging
import Synchronization
public import NIOCore

/// Drives a ``ConnectionStateMachine`` on the event loop: splits inbound bytes into frames with the codec,
/// completes requests, hands the peer's own requests to the inbound handler pool (and stops reading while it has
/// no room for them), writes with coalesced flushes, reports completed writes (which start request timeouts),
/// runs the request and idle timers. Callers reach it on its event loop only (through `NIOLoopBound`).
///
/// What every request runs is inlinable, and reached through ``ConnectionHandlerEntryPoints``: closures made in the
/// application's module, where the codec is known, so that the compiler specialises the request path there. NIO
/// calls this handler through its protocol conformance, whose witnesses this module compiles once, for any codec:
/// the busy ones only forward to an entry point.
@usableFromInline
final class ConnectionChannelHandler<Codec: FrameCodec>: ChannelDuplexHandler {
    @usableFromInline
    typealias InboundIn = ByteBuffer
    @usableFromInline
    typealias OutboundIn = ByteBuffer
    @usableFromInline
    typealias OutboundOut = ByteBuffer

    @usableFromInline
    struct Configuration: Sendable {
        @usableFromInline var stateMachine: StateMachine.Configuration
        @usableFromInline var maxFrameLength: Int
        /// Coalesced bytes beyond this are written at once rather than at the end of the tick, so the channel's
        /// writability (and with it the queueing in the state machine) follows the watermarks.
        @usableFromInline var flushThreshold: Int = 1 << 20
        @usableFromInline var framingErrorPolicy = PersistentConnection<Codec>.Configuration.FramingErrorPolicy.close
    }

    @usableFromInline
    typealias Operation = ConnectionOperation<Codec.Inbound>
    @usableFromInline
    typealias StateMachine = ConnectionStateMachine<Codec.Key, Operation>
    @usableFromInline
    typealias Inbox = SubmissionInbox<Codec.Key, Codec.Inbound>

    @usableFromInline let codec: Codec
    /// The specialised request path.
    let entryPoints: ConnectionHandlerEntryPoints<Codec>
    @usableFromInline let configuration: Configuration
    @usableFromInline let endpoint: Endpoint
    @usableFromInline let observer: ConnectionObserver
    let logger: Logger
    /// Runs the peer's requests; without one, they are dropped and counted.
    let inbound: InboundHandlerPool<Codec>?
    /// This connection as the inbound pool knows it, from handlerAdded to channelInactive.
    var poolConnection: PoolConnection?
    var inboundRunner: InboundRequestRunner<Codec>?
    private var answerOutbox: AnswerOutbox?
    /// Called once, at the first response: the connection works.
    @usableFromInline var onFirstResponse: (@Sendable () -> Void)?
    @usableFromInline var stateMachine: StateMachine
    @usableFromInline var context: ChannelHandlerContext?
    @usableFromInline var reader: FrameReader
    @usableFromInline var coalescer = OutboundCoalescer()
    @usableFromInline var outboundFrames = 0
    /// Bytes written to the channel since its last flush.
    @usableFromInline var unflushedBytes = 0
    @usableFromInline var writtenCompletions: [EventLoopPromise<Void>] = []
    /// What each write with a promise reports when it completes, in write order (writes complete in order): kept
    /// here rather than captured, so that the completion callback captures nothing but the handler and costs no
    /// allocation of its own.
    @usableFromInline var pendingWrites: Deque<(items: Int, completions: [EventLoopPromise<Void>])> = []
    /// One timer, armed for the earliest deadline of the written requests (their timeouts start when their
    /// frames are written; the state machine holds the deadlines): a timer per request cost several allocations
    /// each.
    @usableFromInline var requestTimer: (deadline: NIODeadline, task: Scheduled<Void>)?
    @usableFromInline var flushScheduled = false
    /// Inside a batch (of submissions, or of answers) that flushes when it ends, so no flush is scheduled.
    @usableFromInline var inBatch = false
    @usableFromInline var idleTimer: Scheduled<Void>?
    private var drainTimer: Scheduled<Void>?
    /// Why the channel is closing, so pending requests fail with the real reason.
    @usableFromInline var closeReason: TransportError?
    /// A graceful close waits for the last writes.
    private var closingAfterWrites = false
    /// The peer's reported load, smoothed; a new channel starts without one.
    var smoothedLoad: Int?

    /// Bytes of storage the receive buffer holds (for tests of its bound).
    var receiveBufferCapacity: Int { self.reader.capacity }

    /// `entryPoints` are made by the application's module (see ``ConnectionHandlerEntryPoints``); tests may take
    /// the default, which runs the same code unspecialised.
    init(
        codec: Codec,
        configuration: Configuration,
        endpoint: Endpoint,
        observer: ConnectionObserver,
        logger: Logger,
        now: NIODeadline,
        inbound: InboundHandlerPool<Codec>?,
        entryPoints: ConnectionHandlerEntryPoints<Codec> = ConnectionHandlerEntryPoints(),
        onFirstResponse: (@Sendable () -> Void)? = nil
    ) {
        self.entryPoints = entryPoints
        self.codec = codec
        self.configuration = configuration
        self.endpoint = endpoint
        self.observer = observer
        observer.reportedLoad(.min)
        self.logger = logger
        self.inbound = inbound
        self.reader = FrameReader(maxFrameLength: configuration.maxFrameLength, framingErrorPolicy: configuration.framingErrorPolicy)
        self.onFirstResponse = onFirstResponse
        self.stateMachine = StateMachine(configuration: configuration.stateMachine, now: now)
    }

    // MARK: API (on the event loop)

    /// Submits a request; its `timeout` runs from when its frame is written to the socket.
    @inlinable
    func submitRequest(_ frame: Codec.Outbound, promise: EventLoopPromise<Codec.Inbound>, timeout: TimeAmount?) {
        guard self.context != nil, let bytes = self.encode(frame, promise: promise) else {
            promise.fail(self.error(.notConnected))
            return
        }
        self.submitRequest(key: self.codec.key(of: frame), bytes: bytes, completion: .response(promise), timeout: timeout)
    }

    /// Takes a batch of submissions from tasks (through the ``SubmissionInbox``), in order.
    @inlinable
    func take(_ submissions: [Inbox.Submission]) {
        self.inBatch = true
        defer { self.endBatch() }
        for submission in submissions {
            switch submission {
            case .request(let key, let bytes, let completion, let timeout):
                self.submitRequest(key: key, bytes: bytes, completion: completion, timeout: timeout)
            case .send(let bytes, let promise):
                self.submitSend(bytes: bytes, promise: promise)
            case .cancel(let key, let ticket):
                self.cancelRequest(key: key, ticket: ticket)
            }
        }
    }

    /// Submits a request encoded by the caller (off the event loop).
    @inlinable
    func submitRequest(key: Codec.Key, bytes: ByteBuffer, completion: Operation.Completion, timeout: TimeAmount?) {
        let operation = Operation(bytes: bytes, completion: completion)
        guard self.context != nil else {
            self.complete(operation, with: self.error(.notConnected))
            return
        }
        self.run(self.stateMachine.requestSubmitted(key: key, pending: operation, timeout: timeout, now: self.now))
    }

    @inlinable
    func submitSend(_ frame: Codec.Outbound, promise: EventLoopPromise<Void>?) {
        guard self.context != nil, let bytes = self.encode(frame, promise: promise) else {
            promise?.fail(self.error(.notConnected))
            return
        }
        self.submitSend(bytes: bytes, promise: promise)
    }

    /// Submits a send encoded by the caller (off the event loop).
    @inlinable
    func submitSend(bytes: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard self.context != nil else {
            promise?.fail(self.error(.notConnected))
            return
        }
        self.run(self.stateMachine.sendSubmitted(pending: Operation(bytes: bytes, completion: .written(promise)), now: self.now))
    }

    @inlinable
    func cancelRequest(key: Codec.Key, ticket: UInt64) {
        let (first, second) = self.stateMachine.requestCancelled(key: key, now: self.now) { $0.isCancelled(by: ticket) }
        self.run(first)
        self.run(second)
    }

    /// Stops taking requests and the peer's requests, and closes once in-flight requests complete and the peer's
    /// requests under way are answered (their answers written), or at `deadline`.
    func drain(deadline: NIODeadline) {
        guard let context = self.context else { return }
        let poolConnection = self.poolConnection
        let (unstarted, action) = self.stateMachine.drainRequested(awaitingInboundHandlers: poolConnection != nil)
        for item in unstarted { self.complete(item.pending, with: self.error(.shutDown)) }
        self.run(action)
        // Reports back through the connection's `close`, on the loop, once no handler of its is under way.
        if let poolConnection { self.inbound?.connectionDraining(poolConnection) }
        if self.drainTimer == nil {
            self.drainTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
                self?.close(self?.error(.shutDown) ?? TransportError(.shutDown))
            }
        }
    }

    /// The inbound pool runs no handler for this connection any more (it drains, or the pool stops).
    private func inboundHandlersFinished() {
        self.run(self.stateMachine.inboundHandlersFinished())
    }

    /// The loop's clock, so virtual time drives the timers and the state machine alike in tests.
    @inlinable var now: NIODeadline { self.context?.eventLoop.now ?? .now() }

    @inlinable
    func encode<T>(_ frame: Codec.Outbound, promise: EventLoopPromise<T>?) -> ByteBuffer? {
        guard let context = self.context else { return nil }
        // Empty, so that a codec holding its frame already encoded can hand it over instead of copying it.
        var buffer = context.channel.allocator.buffer(capacity: 0)
        do {
            try self.codec.encode(frame, into: &buffer)
            return buffer
        } catch {
            promise?.fail(TransportError(.encodingFailed, endpoint: self.endpoint, underlying: error))
            return nil
        }
    }

    // MARK: Channel events

    @usableFromInline
    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let inbound = self.inbound {
            let eventLoop = context.eventLoop
            let bound = NIOLoopBound(self, eventLoop: eventLoop)
            // Answers skip the request queue: they are bounded by the pool, and are not refused while draining.
            let outbox = AnswerOutbox(eventLoop: eventLoop) { answers in bound.value.writeAnswers(answers) }
            let connection = PoolConnection(
                resumeReading: { eventLoop.execute { bound.value.resumeReading() } },
                // A draining connection closes once its handlers are done; otherwise it closes on its own.
                close: { eventLoop.execute { bound.value.inboundHandlersFinished() } }
            )
            if inbound.connectionOpened(connection) {
                self.inboundRunner = inbound.runner(
                    for: FrameResponder(peer: context.channel.remoteAddress, codec: self.codec, outbox: outbox)
                )
                self.answerOutbox = outbox
                self.poolConnection = connection
            }
        }
        if context.channel.isActive { self.becameActive(context: context) }
    }

    @usableFromInline
    func channelActive(context: ChannelHandlerContext) {
        self.becameActive(context: context)
        context.fireChannelActive()
    }

    private func becameActive(context: ChannelHandlerContext) {
        guard self.idleTimer == nil else { return }
        self.run(self.stateMachine.nextIdleCheck(now: self.now))
    }

    @usableFromInline
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.entryPoints.channelRead(self, data)
    }

    /// What a read runs, specialised (through ``ConnectionHandlerEntryPoints``).
    @inlinable
    func received(_ data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        self.observer.bytesRead(bytes.readableBytes)
        self.stateMachine.bytesRead(now: self.now)
        self.reader.append(bytes)
        self.processFrames()
    }

    @usableFromInline
    func read(context: ChannelHandlerContext) {
        if self.reader.readRequested() { context.read() }
    }

    /// The inbound pool has room again for the peer's requests.
    private func resumeReading() {
        guard let context = self.context else { return }
        self.reader.resume()
        self.processFrames()
        if self.reader.takeHeldRead() { context.read() }
    }

    @usableFromInline
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.run(self.stateMachine.writabilityChanged(isWritable: context.channel.isWritable, now: self.now))
        context.fireChannelWritabilityChanged()
    }

    @usableFromInline
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.close(TransportError(.connectionClosed, endpoint: self.endpoint, underlying: error))
    }

    @usableFromInline
    func channelInactive(context: ChannelHandlerContext) {
        // Also breaks the cycle between this handler and its pool connection.
        if let connection = self.poolConnection.take() { self.inbound?.connectionClosed(connection) }
        self.answerOutbox?.close()
        self.idleTimer?.cancel()
        self.drainTimer?.cancel()
        let reason = self.closeReason ?? self.error(.connectionClosed)
        if self.closeReason == nil { self.closeReason = reason }
        self.requestTimer?.task.cancel()
        self.requestTimer = nil
        let (inFlight, queued) = self.stateMachine.closed()
        for operation in inFlight { self.complete(operation, with: reason.delivered(true)) }
        for item in queued { self.complete(item.pending, with: reason.delivered(false)) }
        for promise in self.writtenCompletions { promise.fail(reason.delivered(true)) }
        self.writtenCompletions.removeAll()
        _ = self.coalescer.take()
        self.unflushedBytes = 0
        context.fireChannelInactive()
    }

    @usableFromInline
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Actions

    @inlinable
    func run(_ action: StateMachine.Action) {
        switch action {
        case .none, .unmatchedResponse, .unsolicited:
            break
        case .write(let items):
            for item in items { self.enqueueWrite(item) }
        case .writeOne(let item):
            self.enqueueWrite(item)
        case .reject(let item, let error):
            self.complete(item.pending, with: error.endpoint == nil ? self.with(error) : error)
        case .succeed:
            // Responses are completed by dispatch(_:), which holds the frame.
            assertionFailure("succeed is handled where the response frame is")
        case .heartbeatReplied(let rtt):
            if let rtt {
                self.observer.heartbeatAnswered(rtt: rtt.nanoseconds)
            }
        case .fail(let operation, let error):
            self.complete(operation, with: self.with(error))
        case .sendHeartbeat(let nextCheck):
            self.sendHeartbeat()
            self.scheduleIdleCheck(at: nextCheck)
        case .scheduleIdleCheck(let deadline):
            self.scheduleIdleCheck(at: deadline)
        case .scheduleRequestTimeout(_, let deadline):
            self.armRequestTimer(at: deadline)
        case .expire(let items, let nextCheck):
            for item in items { self.complete(item.pending, with: self.error(.requestTimeout)) }
            self.scheduleIdleCheck(at: nextCheck)
        case .close(let error):
            // Drained: what is written so far (answers to the peer among it) goes out before the close.
            self.close(self.with(error), afterWrites: error.code == .shutDown)
        }
    }

    @usableFromInline
    func sendHeartbeat() {
        if let heartbeat = self.codec.makeHeartbeat(), let bytes = self.encode(heartbeat, promise: Optional<EventLoopPromise<Void>>.none) {
            self.stateMachine.heartbeatWritten(now: self.now)
            self.appendOutbound(bytes)
        }
    }

    @inlinable
    func complete(_ operation: Operation, with error: TransportError) {
        switch operation.completion {
        case .response, .awaitingResponse:
            self.observer.requestFailed(timedOut: error.code == .requestTimeout, wasInFlight: error.mayHaveBeenDelivered)
        case .written:
            break
        }
        operation.complete(with: .failure(error))
    }

    /// Closes the channel; with `afterWrites`, once everything handed to it so far is written (a later close
    /// without, such as the drain deadline's, closes at once).
    @usableFromInline
    func close(_ error: TransportError, afterWrites: Bool = false) {
        guard let context = self.context else { return }
        guard self.closeReason == nil else {
            if self.closingAfterWrites, !afterWrites {
                self.closingAfterWrites = false
                context.close(promise: nil)
            }
            return
        }
        // Before `closeReason` is set, which turns answers away.
        if afterWrites { self.answerOutbox?.drain() }
        self.closeReason = error
        if error.code != .shutDown {
            self.logger.debug(
                "closing connection",
                metadata: ["inlong.endpoint": "\(self.endpoint)", "inlong.reason": "\(error.code)"]
            )
        }
        guard afterWrites else {
            context.close(promise: nil)
            return
        }
        self.closingAfterWrites = true
        self.flushOutbound()
        // Writes complete in order: an empty one written last completes after all the others.
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { [weak self] _ in
            guard let self, self.closingAfterWrites else { return }
            self.closingAfterWrites = false
            self.context?.close(promise: nil)
        }
        context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
    }

    @inlinable
    func error(_ code: TransportError.Code) -> TransportError {
        TransportError(code, endpoint: self.endpoint)
    }

    @inlinable
    func with(_ error: TransportError) -> TransportError {
        var copy = error
        copy.endpoint = copy.endpoint ?? self.endpoint
        return copy
    }
}

@available(*, unavailable)
extension ConnectionChannelHandler: Sendable {}

/// The handler's busy entry points as closures, made by ``init()`` where it is inlined: in the application's module,
/// which names the codec (``PersistentConnection``'s and ``PersistentConnectionPool``'s initializers), so that
/// they and the inlinable code they run (the frame reader, the state machine, the writes) are compiled for that
/// codec. Called through the generic witnesses NIO uses, the same code would run unspecialised and look the
/// codec's types up at nearly every step.
@usableFromInline
struct ConnectionHandlerEntryPoints<Codec: FrameCodec>: Sendable {
    @usableFromInline let channelRead: @Sendable (ConnectionChannelHandler<Codec>, NIOAny) -> Void
    /// Takes a batch of the inbox's submissions.
    @usableFromInline let take: @Sendable (ConnectionChannelHandler<Codec>, [SubmissionInbox<Codec.Key, Codec.Inbound>.Submission]) -> Void

    @inlinable
    init() {
        self.channelRead = { handler, data in handler.received(data) }
        self.take = { handler, submissions in handler.take(submissions) }
    }
}
