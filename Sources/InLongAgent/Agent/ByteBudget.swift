import DequeModule
import Synchronization

/// The rules of ``ByteBudget`` with no lock: bytes taken before a read and given back at its ack, waiters served in
/// order so that no file starves, closing sends every waiter away. `available` plus what is held is always the
/// capacity: a read larger than what was taken for it overdraws, never loses count. Every event returns the
/// waiters it serves, with what each was granted (0: sent away), for the driver to resume.
struct ByteBudgetState<Waiter> {
    private struct Queued {
        var id: Int
        var bytes: Int
        var waiter: Waiter
    }

    let capacity: Int
    private(set) var available: Int
    private var waiters = Deque<Queued>()
    private(set) var closed = false

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        self.available = self.capacity
    }

    var waiting: Int { self.waiters.count }

    typealias Served = (waiter: Waiter, bytes: Int)

    /// Takes `bytes` (at most the capacity) for `waiter` now, or queues it behind those already waiting; sends it
    /// away when closed or `cancelled` (its task was cancelled before it queued).
    mutating func acquire(_ bytes: Int, id: Int, waiter: Waiter, cancelled: Bool = false) -> [Served] {
        let bytes = min(bytes, self.capacity)
        if self.closed || cancelled { return [(waiter, 0)] }
        if self.waiters.isEmpty, self.available >= bytes {
            self.available -= bytes
            return [(waiter, bytes)]
        }
        self.waiters.append(Queued(id: id, bytes: bytes, waiter: waiter))
        return []
    }

    /// Takes `bytes` only if no one waits and they are there.
    mutating func tryAcquire(_ bytes: Int) -> Int? {
        let bytes = min(bytes, self.capacity)
        guard !self.closed, self.waiters.isEmpty, self.available >= bytes else { return nil }
        self.available -= bytes
        return bytes
    }

    /// Sends the waiter of `id` away, if it waits. A waiter leaving the head of the queue may let those behind it
    /// through: they are served too.
    mutating func cancel(id: Int) -> [Served] {
        guard let index = self.waiters.firstIndex(where: { $0.id == id }) else { return [] }
        let waiter = self.waiters.remove(at: index).waiter
        return [(waiter, 0)] + self.serve()
    }

    /// Takes `bytes` without waiting (a read that came out larger than what was taken for it).
    mutating func overdraw(_ bytes: Int) {
        self.available -= max(bytes, 0)
    }

    /// Gives `bytes` back; returns the waiters now served.
    mutating func release(_ bytes: Int) -> [Served] {
        guard bytes > 0 else { return [] }
        self.available += bytes
        return self.serve()
    }

    /// Sends every waiter away, now and later.
    mutating func close() -> [Served] {
        self.closed = true
        defer { self.waiters.removeAll() }
        return self.waiters.map { ($0.waiter, 0) }
    }

    /// Serves waiters in order while the first one's bytes are there.
    private mutating func serve() -> [Served] {
        var served: [Served] = []
        while let first = self.waiters.first, first.bytes <= self.available {
            self.available -= first.bytes
            self.waiters.removeFirst()
            served.append((first.waiter, first.bytes))
        }
        return served
    }
}

/// The bytes read and not yet acked by a set of files (the agent keeps one per group, so that a stalled group
/// holds at most its share): taken before a read, given back at ack.
final class ByteBudget: Sendable {
    private typealias State = ByteBudgetState<CheckedContinuation<Int, Never>>
    private let state: Mutex<State>
    private let nextID = Atomic(0)
    let capacity: Int

    init(capacity: Int) {
        let state = State(capacity: capacity)
        self.capacity = state.capacity
        self.state = Mutex(state)
    }

    /// The one lock site: runs `event` on the state, then resumes the waiters it served (after the lock, as
    /// they run on).
    private func modifyStateAndRunActions<Result: Sendable>(_ event: (inout State) -> (Result, [State.Served])) -> Result {
        let (result, served) = self.state.withLock { event(&$0) }
        for (waiter, bytes) in served { waiter.resume(returning: bytes) }
        return result
    }

    /// Readers waiting for bytes.
    var waiting: Int { self.modifyStateAndRunActions { ($0.waiting, []) } }

    /// Takes `bytes` (at most the capacity) if no one waits and they are there; `nil` otherwise.
    func tryAcquire(_ bytes: Int) -> Int? {
        self.modifyStateAndRunActions { ($0.tryAcquire(bytes), []) }
    }

    /// Takes `bytes` (at most the capacity), waiting for them in turn; returns what was taken, 0 when the budget
    /// was closed or the task cancelled first.
    func acquire(_ bytes: Int) async -> Int {
        let id = self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // Cancelled before it queued: the handler found nothing to send away, so it is sent away here.
                // Both look under the lock, so one of them does.
                self.modifyStateAndRunActions { state in
                    ((), state.acquire(bytes, id: id, waiter: continuation, cancelled: Task.isCancelled))
                }
            }
        } onCancel: {
            self.modifyStateAndRunActions { ((), $0.cancel(id: id)) }
        }
    }

    /// Takes `bytes` without waiting (a read that came out larger than what was taken for it).
    func overdraw(_ bytes: Int) {
        guard bytes > 0 else { return }
        self.modifyStateAndRunActions { state in
            state.overdraw(bytes)
            return ((), [])
        }
    }

    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        self.modifyStateAndRunActions { ((), $0.release(bytes)) }
    }

    /// Sends every waiter away, now and later.
    func close() {
        self.modifyStateAndRunActions { ((), $0.close()) }
    }
}
