public import NIOCore
import Synchronization

/// How inbound requests (frames the peer sends on its own) are handled: by `width` handlers running at once off
/// the event loop, with up to `queueLimit` more waiting. When both are full, the connection a request arrived on
/// stops reading until there is room, so a peer that sends faster than the handlers answer is slowed down by
/// TCP, never dropped.
///
/// > Note: A handler that waits for something only the same connection can bring (a response to a request of
/// its own, sent on that connection) can wait forever once its connection stops reading; keep `queueLimit`
/// large enough, or do not wait on the connection in a handler.
public struct HandlerPoolConfiguration: Sendable, Hashable {
    /// Handlers running at once. Values below 1 count as 1.
    public var width: Int
    /// Requests waiting for a handler; beyond this the connection stops reading. Values below 0 count as 0.
    public var queueLimit: Int

    public init(width: Int, queueLimit: Int) {
        self.width = width
        self.queueLimit = queueLimit
    }
}

/// Answers an inbound request on the connection it came from.
public struct FrameResponder<Codec: FrameCodec>: Sendable {
    /// The peer's address.
    public let peer: SocketAddress?
    private let codec: Codec
    private let outbox: AnswerOutbox

    init(peer: SocketAddress?, codec: Codec, outbox: AnswerOutbox) {
        self.peer = peer
        self.codec = codec
        self.outbox = outbox
    }

    /// Writes `frame` to the peer: an answer, or a frame of one's own. It is encoded here, off the event loop,
    /// and written in order with the connection's other frames; a connection that closes gracefully writes
    /// every answer handed to it first. Throws when the connection has closed, or the frame cannot be encoded.
    public func respond(_ frame: Codec.Outbound) async throws {
        var (buffer, given) = self.outbox.encoding.makeBuffer()
        try self.codec.encode(frame, into: &buffer)
        self.outbox.encoding.learn(from: buffer, given)
        try self.outbox.append(buffer)
    }
}

/// Answers on their way from handlers (any thread) to a connection's event loop, batched by an
/// ``EventLoopBatch``: a busy connection costs one hop per batch of answers, not one per answer.
final class AnswerOutbox: Sendable {
    private let batch: EventLoopBatch<ByteBuffer>
    /// The room answers are encoded into.
    let encoding = EncodingCapacityHint()

    /// `deliver` writes a batch of answers and flushes; it runs on `eventLoop`.
    init(eventLoop: any EventLoop, deliver: @escaping @Sendable ([ByteBuffer]) -> Void) {
        self.batch = EventLoopBatch(eventLoop: eventLoop, deliver: deliver)
    }

    func append(_ answer: ByteBuffer) throws {
        guard self.batch.append(answer) else { throw TransportError(.connectionClosed) }
    }

    /// Delivers what is waiting; on the event loop (also before a graceful close, so nothing is left behind).
    func drain() {
        self.batch.drain()
    }

    /// The connection closed: later answers fail.
    func close() {
        self.batch.close()
    }
}

/// A connection as the handler pool sees it: how to reach it on its event loop.
final class PoolConnection: Hashable, Sendable {
    /// Lets the connection read again (it paused with a request parked in the pool).
    let resumeReading: @Sendable () -> Void
    /// Nothing is under way on the connection and the pool is stopping or the connection draining: close it once
    /// its answers are written.
    let close: @Sendable () -> Void

    init(resumeReading: @escaping @Sendable () -> Void, close: @escaping @Sendable () -> Void) {
        self.resumeReading = resumeReading
        self.close = close
    }

    static func == (lhs: PoolConnection, rhs: PoolConnection) -> Bool { lhs === rhs }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

enum HandlerPoolSubmitted {
    case accepted
    /// Stop reading until the connection's `resumeReading` is called.
    case pauseReading
    /// The pool is stopping (or the connection is closed): the request is not handled.
    case refused
}

/// The handler pool for one codec: wraps each request and its responder into the work the codec-free
/// ``HandlerPoolCore`` runs.
final class InboundHandlerPool<Codec: FrameCodec>: Sendable {
    typealias Handler = @Sendable (Codec.Inbound, FrameResponder<Codec>) async -> Void

    let core: HandlerPoolCore
    private let handler: Handler

    init(configuration: HandlerPoolConfiguration, perConnectionLimit: Int? = nil, handler: @escaping Handler) {
        self.core = HandlerPoolCore(configuration: configuration, perConnectionLimit: perConnectionLimit)
        self.handler = handler
    }

    var width: Int { self.core.width }
    var handledCount: Int { self.core.handledCount }
    var pausedCount: Int { self.core.pausedCount }
    var queuedCount: Int { self.core.queuedCount }

    func connectionOpened(_ connection: PoolConnection) -> Bool { self.core.connectionOpened(connection) }
    func connectionClosed(_ connection: PoolConnection) { self.core.connectionClosed(connection) }
    func connectionDraining(_ connection: PoolConnection) { self.core.connectionDraining(connection) }
    func stop() { self.core.stop() }
    func run() async { await self.core.run() }

    /// The handler bound to a connection's responder, made once per connection: a request's work then captures
    /// it and the request only, and does not copy the codec-generic responder, whose metadata unspecialised code
    /// would look up at each copy.
    func runner(for responder: FrameResponder<Codec>) -> InboundRequestRunner<Codec> {
        InboundRequestRunner(handler: self.handler, responder: responder)
    }

