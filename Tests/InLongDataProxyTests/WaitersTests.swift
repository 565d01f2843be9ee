import InLongWire
import Testing

@testable import InLongDataProxy

/// Parked senders and flush callers (``DeliveryStateMachine/Waiters``): ids from one counter, each waiter handed
/// back once, by the kind it was parked as.
@Suite struct WaitersTests {
    typealias Waiters = DeliveryStateMachine<Int>.Waiters

    @Test func idsComeFromOneCounterAcrossKinds() {
        var waiters = Waiters()
        #expect(waiters.parkForRoom(10) == 0)
        #expect(waiters.parkForBacklog(11) == 1)
        #expect(waiters.parkFlush(12, target: 3) == 2)
        #expect(waiters.parkForRoom(13) == 3)
        #expect(waiters.nextID == 4)
        #expect(waiters.senderCount == 3)
        #expect(waiters.flushCount == 1)
    }

    @Test func aCancelledWaiterIsHandedBackOnceAndOnlyAsItsKind() {
        var waiters = Waiters()
        let room = waiters.parkForRoom(10)
        let backlog = waiters.parkForBacklog(11)
        let flush = waiters.parkFlush(12, target: 1)
        #expect(waiters.cancelSender(flush) == nil)
        #expect(waiters.cancelFlush(room) == nil)
        #expect(waiters.cancelFlush(backlog) == nil)
        #expect(waiters.cancelSender(room) == 10)
        #expect(waiters.cancelSender(room) == nil)
        #expect(waiters.cancelSender(backlog) == 11)
        #expect(waiters.cancelFlush(flush) == 12)
        #expect(waiters.cancelFlush(flush) == nil)
        #expect(waiters.senderCount == 0 && waiters.flushCount == 0)
    }

    @Test func roomAndBacklogWaitersResumeApart() {
        var waiters = Waiters()
        _ = waiters.parkForRoom(1)
        _ = waiters.parkForRoom(2)
        _ = waiters.parkForBacklog(3)
        var resumed: [Int] = []
        waiters.resumeRoomWaiters(into: &resumed)
        #expect(resumed.sorted() == [1, 2])
        #expect(!waiters.hasRoomWaiters)
        #expect(waiters.hasBacklogWaiters)
        waiters.resumeRoomWaiters(into: &resumed)
        #expect(resumed.count == 2)
        waiters.resumeBacklogWaiters(into: &resumed)
        #expect(resumed.sorted() == [1, 2, 3])
        #expect(waiters.senderCount == 0)
    }

    @Test func resumingAllSendersHandsThoseWaitingForRoomFirst() {
        var waiters = Waiters()
        _ = waiters.parkForBacklog(3)
        _ = waiters.parkForRoom(1)
        _ = waiters.parkForBacklog(4)
        _ = waiters.parkFlush(9, target: 0)
        var resumed: [Int] = [0]
        waiters.resumeAllSenders(into: &resumed)
        #expect(resumed.first == 0)
        #expect(resumed[1] == 1)
        #expect(Set(resumed[2...]) == [3, 4])
        #expect(waiters.senderCount == 0)
        #expect(waiters.flushCount == 1)
    }

    @Test func flushesResumeOnceTheOldestLiveJobReachesTheirTarget() {
        var waiters = Waiters()
        _ = waiters.parkFlush(1, target: 2)
        _ = waiters.parkFlush(2, target: 5)
        _ = waiters.parkFlush(3, target: 2)
        var resumed: [(waiter: Int, allEnded: Bool)] = []
        waiters.resumeFlushes(reachedBy: 1, into: &resumed)
        #expect(resumed.isEmpty)
        waiters.resumeFlushes(reachedBy: 2, into: &resumed)
        #expect(resumed.map(\.waiter).sorted() == [1, 3])
        #expect(resumed.allSatisfy { $0.allEnded })
        #expect(waiters.flushCount == 1)
        waiters.resumeAllFlushes(into: &resumed)
        #expect(resumed.map(\.waiter).sorted() == [1, 2, 3])
        #expect(!waiters.hasFlushes)
    }

