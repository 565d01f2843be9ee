import DequeModule
import Synchronization

/// The bytes read and not yet acked, over all files: taken before a read, given back at ack. Waiters are served
/// in order, so that no file starves; closing the budget sends every waiter away.
final class ByteBudget: Sendable {
    private struct Waiter {
        var id: Int
        var bytes: Int
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var available: Int
        var waiters = Deque<Waiter>()
        var nextID = 0
        var closed = false
        var cancelled: Set<Int> = []
    }

    let capacity: Int
    private let state: Mutex<State>

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        self.state = Mutex(State(available: max(capacity, 1)))
    }

    var available: Int { self.state.withLock { $0.available } }

    /// Takes `bytes` (at most the capacity), waiting for them; `false` when the budget was closed or the task
    /// cancelled first.
    func acquire(_ bytes: Int) async -> Bool {
        let bytes = min(bytes, self.capacity)
        let id = self.state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let immediate = self.state.withLock { state -> Bool? in
                    if state.closed || state.cancelled.remove(id) != nil { return false }
                    if state.waiters.isEmpty, state.available >= bytes {
                        state.available -= bytes
                        return true
                    }
                    state.waiters.append(Waiter(id: id, bytes: bytes, continuation: continuation))
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> Waiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return state.waiters.remove(at: index)
            }
            waiter?.continuation.resume(returning: false)
        }
    }

    /// Takes `bytes` without waiting (a read that came out larger than what was taken for it).
    func overdraw(_ bytes: Int) {
        guard bytes > 0 else { return }
        self.state.withLock { $0.available -= bytes }
    }

    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        let ready = self.state.withLock { state -> [Waiter] in
            state.available = min(state.available + bytes, self.capacity)
            var ready: [Waiter] = []
            while let first = state.waiters.first, first.bytes <= state.available {
                state.available -= first.bytes
                ready.append(state.waiters.removeFirst())
            }
            return ready
        }
        for waiter in ready { waiter.continuation.resume(returning: true) }
    }

    /// Sends every waiter away, now and later.
    func close() {
        let waiters = self.state.withLock { state -> Deque<Waiter> in
            state.closed = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(returning: false) }
    }
}
