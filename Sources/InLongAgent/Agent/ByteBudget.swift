import DequeModule
import Synchronization

/// The rules of ``ByteBudget`` with no lock: bytes taken before a read and given back at its ack, waiters served in
/// order so that no file starves, closing sends every waiter away. `available` plus what is held is always the
/// capacity: a read larger than what was taken for it overdraws, never loses count.
struct ByteBudgetState<Waiter> {
    private struct Queued {
        var id: Int
        var bytes: Int
        var waiter: Waiter
    }

    let capacity: Int
    private(set) var available: Int
    private var waiters = Deque<Queued>()
    private var nextTicket = 0
    /// Tickets cancelled before they queued.
    private var cancelled: Set<Int> = []
    private(set) var closed = false

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        self.available = self.capacity
    }

    var waiting: Int { self.waiters.count }

    enum Acquire {
        /// Taken now: this many bytes (at most the capacity).
        case granted(Int)
        /// Queued until ``release(_:)`` grants it or its ticket is cancelled.
        case queued
        /// Closed, or the ticket was cancelled.
        case refused
    }

    /// A ticket for one ``acquire(_:ticket:waiter:)``, so that a cancellation can come first.
    mutating func makeTicket() -> Int {
        defer { self.nextTicket += 1 }
        return self.nextTicket
    }

    /// Takes `bytes` (at most the capacity) now, or queues `waiter` behind those already waiting.
    mutating func acquire(_ bytes: Int, ticket: Int, waiter: Waiter) -> Acquire {
        let bytes = min(bytes, self.capacity)
        if self.closed || self.cancelled.remove(ticket) != nil { return .refused }
        if self.waiters.isEmpty, self.available >= bytes {
            self.available -= bytes
            return .granted(bytes)
        }
        self.waiters.append(Queued(id: ticket, bytes: bytes, waiter: waiter))
        return .queued
    }

    /// Takes `bytes` only if no one waits and they are there.
    mutating func tryAcquire(_ bytes: Int) -> Int? {
        let bytes = min(bytes, self.capacity)
        guard !self.closed, self.waiters.isEmpty, self.available >= bytes else { return nil }
        self.available -= bytes
        return bytes
    }

    /// The waiter of `ticket`, if it waits (it is removed); a ticket not queued yet is refused when it comes.
    mutating func cancel(ticket: Int) -> Waiter? {
        guard let index = self.waiters.firstIndex(where: { $0.id == ticket }) else {
            self.cancelled.insert(ticket)
            return nil
        }
        return self.waiters.remove(at: index).waiter
    }

    /// A ticket that was served or refused: nothing to remember of it.
    mutating func forget(ticket: Int) {
        self.cancelled.remove(ticket)
    }

    /// Takes `bytes` without waiting (a read that came out larger than what was taken for it).
    mutating func overdraw(_ bytes: Int) {
        self.available -= max(bytes, 0)
    }

    /// Gives `bytes` back; returns the waiters now served, with what each was granted.
    mutating func release(_ bytes: Int) -> [(waiter: Waiter, bytes: Int)] {
        guard bytes > 0 else { return [] }
        self.available += bytes
        var served: [(Waiter, Int)] = []
        while let first = self.waiters.first, first.bytes <= self.available {
            self.available -= first.bytes
            self.waiters.removeFirst()
            served.append((first.waiter, first.bytes))
        }
        return served
    }

    /// Sends every waiter away, now and later.
    mutating func close() -> [Waiter] {
        self.closed = true
        defer { self.waiters.removeAll() }
        return self.waiters.map(\.waiter)
    }
}

/// The bytes read and not yet acked by a set of files (the agent keeps one per group, so that a stalled group
/// holds at most its share): taken before a read, given back at ack.
final class ByteBudget: Sendable {
    private let state: Mutex<ByteBudgetState<CheckedContinuation<Int, Never>>>
    let capacity: Int

    init(capacity: Int) {
        let state = ByteBudgetState<CheckedContinuation<Int, Never>>(capacity: capacity)
        self.capacity = state.capacity
        self.state = Mutex(state)
    }

    var available: Int { self.state.withLock { $0.available } }

    /// Takes `bytes` (at most the capacity) if no one waits and they are there; `nil` otherwise.
    func tryAcquire(_ bytes: Int) -> Int? {
        self.state.withLock { $0.tryAcquire(bytes) }
    }

    /// Takes `bytes` (at most the capacity), waiting for them in turn; returns what was taken, 0 when the budget
    /// was closed or the task cancelled first.
    func acquire(_ bytes: Int) async -> Int {
        let ticket = self.state.withLock { $0.makeTicket() }
        let taken = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let result = self.state.withLock { state -> Int? in
                    switch state.acquire(bytes, ticket: ticket, waiter: continuation) {
                    case .granted(let bytes): bytes
                    case .refused: 0
                    case .queued: nil
                    }
                }
                if let result { continuation.resume(returning: result) }
            }
        } onCancel: {
            self.state.withLock { $0.cancel(ticket: ticket) }?.resume(returning: 0)
        }
        // A cancellation that found the waiter already served is remembered: forget it.
        self.state.withLock { $0.forget(ticket: ticket) }
        return taken
    }

    /// Takes `bytes` without waiting (a read that came out larger than what was taken for it).
    func overdraw(_ bytes: Int) {
        guard bytes > 0 else { return }
        self.state.withLock { $0.overdraw(bytes) }
    }

    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        let served = self.state.withLock { $0.release(bytes) }
        for (waiter, bytes) in served { waiter.resume(returning: bytes) }
    }

    /// Sends every waiter away, now and later.
    func close() {
        let waiters = self.state.withLock { $0.close() }
        for waiter in waiters { waiter.resume(returning: 0) }
    }
}
