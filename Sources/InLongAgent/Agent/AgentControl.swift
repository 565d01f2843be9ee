import Synchronization

/// The rules of ``AgentControl`` with no lock: the first stop sets the deadline (a later one does not move it),
/// and every waiter is resumed by the stop, or at once when it comes after it.
struct AgentControlState<Waiter> {
    /// When a graceful stop was asked for and what was read gets until when to be acked.
    private(set) var deadline: ContinuousClock.Instant?
    private var waiters: [Int: Waiter] = [:]

    var isStopping: Bool { self.deadline != nil }
    var waiting: Int { self.waiters.count }

    /// Returns the waiters to resume: all of them at the first stop, none after.
    mutating func stop(deadline: ContinuousClock.Instant) -> [Waiter] {
        guard self.deadline == nil else { return [] }
        self.deadline = deadline
        defer { self.waiters.removeAll() }
        return Array(self.waiters.values)
    }

    /// Queues `waiter` until the stop; `false` when it is stopping already (resume it at once).
    mutating func wait(id: Int, _ waiter: Waiter) -> Bool {
        guard self.deadline == nil else { return false }
        self.waiters[id] = waiter
        return true
    }

    /// The waiter of `id`, if it still waits (it is removed).
    mutating func cancel(id: Int) -> Waiter? {
        self.waiters.removeValue(forKey: id)
    }
}

/// Stop requests, shared by the agent and its instances: a stop resumes whoever waits for one, so that nobody
/// looks at it on a timer.
final class AgentControl: Sendable {
    private typealias Waiter = AsyncStream<Void>.Continuation

    private let state = Mutex(AgentControlState<Waiter>())
    private let nextID = Atomic(0)

    /// The one lock site: runs `event` on the state, then ends the streams it hands back (after the lock, as their
    /// consumers run on).
    private func modifyStateAndRunActions<Result: Sendable>(_ event: (inout AgentControlState<Waiter>) -> (Result, [Waiter])) -> Result {
        let (result, resume) = self.state.withLock { event(&$0) }
        for waiter in resume {
            waiter.yield()
            waiter.finish()
        }
        return result
    }

    /// When a graceful stop was asked for and what was read gets until when to be acked.
    func stop(deadline: ContinuousClock.Instant) {
        self.modifyStateAndRunActions { ((), $0.stop(deadline: deadline)) }
    }

    var isStopping: Bool { self.deadline != nil }
    var deadline: ContinuousClock.Instant? { self.modifyStateAndRunActions { ($0.deadline, []) } }

    /// One element at the stop, then the end (at once when stopping already); ends early when the consumer is
    /// cancelled.
    func stopRequests() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        let id = self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        // A consumer cancelled, or a stream dropped, leaves the queue. Ended by the stop, it already left.
        continuation.onTermination = { _ in
            _ = self.modifyStateAndRunActions { ($0.cancel(id: id), []) }
        }
        let waiting = self.modifyStateAndRunActions { ($0.wait(id: id, continuation), []) }
        if !waiting {
            continuation.yield()
            continuation.finish()
        }
        return stream
    }

    /// Returns at the stop (at once when stopping already), or when the task is cancelled.
    func waitForStop() async {
        for await _ in self.stopRequests() { return }
    }
}
