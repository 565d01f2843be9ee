import Synchronization

/// The outcome of one `sendAndWait` record, handed from the delivery side to its caller. The outcome may come
/// before the caller waits (it is kept) and the caller's task may be cancelled before the outcome comes (the
/// caller gets `CancellationError`, the record's fate is still reported); the caller is resumed exactly once.
final class AckWaiter: Sendable {
    private enum State {
        case pending
        case ended(Result<DataProxyAck, DataProxyError>)
        case suspended(CheckedContinuation<DataProxyAck, any Error>)
        case cancelled
        case done
    }

    private let state = Mutex(State.pending)

    init() {}

    /// Waits for the record's outcome; `CancellationError` when the task is cancelled first.
    func outcome() async throws -> DataProxyAck {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let resumption: Result<DataProxyAck, any Error>? = self.modifyState { state in
                    switch state {
                    case .pending:
                        state = .suspended(continuation)
                        return nil
                    case .ended(let result):
                        state = .done
                        return result.mapError { $0 }
                    case .cancelled:
                        state = .done
                        return .failure(CancellationError())
                    case .suspended, .done:
                        preconditionFailure("an ack is awaited once")
                    }
                }
                if let resumption { continuation.resume(with: resumption) }
            }
        } onCancel: {
            self.end(.cancelled)?.resume(throwing: CancellationError())
        }
    }

    /// Hands over the record's outcome, unless its caller was cancelled.
    func resume(with result: Result<DataProxyAck, DataProxyError>) {
        self.end(.ended(result))?.resume(with: result.mapError { $0 })
    }

    /// Moves a waiter that has not ended to `next`; the continuation to resume when the caller was suspended.
    private func end(_ next: State) -> CheckedContinuation<DataProxyAck, any Error>? {
        self.modifyState { state in
            switch state {
            case .pending:
                state = next
                return nil
            case .suspended(let continuation):
                state = .done
                return continuation
            case .ended, .cancelled, .done:
                return nil
            }
        }
    }

    /// The waiter's one lock site.
    private func modifyState<Value>(_ body: (inout State) -> Value) -> Value {
        self.state.withLock { body(&$0) }
    }
}
