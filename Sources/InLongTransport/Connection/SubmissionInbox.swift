import NIOCore
import Synchronization

/// Requests and sends on their way from tasks (any thread) to a channel's event loop, already encoded, batched by
/// an ``EventLoopBatch``: many tasks sending at once cost one hop per batch, not one per request, and the order
/// of submission is kept, cancellations included.
///
/// Not generic over the codec, as the state machine it feeds: see ``ConnectionOperation``.
final class SubmissionInbox: Sendable {
    enum Submission: Sendable {
        case request(key: RequestKey, bytes: ByteBuffer, completion: ConnectionOperation.Completion, timeout: TimeAmount?)
        case send(bytes: ByteBuffer, promise: EventLoopPromise<Void>?)
        /// Cancels the request with this key only if it is still the one `ticket` was taken for: its key may
        /// have been reused since it ended.
        case cancel(key: RequestKey, ticket: UInt64)
    }

    private let batch: EventLoopBatch<Submission>
    private let tickets = Atomic<UInt64>(0)

    /// `deliver` hands a batch to the channel handler, on the event loop.
    init(eventLoop: any EventLoop, deliver: @escaping @Sendable ([Submission]) -> Void) {
        self.batch = EventLoopBatch(eventLoop: eventLoop, deliver: deliver)
    }

    /// A number no other request of this inbox has: what a cancellation names its request by.
    func takeTicket() -> UInt64 {
        self.tickets.wrappingAdd(1, ordering: .relaxed).newValue
    }

    func submit(_ submission: Submission) {
        // The inbox is never closed: a closed channel's handler fails what reaches it.
        _ = self.batch.append(submission)
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
        /// `ticket` is what the task's cancellation names it by.
        case awaitingResponse(AwaitingTask, ticket: UInt64)
        case written(EventLoopPromise<Void>?)
    }

    var bytes: ByteBuffer
    var completion: Completion

    /// Whether a cancellation that names `ticket` is this request's.
    func isCancelled(by ticket: UInt64) -> Bool {
        guard case .awaitingResponse(_, let own) = self.completion else { return false }
        return own == ticket
    }
}

/// A task awaiting a response: its `CheckedContinuation<Inbound, any Error>`, kept as a `Sendable` existential so
/// that the codec-free state machine can hold it; the codec-generic code that knows `Inbound` takes it back with a
/// checked cast. The existential holds the continuation inline; the `CheckedContinuation` itself costs one
/// allocation per request, the price of its check that the task is resumed exactly once.
struct AwaitingTask: Sendable {
    private let continuation: any Sendable

    init<Value>(_ continuation: CheckedContinuation<Value, any Error>) {
        self.continuation = continuation
    }

    /// Resumes the task; `Value` is the type it awaits (the codec's `Inbound`).
    func resume<Value: Sendable>(with result: Result<Value, any Error>) {
        (self.continuation as! CheckedContinuation<Value, any Error>).resume(with: result)
    }
}

/// A codec's request key without its type, for the codec-free ``ConnectionStateMachine``. It avoids `AnyHashable`,
/// whose creation looks up a conformance: a request's key is hashed and copied at every table it passes through.
/// An integer key (the common case) is kept as its bits and type, so that copying, comparing and hashing it calls
/// no value witness; any other key is kept as an existential, with its hash taken once, when it is made.
struct RequestKey: Hashable, Sendable {
    private enum Storage: Sendable {
        case integer(bits: UInt64, type: ObjectIdentifier)
        case other(key: any Hashable & Sendable, hash: Int)
    }

    private let storage: Storage

    init<Key: Hashable & Sendable>(_ key: Key) {
        if let bits = Self.integerBits(of: key) {
            self.storage = .integer(bits: bits, type: ObjectIdentifier(Key.self))
        } else {
            self.storage = .other(key: key, hash: key.hashValue)
        }
    }

    /// The bits of a standard integer key. Comparing the type first costs a pointer comparison, where a cast to
    /// a protocol would look its conformance up; the cast after it is to the very same type.
    private static func integerBits<Key>(of key: Key) -> UInt64? {
        if Key.self == UInt32.self { return UInt64(key as! UInt32) }
        if Key.self == UInt64.self { return .some(key as! UInt64) }
        if Key.self == Int.self { return UInt64(bitPattern: Int64(key as! Int)) }
        if Key.self == Int64.self { return UInt64(bitPattern: key as! Int64) }
        if Key.self == Int32.self { return UInt64(UInt32(bitPattern: key as! Int32)) }
        if Key.self == UInt.self { return UInt64(key as! UInt) }
        if Key.self == UInt16.self { return UInt64(key as! UInt16) }
        if Key.self == Int16.self { return UInt64(UInt16(bitPattern: key as! Int16)) }
        if Key.self == UInt8.self { return UInt64(key as! UInt8) }
        if Key.self == Int8.self { return UInt64(UInt8(bitPattern: key as! Int8)) }
        return nil
    }

    static func == (lhs: RequestKey, rhs: RequestKey) -> Bool {
        switch (lhs.storage, rhs.storage) {
        case (.integer(let lhsBits, let lhsType), .integer(let rhsBits, let rhsType)):
            return lhsBits == rhsBits && lhsType == rhsType
        case (.other(let lhsKey, let lhsHash), .other(let rhsKey, let rhsHash)):
            return lhsHash == rhsHash && Self.equal(lhsKey, rhsKey)
        default:
            return false
        }
    }

    /// Compares the types, then the values.
    private static func equal<Left: Hashable, Right: Hashable>(_ lhs: Left, _ rhs: Right) -> Bool {
        guard let rhs = rhs as? Left else { return false }
        return lhs == rhs
    }

    func hash(into hasher: inout Hasher) {
        switch self.storage {
        case .integer(let bits, _): hasher.combine(bits)
        case .other(_, let hash): hasher.combine(hash)
        }
    }
}
