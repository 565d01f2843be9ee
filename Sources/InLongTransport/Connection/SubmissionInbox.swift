public import NIOCore
import Synchronization

/// Requests and sends on their way from tasks (any thread) to a channel's event loop, already encoded, batched by
/// an ``EventLoopBatch``: many tasks sending at once cost one hop per batch, not one per request, and the order
/// of submission is kept, cancellations included. Typed by the codec's request key and response.
@usableFromInline
final class SubmissionInbox<Key: Hashable & Sendable, Response: Sendable>: Sendable {
    @usableFromInline
    enum Submission: Sendable {
        case request(key: Key, bytes: ByteBuffer, completion: ConnectionOperation<Response>.Completion, timeout: TimeAmount?)
        case send(bytes: ByteBuffer, promise: EventLoopPromise<Void>?)
        /// Cancels the request with this key only if it is still the one `ticket` was taken for: its key may
        /// have been reused since it ended.
        case cancel(key: Key, ticket: UInt64)
    }

    @usableFromInline let batch: EventLoopBatch<Submission>
    private let tickets = Atomic<UInt64>(0)

    /// `deliver` hands a batch to the channel handler, on the event loop.
    @inlinable
    init(eventLoop: any EventLoop, deliver: @escaping @Sendable ([Submission]) -> Void) {
        self.batch = EventLoopBatch(eventLoop: eventLoop, deliver: deliver)
    }

    /// A number no other request of this inbox has: what a cancellation names its request by.
    @usableFromInline
    func takeTicket() -> UInt64 {
        self.tickets.wrappingAdd(1, ordering: .relaxed).newValue
    }

    @inlinable
    func submit(_ submission: Submission) {
        // The inbox is never closed: a closed channel's handler fails what reaches it.
        _ = self.batch.append(submission)
    }
}

/// A request or send on its way to a channel: its encoded bytes, and what to complete with the codec's
/// `Response` (or, for a send, once written).
@usableFromInline
struct ConnectionOperation<Response: Sendable> {
    @usableFromInline
    enum Completion: Sendable {
        case response(EventLoopPromise<Response>)
        /// A request awaited in a task: resumed directly, which costs less than a promise and its callbacks.
        /// `ticket` is what the task's cancellation names it by.
        case awaitingResponse(any AwaitingTask<Response>, ticket: UInt64)
        case written(EventLoopPromise<Void>?)
    }

    @usableFromInline var bytes: ByteBuffer
    @usableFromInline var completion: Completion

    @inlinable
    init(bytes: ByteBuffer, completion: Completion) {
        self.bytes = bytes
        self.completion = completion
    }

    /// Whether a cancellation that names `ticket` is this request's.
    @inlinable
    func isCancelled(by ticket: UInt64) -> Bool {
        guard case .awaitingResponse(_, let own) = self.completion else { return false }
        return own == ticket
    }

    /// Completes a request with its response, or with a failure; a send only with a failure (its success is its
    /// write).
    @inlinable
    func complete(with result: Result<Response, any Error>) {
        switch self.completion {
        case .response(let promise): promise.completeWith(result)
        case .awaitingResponse(let task, _): task.resumeTask(with: result)
        case .written(let promise): if case .failure(let error) = result { promise?.fail(error) }
        }
    }
}

/// A task awaiting a response of type `Response`: its `CheckedContinuation`, which costs one allocation per
/// request, the price of its check that the task is resumed exactly once.
///
/// An existential rather than the continuation itself: the standard library's `CheckedContinuation` is resilient,
/// so an operation holding one has no fixed layout even where the codec is known, and each copy of an operation
/// (the state machine passes them on in its actions) went through generic value witnesses that looked type
/// metadata up. The existential has a fixed size, holds the continuation inline, and keeps its type: nothing is
/// cast back.
@usableFromInline
protocol AwaitingTask<Response>: Sendable {
    associatedtype Response
    func resumeTask(with result: sending Result<Response, any Error>)
}

extension CheckedContinuation: AwaitingTask where E == any Error {
    @usableFromInline
    typealias Response = T

    @inlinable
    func resumeTask(with result: sending Result<T, any Error>) {
        self.resume(with: result)
    }
}
