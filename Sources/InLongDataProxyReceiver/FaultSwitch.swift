import Synchronization

/// The receiver's injected faults, changed at run time, and the requests held while reading is stopped: they wait
/// for the switch to turn back (or the receiver to stop), not on a timer.
final class FaultSwitch: Sendable {
    private struct State {
        var faults: DataProxyReceiver.Faults
        /// Spreads injected errors evenly: with rate r, the n-th request fails when ⌊n·r⌋ grows.
        var errorBudget = 0.0
        var held: [Int: CheckedContinuation<Bool, Never>] = [:]
        var nextHold = 0
        var stopped = false

        /// Whether a request may go on now: `true` to go on, `false` to drop it, `nil` to wait.
        var admission: Bool? {
            if self.stopped { return false }
            return self.faults.stopReading ? nil : true
        }
    }

    private let state: Mutex<State>

    init(_ faults: DataProxyReceiver.Faults) {
        self.state = Mutex(State(faults: faults))
    }

    var current: DataProxyReceiver.Faults { self.modify { $0.faults } }

    func update(_ change: (inout DataProxyReceiver.Faults) -> Void) {
        self.release { state in change(&state.faults) }
    }

    /// From now on every request is dropped; those held are let go (to be dropped).
    func stop() {
        self.release { $0.stopped = true }
    }

    /// Waits while reading is stopped; `false` when the receiver stopped (or the task was cancelled) meanwhile and
    /// the request must be dropped.
    func admit() async -> Bool {
        if let admitted = self.modify({ $0.admission }) { return admitted }
        let id = self.modify { state -> Int in
            defer { state.nextHold += 1 }
            return state.nextHold
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let admitted = self.modify { state -> Bool? in
                    if Task.isCancelled { return false }
                    guard let admitted = state.admission else {
                        state.held[id] = continuation
                        return nil
                    }
                    return admitted
                }
                if let admitted { continuation.resume(returning: admitted) }
            }
        } onCancel: {
            self.modify { $0.held.removeValue(forKey: id) }?.resume(returning: false)
        }
    }

    /// Whether this data request gets the injected error (``DataProxyReceiver/Faults/errorRate`` of them do).
    func injectsError() -> Bool {
        self.modify { state in
            guard state.faults.errorCode != nil else { return false }
            state.errorBudget += min(max(state.faults.errorRate, 0), 1)
            guard state.errorBudget >= 1 - 1e-9 else { return false }
            state.errorBudget -= 1
            return true
        }
    }

    /// Applies `change`, then lets the held requests go if reading may resume.
    private func release(_ change: (inout State) -> Void) {
        let (released, admitted) = self.modify { state -> ([CheckedContinuation<Bool, Never>], Bool) in
            change(&state)
            guard let admitted = state.admission else { return ([], false) }
            defer { state.held.removeAll() }
            return (Array(state.held.values), admitted)
        }
        for continuation in released { continuation.resume(returning: admitted) }
    }

    private func modify<Value>(_ body: (inout State) -> Value) -> Value {
        self.state.withLock { body(&$0) }
    }
}