    /// Random parks, cancels and resumes against a model: after every step the counts match, every waiter handed
    /// back was parked and is handed back once, ids are never reused, a flush resumes only at its target, and the
    /// senders noted as parked during a fill are room waiters still parked, with the bytes they parked with.
    @Test(arguments: [1, 2, 3] as [UInt64]) func randomSchedulesKeepTheInvariants(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var waiters = Waiters()
        enum Kind {
            case room, backlog, flush(target: Int)

            var isFlush: Bool {
                if case .flush = self { return true }
                return false
            }
        }
        var parked: [Int: (kind: Kind, waiter: Int)] = [:]
        var handedBack: Set<Int> = []
        var lastID = -1
        var nextWaiter = 100
        /// Room waiters parked during a fill, with their bytes.
        var duringFill: [Int: Int] = [:]
        func handBack(_ waiter: Int) {
            #expect(!handedBack.contains(waiter), "waiter \(waiter) handed back twice, seed \(seed)")
            handedBack.insert(waiter)
        }
        for _ in 0..<2_000 {
            let waiter = nextWaiter
            let action = Int.random(in: 0..<11, using: &random)
            switch action {
            case 0, 1:
                let bytes = Bool.random(using: &random) ? Int.random(in: 1...100, using: &random) : nil
                let id = waiters.parkForRoom(waiter, duringFillFor: bytes)
                #expect(id > lastID)
                lastID = id
                parked[id] = (.room, waiter)
                duringFill[id] = bytes
                nextWaiter += 1
            case 9:
                // A fill's end resumes one that parked during it (or one resumed otherwise meanwhile: nothing).
                guard let id = waiters.roomDuringFill.keys.randomElement(using: &random) else { break }
                var resumed: [Int] = []
                waiters.resumeRoomWaiter(id, into: &resumed)
                #expect(resumed == [parked[id]!.waiter])
                parked[id] = nil
                duringFill[id] = nil
                resumed.forEach(handBack)
            case 10:
                // No fill is left: it waits for an ack like any other.
                guard let id = waiters.roomDuringFill.keys.randomElement(using: &random) else { break }
                waiters.forgetParkedDuringFill(id)
                duringFill[id] = nil
            case 2:
                let id = waiters.parkForBacklog(waiter)
                #expect(id > lastID)
                lastID = id
                parked[id] = (.backlog, waiter)
                nextWaiter += 1
            case 3:
                let target = Int.random(in: 0..<50, using: &random)
                let id = waiters.parkFlush(waiter, target: target)
                #expect(id > lastID)
                lastID = id
                parked[id] = (.flush(target: target), waiter)
                nextWaiter += 1
            case 4, 5:
                // Any id, parked or not, of either kind: a sender's cancellation takes only senders, a flush's only
                // flushes.
                let flush = action == 5
                let id = Int.random(in: 0...max(lastID, 0), using: &random)
                let expected = parked[id].flatMap { $0.kind.isFlush == flush ? $0.waiter : nil }
                let got = flush ? waiters.cancelFlush(id) : waiters.cancelSender(id)
                #expect(got == expected)
                if let got {
                    handBack(got)
                    parked[id] = nil
                }
            case 6:
                var resumed: [Int] = []
                if Bool.random(using: &random) {
                    waiters.resumeRoomWaiters(into: &resumed)
                    let expected = parked.filter { if case .room = $0.value.kind { return true } else { return false } }
                    #expect(Set(resumed) == Set(expected.values.map(\.waiter)))
                    for id in expected.keys { parked[id] = nil }
                } else {
                    waiters.resumeBacklogWaiters(into: &resumed)
                    let expected = parked.filter { if case .backlog = $0.value.kind { return true } else { return false } }
                    #expect(Set(resumed) == Set(expected.values.map(\.waiter)))
                    for id in expected.keys { parked[id] = nil }
                }
                #expect(resumed.count == Set(resumed).count)
                resumed.forEach(handBack)
            case 7:
                let oldestLive = Int.random(in: 0..<50, using: &random)
                var resumed: [(waiter: Int, allEnded: Bool)] = []
                waiters.resumeFlushes(reachedBy: oldestLive, into: &resumed)
                let due = parked.filter { if case .flush(let target) = $0.value.kind { return target <= oldestLive } else { return false } }
                #expect(Set(resumed.map(\.waiter)) == Set(due.values.map(\.waiter)))
                #expect(resumed.allSatisfy { $0.allEnded })
                for id in due.keys { parked[id] = nil }
                resumed.map(\.waiter).forEach(handBack)
            default:
                var resumed: [Int] = []
                waiters.resumeAllSenders(into: &resumed)
                let senders = parked.filter { !$0.value.kind.isFlush }
                #expect(Set(resumed) == Set(senders.values.map(\.waiter)))
                for id in senders.keys { parked[id] = nil }
                resumed.forEach(handBack)
            }
            for id in duringFill.keys where parked[id] == nil { duringFill[id] = nil }
            #expect(waiters.roomDuringFill == duringFill, "seed \(seed)")
            let flushes = parked.values.filter(\.kind.isFlush).count
            #expect(waiters.flushCount == flushes)
            #expect(waiters.senderCount == parked.count - flushes)
            #expect(waiters.nextID == lastID + 1)
            #expect(waiters.hasFlushes == (flushes > 0))
        }
        #expect(!handedBack.isEmpty)
    }
}
