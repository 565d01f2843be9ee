import DequeModule
import Logging
import Synchronization
import NIOCore

/// Drives a ``ConnectionStateMachine`` on the event loop: splits inbound bytes into frames with the codec,
/// completes requests, hands the peer's own requests to the inbound handler pool (and stops reading while it has
/// no room for them), writes with coalesced flushes, reports completed writes (which start request timeouts),
/// runs the request and idle timers. Callers reach it on its event loop only (through `NIOLoopBound`).
final class ConnectionChannelHandler<Codec: FrameCodec>: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Configuration {
        var stateMachine: StateMachine.Configuration
        var maxFrameLength: Int
        /// Coalesced bytes beyond this are written at once rather than at the end of the tick, so the channel's
        /// writability (and with it the queueing in the state machine) follows the watermarks.
        var flushThreshold: Int = 1 << 20
        var framingErrorPolicy = PersistentConnection<Codec>.Configuration.FramingErrorPolicy.close
    }

    typealias Operation = ConnectionOperation
    /// Keyed by `RequestKey`, with concrete operations, so that it runs specialised (see ``ConnectionOperation``).
    typealias StateMachine = ConnectionStateMachine<RequestKey, ConnectionOperation>

    private let codec: Codec
    let configuration: Configuration
    private let endpoint: Endpoint
    let observer: ConnectionObserver
    private let logger: Logger
    /// Runs the peer's requests; without one, they are dropped and counted.
    private let inbound: InboundHandlerPool<Codec>?
    /// This connection as the inbound pool knows it, from handlerAdded to channelInactive.
    private var poolConnection: PoolConnection?
    private var inboundRunner: InboundRequestRunner<Codec>?
    private var answerOutbox: AnswerOutbox?
    /// Called once, at the first response: the connection works.
    private var onFirstResponse: (@Sendable () -> Void)?
    var stateMachine: StateMachine
    var context: ChannelHandlerContext?
    private var reader: FrameReader
    var coalescer = OutboundCoalescer()
    var outboundFrames = 0
    /// Bytes written to the channel since its last flush.
    var unflushedBytes = 0
    var writtenCompletions: [EventLoopPromise<Void>] = []
    /// What each write with a promise reports when it completes, in write order (writes complete in order): kept
    /// here rather than captured, so that the completion callback captures nothing but the handler and costs no
    /// allocation of its own.
    var pendingWrites: Deque<(items: Int, completions: [EventLoopPromise<Void>])> = []
    /// One timer, armed for the earliest deadline of the written requests (their timeouts start when their
    /// frames are written; the state machine holds the deadlines): a timer per request cost several allocations
    /// each.
    var requestTimer: (deadline: NIODeadline, task: Scheduled<Void>)?
    var flushScheduled = false
    /// Inside a batch (of submissions, or of answers) that flushes when it ends, so no flush is scheduled.
    var inBatch = false
    var idleTimer: Scheduled<Void>?
    private var drainTimer: Scheduled<Void>?
    /// Why the channel is closing, so pending requests fail with the real reason.
    private(set) var closeReason: TransportError?
    /// A graceful close waits for the last writes.
    private var closingAfterWrites = false
    /// The peer's reported load, smoothed; a new channel starts without one.
    private var smoothedLoad: Int?

    /// Bytes of storage the receive buffer holds (for tests of its bound).
    var receiveBufferCapacity: Int { self.reader.capacity }

    init(
        codec: Codec,
        configuration: Configuration,
        endpoint: Endpoint,
        observer: ConnectionObserver,
        logger: Logger,
        now: NIODeadline,
        inbound: InboundHandlerPool<Codec>?,
        onFirstResponse: (@Sendable () -> Void)? = nil
    ) {
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
    func submitRequest(_ frame: Codec.Outbound, promise: EventLoopPromise<Codec.Inbound>, timeout: TimeAmount?) {
        guard self.context != nil, let bytes = self.encode(frame, promise: promise) else {
            promise.fail(self.error(.notConnected))
            return
        }
        self.submitRequest(key: RequestKey(self.codec.key(of: frame)), bytes: bytes, completion: .response(promise), timeout: timeout)
    }

    /// Takes a batch of submissions from tasks (through the ``SubmissionInbox``), in order.
    func take(_ submissions: [SubmissionInbox.Submission]) {
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
    func submitRequest(key: RequestKey, bytes: ByteBuffer, completion: Operation.Completion, timeout: TimeAmount?) {
        let operation = Operation(bytes: bytes, completion: completion)
        guard self.context != nil else {
            self.complete(operation, with: self.error(.notConnected))
            return
        }
        self.run(self.stateMachine.requestSubmitted(key: key, pending: operation, timeout: timeout, now: self.now))
    }

    func submitSend(_ frame: Codec.Outbound, promise: EventLoopPromise<Void>?) {
        guard self.context != nil, let bytes = self.encode(frame, promise: promise) else {
            promise?.fail(self.error(.notConnected))
            return
        }
        self.submitSend(bytes: bytes, promise: promise)
    }

    /// Submits a send encoded by the caller (off the event loop).
    func submitSend(bytes: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard self.context != nil else {
            promise?.fail(self.error(.notConnected))
            return
        }
        self.run(self.stateMachine.sendSubmitted(pending: Operation(bytes: bytes, completion: .written(promise)), now: self.now))
    }

    func cancelRequest(key: RequestKey, ticket: UInt64) {
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
    var now: NIODeadline { self.context?.eventLoop.now ?? .now() }

    private func encode<T>(_ frame: Codec.Outbound, promise: EventLoopPromise<T>?) -> ByteBuffer? {
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

    func channelActive(context: ChannelHandlerContext) {
        self.becameActive(context: context)
        context.fireChannelActive()
    }

    private func becameActive(context: ChannelHandlerContext) {
        guard self.idleTimer == nil else { return }
        self.run(self.stateMachine.nextIdleCheck(now: self.now))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        self.observer.bytesRead(bytes.readableBytes)
        self.stateMachine.bytesRead(now: self.now)
        self.reader.append(bytes)
        self.processFrames()
    }

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

    /// Takes frames from the receive buffer until it runs dry or reading pauses (the frames left wait there).
    private func processFrames() {
        do {
            while let frame = try self.reader.next(with: self.codec) {
                self.dispatch(frame)
            }
        } catch {
            switch self.reader.framingFailed() {
            case .close:
                self.close(TransportError(.protocolViolation, endpoint: self.endpoint, underlying: error))
            case .discardBuffer:
                self.observer.receiveBufferDiscarded()
                self.logger.debug(
                    "discarded bytes that are not a frame",
                    metadata: ["inlong.endpoint": "\(self.endpoint)", "error": "\(error)"]
                )
            }
        }
    }

    private func dispatch(_ frame: Codec.Inbound) {
        self.observer.frameRead()
        let now = self.now
        switch self.codec.kind(of: frame) {
        case .response(let codecKey):
            let key = RequestKey(codecKey)
            let (first, second) = self.stateMachine.responseReceived(key: key, now: now)
            if case .succeed(let operation) = first {
                self.observer.requestSucceeded()
                switch operation.completion {
                case .response(let promise): self.succeed(promise, with: frame)
                case .awaitingResponse(let task, _): task.resume(with: Result<Codec.Inbound, any Error>.success(frame))
                case .written: break
                }
                if let onFirstResponse = self.onFirstResponse {
                    self.onFirstResponse = nil
                    onFirstResponse()
                }
            } else {
                self.logger.debug("response matches no pending request", metadata: ["inlong.endpoint": "\(self.endpoint)"])
            }
            self.run(second)
        case .heartbeatReply:
            self.heartbeatReplyReceived(frame, now: now)
        case .unsolicited:
            self.unsolicitedReceived(frame)
        }
    }

    // Apart from dispatch(_:), as sendHeartbeat() is from run(_:): the types only these cases use (the responder,
    // optional frames) would otherwise have their metadata looked up for every response.

    @inline(never)
    private func succeed(_ promise: any Sendable, with frame: Codec.Inbound) {
        (promise as! EventLoopPromise<Codec.Inbound>).succeed(frame)
    }

    @inline(never)
    private func heartbeatReplyReceived(_ frame: Codec.Inbound, now: NIODeadline) {
        if let load = self.codec.reportedLoad(in: frame), load >= 0 {
            // Weighs the newest reply a quarter, so one spike does not move all traffic away.
            let smoothed = self.smoothedLoad.map { ($0 * 3 + load) / 4 } ?? load
            self.smoothedLoad = smoothed
            self.observer.reportedLoad(smoothed)
        }
        self.run(self.stateMachine.heartbeatReplyReceived(now: now))
    }

    @inline(never)
    private func unsolicitedReceived(_ frame: Codec.Inbound) {
        if let response = self.codec.heartbeatResponse(to: frame) {
            self.submitSend(response, promise: nil)
            return
        }
        guard let inbound = self.inbound, let connection = self.poolConnection, let runner = self.inboundRunner else {
            self.observer.unsolicitedDropped()
            return
        }
        switch inbound.submit(frame, to: runner, from: connection) {
        case .accepted:
            break
        case .pauseReading:
            self.reader.pause()
        case .refused:
            self.observer.unsolicitedDropped()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.run(self.stateMachine.writabilityChanged(isWritable: context.channel.isWritable, now: self.now))
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.close(TransportError(.connectionClosed, endpoint: self.endpoint, underlying: error))
    }

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

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Actions

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

    /// Apart from ``run(_:)``, which every request passes through: a value of the codec's types in a function makes
    /// the unspecialised code look their metadata up at each call, whichever case runs.
    @inline(never)
    private func sendHeartbeat() {
        if let heartbeat = self.codec.makeHeartbeat(), let bytes = self.encode(heartbeat, promise: Optional<EventLoopPromise<Void>>.none) {
            self.stateMachine.heartbeatWritten(now: self.now)
            self.appendOutbound(bytes)
        }
    }

    private func complete(_ operation: Operation, with error: TransportError) {
        switch operation.completion {
        case .response, .awaitingResponse:
            self.observer.requestFailed(timedOut: error.code == .requestTimeout, wasInFlight: error.mayHaveBeenDelivered)
            switch operation.completion {
            case .response(let promise): (promise as! EventLoopPromise<Codec.Inbound>).fail(error)
            case .awaitingResponse(let task, _): task.resume(with: Result<Codec.Inbound, any Error>.failure(error))
            case .written: break
            }
        case .written(let promise):
            promise?.fail(error)
        }
    }

    /// Closes the channel; with `afterWrites`, once everything handed to it so far is written (a later close
    /// without, such as the drain deadline's, closes at once).
    private func close(_ error: TransportError, afterWrites: Bool = false) {
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

    private func error(_ code: TransportError.Code) -> TransportError {
        TransportError(code, endpoint: self.endpoint)
    }

    private func with(_ error: TransportError) -> TransportError {
        var copy = error
        copy.endpoint = copy.endpoint ?? self.endpoint
        return copy
    }
}

@available(*, unavailable)
extension ConnectionChannelHandler: Sendable {}
