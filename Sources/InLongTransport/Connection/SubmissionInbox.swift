import NIOCore
import Synchronization

/// Requests and sends on their way from tasks (any thread) to a channel's event loop, already encoded. Those
/// submitted while one hop is scheduled ride on it, so many tasks sending at once cost one hop per batch, not one
/// per request; the order of submission is kept, cancellations included.
final class SubmissionInbox<Codec: FrameCodec>: Sendable {
    enum Submission: Sendable {
        case request(key: Codec.Key, bytes: ByteBuffer, completion: Completion, timeout: TimeAmount?)
        case send(bytes: ByteBuffer, promise: EventLoopPromise<Void>?)
        case cancel(key: Codec.Key)
    }

    /// `ConnectionChannelHandler.Operation.Completion`, in a form that may cross threads.
    enum Completion: Sendable {
        case promise(EventLoopPromise<Codec.Inbound>)
        case continuation(UnsafeContinuation<Codec.Inbound, any Error>)
    }

    private struct State {
        var submissions: [Submission] = []
        var scheduled = false
    }

    private let handler: NIOLoopBound<ConnectionChannelHandler<Codec>>
    private let state = Mutex(State())

    init(handler: NIOLoopBound<ConnectionChannelHandler<Codec>>) {
        self.handler = handler
    }

    func submit(_ submission: Submission) {
        let schedule = self.state.withLock { state in
            state.submissions.append(submission)
            defer { state.scheduled = true }
            return !state.scheduled
        }
        if schedule { self.handler.eventLoop.execute { self.drain() } }
    }

    /// On the event loop.
    private func drain() {
        var submissions: [Submission] = []
        self.state.withLock { state in
            swap(&submissions, &state.submissions)
            state.scheduled = false
        }
        let handler = self.handler.value
        for submission in submissions {
            switch submission {
            case .request(let key, let bytes, let completion, let timeout):
                switch completion {
                case .promise(let promise):
                    handler.submitRequest(key: key, bytes: bytes, completion: .response(promise), timeout: timeout)
                case .continuation(let continuation):
                    handler.submitRequest(key: key, bytes: bytes, completion: .awaitingResponse(continuation), timeout: timeout)
                }
            case .send(let bytes, let promise):
                handler.submitSend(bytes: bytes, promise: promise)
            case .cancel(let key):
                handler.cancelRequest(key: key)
            }
        }
    }
}
