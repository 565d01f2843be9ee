import NIOCore
import Synchronization

/// Requests and sends on their way from tasks (any thread) to a channel's event loop, already encoded. Those
/// submitted while one hop is scheduled ride on it, so many tasks sending at once cost one hop per batch, not one
/// per request; the order of submission is kept, cancellations included.
///
/// Not generic over the codec, as the state machine it feeds: see ``ConnectionOperation``.
final class SubmissionInbox: Sendable {
    enum Submission: Sendable {
        case request(key: RequestKey, bytes: ByteBuffer, completion: ConnectionOperation.Completion, timeout: TimeAmount?)
        case send(bytes: ByteBuffer, promise: EventLoopPromise<Void>?)
        case cancel(key: RequestKey)
    }

    private struct State {
        var submissions: [Submission] = []
        /// The last batch's storage, emptied, so that a batch allocates nothing once the inbox is warm.
        var spare: [Submission] = []
        var scheduled = false
    }

    private let eventLoop: any EventLoop
    private let state = Mutex(State())
    /// Hands a batch to the channel handler, on the event loop.
    private let deliver: @Sendable ([Submission]) -> Void

    init(eventLoop: any EventLoop, deliver: @escaping @Sendable ([Submission]) -> Void) {
        self.eventLoop = eventLoop
        self.deliver = deliver
    }

    func submit(_ submission: Submission) {
        let schedule = self.state.withLock { state in
            state.submissions.append(submission)
            defer { state.scheduled = true }
            return !state.scheduled
        }
        if schedule { self.eventLoop.execute { self.drain() } }
    }

    /// On the event loop.
    private func drain() {
        var batch: [Submission] = self.state.withLock { state in
            state.scheduled = false
            var batch: [Submission] = []
            swap(&batch, &state.spare)
            swap(&batch, &state.submissions)
            return batch
        }
        self.deliver(batch)
        batch.removeAll(keepingCapacity: true)
        self.state.withLock { $0.spare = batch }
    }
}

/// A request or send on its way to a channel: its encoded bytes, and what to complete.
///
/// Not generic over the codec, so that ``ConnectionStateMachine`` (keyed by ``RequestKey``) is compiled for it once,
/// specialised. Generic code called from another module (the application's, where the codec is) runs
/// unspecialised and looks type metadata up at nearly every step, which cost more than the rest of a request's
/// work; only the codec calls and the completion stay generic.
struct ConnectionOperation {
    enum Completion: Sendable {
        /// An `EventLoopPromise` of the codec's `Inbound`.
        case response(any Sendable)
        /// A request awaited in a task: resumed directly, which costs less than a promise and its callbacks.
        case awaitingResponse(ErasedContinuation)
        case written(EventLoopPromise<Void>?)
    }

    var bytes: ByteBuffer
    var completion: Completion
}

/// An `UnsafeContinuation<Inbound, any Error>` without its type (it is the awaiting task's pointer), turned back by
/// the codec-generic code that knows `Inbound`, without a dynamic cast.
struct ErasedContinuation: @unchecked Sendable {
    private let raw: UnsafeRawPointer

    init<Value>(_ continuation: UnsafeContinuation<Value, any Error>) {
        self.raw = unsafeBitCast(continuation, to: UnsafeRawPointer.self)
    }

    /// `Value` must be the type it was made with.
    func typed<Value>(_: Value.Type) -> UnsafeContinuation<Value, any Error> {
        unsafeBitCast(self.raw, to: UnsafeContinuation<Value, any Error>.self)
    }
}

/// A codec's request key without its type, for the codec-free ``ConnectionStateMachine``. Its hash is taken once,
/// when it is made, and it avoids `AnyHashable`, whose creation looks up a conformance: a request's key is hashed
/// at every table it passes through.
struct RequestKey: Hashable, @unchecked Sendable {
    // Unchecked: made from `Sendable` keys only.
    private let key: any Hashable
    private let hash: Int

    init<Key: Hashable & Sendable>(_ key: Key) {
        self.key = key
        self.hash = key.hashValue
    }

    static func == (lhs: RequestKey, rhs: RequestKey) -> Bool {
        lhs.hash == rhs.hash && Self.equal(lhs.key, rhs.key)
    }

    /// Compares the types, then the values, without a dynamic cast.
    private static func equal<Left: Hashable, Right: Hashable>(_ lhs: Left, _ rhs: Right) -> Bool {
        guard Left.self == Right.self else { return false }
        return lhs == unsafeBitCast(rhs, to: Left.self)
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(self.hash)
    }
}
