import InLongWire
import Testing

@testable import InLongDataProxy

/// Which jobs have not ended (``DeliveryStateMachine/LiveJobs``): ids in acceptance order, and the oldest not
/// ended, whatever order jobs end in.
@Suite struct LiveJobsTests {
    typealias LiveJobs = DeliveryStateMachine<Int>.LiveJobs

    @Test func idsAreGivenInOrderFromZero() {
        var live = LiveJobs()
        #expect(live.oldest == nil)
        #expect(live.oldestLive == 0)
        #expect(live.add() == 0)
        #expect(live.add() == 1)
        #expect(live.add() == 2)
        #expect(live.nextID == 3)
        #expect(live.oldest == 0)
        #expect(live.count == 3)
    }

    @Test func theOldestMovesOnlyWhenItEndsAndSkipsThoseThatEndedBefore() {
        var live = LiveJobs()
        for _ in 0..<5 { _ = live.add() }
        live.ended(2)
        live.ended(1)
        #expect(live.oldest == 0)
        #expect(live.count == 3)
        live.ended(0)
        #expect(live.oldest == 3)
        #expect(live.count == 2)
        live.ended(4)
        #expect(live.oldest == 3)
        live.ended(3)
        #expect(live.oldest == nil)
        #expect(live.oldestLive == 5)
        #expect(live.count == 0)
        #expect(live.add() == 5)
        #expect(live.oldestLive == 5)
    }

    /// Random adds and ends against the set of ids not ended: after every step the oldest is its smallest (or
    /// the next id when it is empty), and the count is its size.
    @Test(arguments: [1, 2, 3] as [UInt64]) func randomSchedulesKeepTheInvariants(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var live = LiveJobs()
        var model: Set<Int> = []
        var nextID = 0
        var endedOutOfOrder = 0
        for _ in 0..<3_000 {
            if model.isEmpty || Int.random(in: 0..<5, using: &random) < 2 {
                let id = live.add()
                #expect(id == nextID, "seed \(seed)")
                model.insert(id)
                nextID += 1
            } else {
                let id = model.randomElement(using: &random)!
                if id != model.min() { endedOutOfOrder += 1 }
                live.ended(id)
                model.remove(id)
            }
            #expect(live.nextID == nextID)
            #expect(live.oldest == model.min())
            #expect(live.oldestLive == (model.min() ?? nextID))
            #expect(live.count == model.count)
        }
        #expect(endedOutOfOrder > 0)
    }
}
