import InLongWire
import Testing

@testable import InLongDataProxy

/// Which jobs wait out a retry backoff (``DeliveryStateMachine/RetrySchedule``): due ones come out in the order
/// they were scheduled, the others stay in it.
@Suite struct RetryScheduleTests {
    typealias Schedule = DeliveryStateMachine<Int>.RetrySchedule

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { DeliveryJobFixtures.at(milliseconds) }

    @Test func dueRetriesComeOutInTheOrderScheduledAndTheOthersStay() {
        var schedule = Schedule()
        schedule.schedule(1, at: self.at(300))
        schedule.schedule(2, at: self.at(100))
        schedule.schedule(3, at: self.at(400))
        schedule.schedule(4, at: self.at(200))
        var due: [Int] = []
        schedule.removeDue(at: self.at(300), &due) { due, id in due.append(id) }
        // Scheduled order, not due order: 1 was scheduled before 2.
        #expect(due == [1, 2, 4])
        #expect(schedule.entries.map(\.id) == [3])
        #expect(schedule.count == 1)
    }

    @Test func aRetryIsDueAtItsInstantNotBefore() {
        var schedule = Schedule()
        schedule.schedule(7, at: self.at(100))
        var due: [Int] = []
        schedule.removeDue(at: self.at(99), &due) { due, id in due.append(id) }
        #expect(due.isEmpty)
        #expect(schedule.contains(7))
        schedule.removeDue(at: self.at(100), &due) { due, id in due.append(id) }
        #expect(due == [7])
        #expect(!schedule.contains(7))
        #expect(schedule.isEmpty)
    }

    @Test func idsNameTheJobsWaitingAndRemoveAllDropsThem() {
        var schedule = Schedule()
        #expect(schedule.ids.isEmpty)
        schedule.schedule(3, at: self.at(10))
        schedule.schedule(5, at: self.at(20))
        #expect(schedule.ids == [3, 5])
        #expect(schedule.contains(5) && !schedule.contains(4))
        schedule.removeAll()
        #expect(schedule.isEmpty)
        #expect(schedule.ids.isEmpty)
        var due: [Int] = []
        schedule.removeDue(at: self.at(1_000), &due) { due, id in due.append(id) }
        #expect(due.isEmpty)
    }

    /// Random schedules and removals against a list kept in order: after every step the entries are the model's,
    /// and a removal visits exactly the due ones, in scheduled order.
    @Test(arguments: [1, 2, 3] as [UInt64]) func randomSchedulesKeepTheInvariants(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var schedule = Schedule()
        var model: [(due: Int, id: Int)] = []
        var now = 0
        var nextID = 0
        for _ in 0..<2_000 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5:
                let due = now + Int.random(in: 0...300, using: &random)
                schedule.schedule(nextID, at: self.at(due))
                model.append((due, nextID))
                nextID += 1
            case 5..<9:
                now += Int.random(in: 0...120, using: &random)
                var visited: [Int] = []
                schedule.removeDue(at: self.at(now), &visited) { visited, id in visited.append(id) }
                #expect(visited == model.filter { $0.due <= now }.map(\.id), "seed \(seed)")
                model.removeAll { $0.due <= now }
                #expect(schedule.entries.allSatisfy { $0.due > self.at(now) })
            default:
                if Int.random(in: 0..<10, using: &random) == 0 {
                    schedule.removeAll()
                    model.removeAll()
                }
            }
            #expect(schedule.entries.map(\.id) == model.map(\.id))
            #expect(schedule.entries.map(\.due) == model.map { self.at($0.due) })
            #expect(schedule.count == model.count)
            #expect(schedule.ids == Set(model.map(\.id)))
        }
        #expect(nextID > 0)
    }
}
