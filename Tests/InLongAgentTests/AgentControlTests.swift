import InLongWire
import Testing

@testable import InLongAgent

/// Stop requests: the first stop sets the deadline and resumes every waiter; the driver ends waits at the stop
/// without a timer.
@Suite struct AgentControlTests {
    @Test func theFirstStopSetsTheDeadlineAndResumesEveryWaiter() {
        var state = AgentControlState<Int>()
        let now = ContinuousClock.now
        let queued = [state.wait(id: 1, 1), state.wait(id: 2, 2)]
        #expect(queued == [true, true])
        #expect(state.cancel(id: 2) == 2)
        #expect(state.stop(deadline: now + .seconds(1)) == [1])
        #expect(state.stop(deadline: now + .seconds(9)).isEmpty)
        #expect(state.deadline == now + .seconds(1))
        // After the stop a waiter does not queue: the driver resumes it at once.
        let queuedAfterTheStop = state.wait(id: 3, 3)
        #expect(!queuedAfterTheStop)
        #expect(state.waiting == 0)
    }

    /// Random waits, cancellations and stops: every waiter is resumed by the stop or leaves by its cancellation,
    /// exactly once, and the deadline is the first stop's.
    @Test(arguments: 0..<UInt64(50))
    func everyWaiterEndsOnce(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var state = AgentControlState<Int>()
        let start = ContinuousClock.now
        var waiting: Set<Int> = []
        var ended: Set<Int> = []
        var firstStop: ContinuousClock.Instant?
        for id in 0..<100 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:
                if state.wait(id: id, id) {
                    #expect(firstStop == nil)
                    waiting.insert(id)
                } else {
                    #expect(firstStop != nil)
                    ended.insert(id)
                }
            case 6..<9:
                guard let id = waiting.sorted().randomElement(using: &random) else { continue }
                #expect(state.cancel(id: id) == id)
                waiting.remove(id)
                ended.insert(id)
            default:
                let deadline = start + .milliseconds(Int.random(in: 0...1_000, using: &random))
                let resumed = state.stop(deadline: deadline)
                #expect(Set(resumed) == (firstStop == nil ? waiting : []))
                #expect(ended.isDisjoint(with: resumed))
                ended.formUnion(resumed)
                waiting.subtract(resumed)
                firstStop = firstStop ?? deadline
            }
            #expect(state.deadline == firstStop)
            #expect(state.waiting == waiting.count)
            #expect(waiting.isDisjoint(with: ended))
        }
    }

    @Test func aWaitEndsAtTheStopAndAtOnceAfterIt() async {
        let control = AgentControl()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { await control.waitForStop() } }
            control.stop(deadline: .now + .seconds(30))
            await group.waitForAll()
        }
        #expect(control.isStopping)
        await control.waitForStop()
    }

    @Test func aCancelledWaitEndsWithoutAStop() async {
        let control = AgentControl()
        let wait = Task { await control.waitForStop() }
        wait.cancel()
        await wait.value
        #expect(!control.isStopping)
    }
}
