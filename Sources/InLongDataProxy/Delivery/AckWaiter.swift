import Synchronization

/// A `sendAndWait` caller waiting for the outcome of its record. Resumed exactly once: by the record's outcome,
/// or with `CancellationError` when its task is cancelled first (the record's fate is still reported).
final class AckWaiter: Sendable {
    private enum State {
        case waiting
        case suspended(CheckedContinuation<DataProxyAck, any Error>)
        case cancelled
        case done
    }

    private let state = Mutex(State.waiting)

    init() {}

    /// Hands over the suspended caller; resumes it at once, and returns `false`, when its task was cancelled
    /// already (the record must then not be appended).
    func suspend(_ continuation: CheckedContinuation<DataProxyAck, any Error>) -> Bool {
        let cancelled = self.modifyState { state -> Bool in
            guard case .waiting = state else { return true }
            state = .suspended(continuation)
            return false
        }
        if cancelled { continuation.resume(throwing: CancellationError()) }
        return !cancelled
    }

    /// Resumes the caller with the record's outcome, unless it was cancelled or resumed before.
    func resume(with result: Result<DataProxyAck, DataProxyError>) {
        guard let continuation = self.take(next: .done) else { return }
        continuation.resume(with: result.mapError { $0 })
    }

    /// Resumes the caller with an error of the client's (a full buffer to wait out, a record too large).
    func resume(throwing error: any Error) {
        self.take(next: .done)?.resume(throwing: error)
    }

    /// Resumes the caller with `CancellationError`.
    func cancel() {
        self.take(next: .cancelled)?.resume(throwing: CancellationError())
    }

    private func take(next: State) -> CheckedContinuation<DataProxyAck, any Error>? {
        self.modifyState { state in
            switch state {
            case .waiting:
                state = next
                return nil
            case .suspended(let continuation):
                state = .done
                return continuation
            case .cancelled, .done:
                return nil
            }
        }
    }

    /// The waiter's one lock site.
    private func modifyState<Value>(_ body: (inout State) -> Value) -> Value {
        self.state.withLock { body(&$0) }
    }
}