    /// Called on the connection's event loop for each inbound request.
    func submit(_ request: Codec.Inbound, to runner: InboundRequestRunner<Codec>, from connection: PoolConnection) -> HandlerPoolSubmitted {
        self.core.submit({ await runner.run(request) }, from: connection)
    }
}

/// A connection's inbound requests' handler, with the connection's responder.
final class InboundRequestRunner<Codec: FrameCodec>: Sendable {
    private let handler: InboundHandlerPool<Codec>.Handler
    private let responder: FrameResponder<Codec>

    init(handler: @escaping InboundHandlerPool<Codec>.Handler, responder: FrameResponder<Codec>) {
        self.handler = handler
        self.responder = responder
    }

    func run(_ request: Codec.Inbound) async {
        await self.handler(request, self.responder)
    }
}

/// Runs a ``HandlerPoolStateMachine`` with `width` worker tasks (in ``run()``): connections submit work from
/// their event loops, workers take it, and each transition is lock, call, unlock, perform the effects.
///
/// Not generic over the codec on purpose: generic code used from another module (the application's, where the
/// codec is) runs unspecialised and looks type metadata up at every call, which cost more than the handlers'
/// work in a busy pool; with concrete types this is compiled once, specialised.
final class HandlerPoolCore: Sendable {
    typealias Work = @Sendable () async -> Void
    typealias Job = HandlerPoolJob<PoolConnection, WorkItem>
    typealias Worker = UnsafeContinuation<Job?, Never>
    typealias Machine = HandlerPoolStateMachine<PoolConnection, WorkItem, Worker>

    /// A request's work, wrapped: a function stored as a generic parameter of the state machine would be
    /// re-abstracted through a thunk, which costs an allocation per request; in a struct it is stored as it is.
    struct WorkItem: Sendable {
        let run: Work
    }

    let width: Int
    private let machine: Mutex<Machine>
    private let handled = Atomic<Int>(0)

    init(configuration: HandlerPoolConfiguration, perConnectionLimit: Int? = nil) {
        self.width = max(configuration.width, 1)
        self.machine = Mutex(
            Machine(
                configuration: .init(
                    queueLimit: configuration.queueLimit,
                    perConnectionLimit: perConnectionLimit ?? self.width
                )
            )
        )
    }

    /// Requests handled so far.
    var handledCount: Int { self.handled.load(ordering: .relaxed) }
    /// Connections not reading now because the pool and its queue are full.
    var pausedCount: Int { self.modifyState { $0.pausedCount } }
    /// Requests waiting for a handler now.
    var queuedCount: Int { self.modifyState { $0.queuedCount } }

    /// `false` once stopping: the connection should close.
    func connectionOpened(_ connection: PoolConnection) -> Bool {
        self.modifyState { $0.connectionOpened(connection) }
    }

    func connectionClosed(_ connection: PoolConnection) {
        self.run(self.modifyState { $0.connectionClosed(connection) })
    }

    /// The connection closes gracefully: it takes no new request, and its `close` is called once the requests
    /// under way are answered.
    func connectionDraining(_ connection: PoolConnection) {
        self.run(self.modifyState { $0.connectionDraining(connection) })
    }

    func submit(_ work: @escaping Work, from connection: PoolConnection) -> HandlerPoolSubmitted {
        let item = WorkItem(run: work)
        return self.run(self.modifyState { $0.requestReceived(item, on: connection) })
    }

    /// No new request is handled; connections close as their requests under way are answered, and ``run()``
    /// returns once every handler has ended.
    func stop() {
        self.run(self.modifyState { $0.stop() })
    }

    /// Runs the workers until ``stop()``.
    func run() async {
        await withDiscardingTaskGroup { group in
            for _ in 0..<self.width {
                group.addTask { await self.work() }
            }
        }
    }

    private func work() async {
        var finished: PoolConnection?
        while let job = await self.next(finished: finished) {
            await job.request.run()
            self.handled.add(1, ordering: .relaxed)
            finished = job.connection
        }
    }

    private func next(finished: PoolConnection?) async -> Job? {
        // When work is waiting, the continuation is resumed before this suspends, which costs no hop.
        await withUnsafeContinuation { worker in
            self.run(self.modifyState { $0.workerReady(worker, finished: finished) })
        }
    }

    // MARK: State

    /// The one place the pool's state is read or changed: lock, one event of the machine, unlock. What the event
    /// returns is run (``run(_:)``) after the lock is released, so no worker or connection is reached under it.
    private func modifyState<Outcome>(_ event: (inout sending Machine) -> sending Outcome) -> sending Outcome {
        self.machine.withLock { event(&$0) }
    }

    /// A request received: handed to a worker, queued, parked, or refused.
    private func run(_ received: Machine.Received) -> HandlerPoolSubmitted {
        switch received {
        case .start(let worker, let job):
            worker.resume(returning: job)
            return .accepted
        case .queued:
            return .accepted
        case .pauseReading:
            return .pauseReading
        case .refused:
            return .refused
        }
    }

    private func run(_ effects: Machine.Effects) {
        if let (worker, job) = effects.own { worker.resume(returning: job) }
        for (worker, job) in effects.start { worker.resume(returning: job) }
        for worker in effects.exit { worker.resume(returning: nil) }
        for connection in effects.resumeReading { connection.resumeReading() }
        for connection in effects.close { connection.close() }
    }
}
