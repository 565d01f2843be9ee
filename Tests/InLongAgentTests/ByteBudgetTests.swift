import InLongWire
import Testing

@testable import InLongAgent

/// The read-ahead budget: its rules alone, and its driver with every reader waiting at once (the budget is where
/// the agent once deadlocked). Seeded schedules of instances sharing one budget run in `InstanceSimulationTests`.
@Suite struct ByteBudgetTests {
    typealias State = ByteBudgetState<Int>

    func served(_ served: [State.Served]) -> [[Int]] { served.map { [$0.waiter, $0.bytes] } }

    @Test func waitersAreServedInOrderAsBytesComeBack() {
        var state = State(capacity: 100)
        #expect(self.served(state.acquire(80, id: 1, waiter: 1)) == [[1, 80]])
        #expect(state.acquire(50, id: 2, waiter: 2).isEmpty)
        // Behind a waiter, even bytes that are there are not taken: no file starves.
        #expect(state.acquire(10, id: 3, waiter: 3).isEmpty)
        #expect(state.tryAcquire(10) == nil)
        #expect(self.served(state.release(80)) == [[2, 50], [3, 10]])
        #expect(state.available == 40)
    }

    @Test func aWaiterLeavingTheHeadLetsThoseBehindItThrough() {
        var state = State(capacity: 100)
        _ = state.acquire(60, id: 1, waiter: 1)
        #expect(state.acquire(70, id: 2, waiter: 2).isEmpty)
        #expect(state.acquire(30, id: 3, waiter: 3).isEmpty)
        // 40 are there: the 30 behind the leaving 70 are served at once, not at the next release.
        #expect(self.served(state.cancel(id: 2)) == [[2, 0], [3, 30]])
        #expect(state.cancel(id: 2).isEmpty)
        #expect(state.available == 10)
    }

    @Test func closingSendsEveryWaiterAwayNowAndLater() {
        var state = State(capacity: 10)
        _ = state.acquire(10, id: 1, waiter: 1)
        #expect(state.acquire(5, id: 2, waiter: 2).isEmpty)
        #expect(self.served(state.close()) == [[2, 0]])
        #expect(self.served(state.acquire(1, id: 3, waiter: 3)) == [[3, 0]])
        #expect(self.served(state.acquire(1, id: 4, waiter: 4, cancelled: true)) == [[4, 0]])
        #expect(state.tryAcquire(1) == nil)
    }

    @Test func aReadLargerThanTheCapacityTakesTheCapacity() {
        var state = State(capacity: 10)
        #expect(self.served(state.acquire(25, id: 1, waiter: 1)) == [[1, 10]])
        state.overdraw(15)
        #expect(state.available == -15)
        #expect(state.release(20).isEmpty)
        #expect(state.available == 5)
    }

    /// Every reader waits at once on a budget that is used up, some are cancelled, the rest get their bytes as
    /// the holder gives them back in pieces, then hand them back: all of them end, and the budget is whole.
    @Test(arguments: 0..<UInt64(20))
    func everyReaderWaitingAtOnceEnds(seed: UInt64) async {
        var random = SplitMix64(seed: seed)
        let capacity = Int.random(in: 1...4_000, using: &random)
        let budget = ByteBudget(capacity: capacity)
        let readers = Int.random(in: 2...32, using: &random)
        let sizes = (0..<readers).map { _ in Int.random(in: 1...capacity * 2, using: &random) }
        let cancelled = Set((0..<readers).filter { _ in Int.random(in: 0..<4, using: &random) == 0 })
        let pieces = Int.random(in: 1...8, using: &random)
        #expect(budget.tryAcquire(capacity) == capacity)
        let taken = await withTaskGroup(of: Int.self) { group in
            var tasks: [Int: Task<Int, Never>] = [:]
            for reader in 0..<readers {
                let task = Task {
                    let bytes = await budget.acquire(sizes[reader])
                    budget.release(bytes)
                    return bytes
                }
                tasks[reader] = task
                group.addTask { await task.value }
            }
            // Every reader queued (none can be served: nothing is left) before anything comes back.
            while budget.waiting < readers { await Task.yield() }
            for reader in cancelled.sorted() { tasks[reader]?.cancel() }
            var left = capacity
            for piece in 0..<pieces {
                let bytes = piece == pieces - 1 ? left : left / 2
                budget.release(bytes)
                left -= bytes
            }
            return await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(taken.count == readers)
        // Everyone not cancelled got its bytes (at most the capacity); a cancelled one may have been served first.
        #expect(taken.filter { $0 > 0 }.count >= readers - cancelled.count)
        #expect(budget.waiting == 0)
        #expect(budget.tryAcquire(capacity) == capacity)
    }
}
