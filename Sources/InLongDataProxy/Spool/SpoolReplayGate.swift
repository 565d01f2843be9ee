import Synchronization

/// Opens once the records a previous client left in the spool were appended again (or the replay gave up):
/// `flush()` waits for it first, so that a flush right after start covers the replayed records too.
final class SpoolReplayGate: Sendable {
    private struct State {
        var open: Bool
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state: Mutex<State>

    init(open: Bool) {
        self.state = Mutex(State(open: open))
    }

    func open() {
        let waiters = self.modifyState { state in
            state.open = true
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the gate is open, or the task is cancelled.
    func wait() async {
        let id = self.modifyState { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // A cancellation that came before the waiter was parked is seen here: both sides look under the lock.
                let now = self.modifyState { state in
                    guard !state.open, !Task.isCancelled else { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            self.modifyState { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// The gate's one lock site.
    private func modifyState<Value>(_ body: (inout State) -> Value) -> Value {
        self.state.withLock { body(&$0) }
    }
}
