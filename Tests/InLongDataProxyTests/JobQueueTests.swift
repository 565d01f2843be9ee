import DequeModule
import InLongTransport
import InLongWire
import Testing

@testable import InLongDataProxy

/// The jobs the dispatcher works through (``DeliveryStateMachine/JobQueue``): ready ones in order, pending ones by
/// id, never both.
@Suite struct JobQueueTests {
    typealias JobQueue = DeliveryStateMachine<Int>.JobQueue

    func job(_ id: Int, deadline: Int = 1_000) -> DeliveryJob { DeliveryJobFixtures.job(id, deadline: deadline) }
    func at(_ milliseconds: Int) -> ContinuousClock.Instant { DeliveryJobFixtures.at(milliseconds) }

    @Test func readyJobsGoOutOldestFirstAndThosePutBackFirst() {
        var queue = JobQueue()
        for id in 0..<3 { queue.append(self.job(id)) }
        #expect(queue.popReady()?.id == 0)
        queue.prepend(self.job(0))
        queue.prepend(contentsOf: [self.job(7), self.job(8)] as Deque)
        #expect(queue.ready.map(\.id) == [7, 8, 0, 1, 2])
        #expect(queue.readyCount == 5)
        var popped: [Int] = []
        while let job = queue.popReady() { popped.append(job.id) }
        #expect(popped == [7, 8, 0, 1, 2])
        #expect(queue.isEmpty)
    }

    @Test func pendingJobsAreFiledByIdAndADueRetryGoesBehindTheReadyOnes() throws {
        var queue = JobQueue()
        queue.append(self.job(0))
        queue.append(self.job(1))
        let popped = queue.popReady()
        let taken = try #require(popped)
        queue.hold(taken)
        #expect(queue.pending(0)?.id == 0)
        #expect(queue.pendingCount == 1)
        #expect(queue.count == 2)
        let requeued = queue.requeue(0)
        let again = queue.requeue(0)
        #expect(requeued)
        #expect(!again)
        #expect(queue.pending(0) == nil)
        #expect(queue.ready.map(\.id) == [1, 0])
        #expect(queue.takePending(1) == nil)
    }

    @Test func aJobEndedWhileHandedOverKeepsWhatEndedIt() {
        var queue = JobQueue()
        queue.hold(self.job(3))
        let error = DataProxyError(.deliveryTimeout, "late", isRetriable: true)
        queue.endWhileHandingOver(3, with: error)
        queue.endWhileHandingOver(4, with: error)
        #expect(queue.pending(3)?.endedWhileHandingOver?.code == .deliveryTimeout)
        #expect(queue.pending(4) == nil)
        #expect(queue.pendingCount == 1)
    }

    @Test func pendingJobsExpireAtTheirDeadlineButThoseWaitingToRetry() {
        var queue = JobQueue()
        queue.hold(self.job(0, deadline: 100))
        queue.hold(self.job(1, deadline: 100))
        queue.hold(self.job(2, deadline: 200))
        #expect(queue.pendingExpired(at: self.at(99), except: []).isEmpty)
        #expect(Set(queue.pendingExpired(at: self.at(100), except: []).keys) == [0, 1])
        #expect(Set(queue.pendingExpired(at: self.at(100), except: [1]).keys) == [0])
        #expect(queue.pendingExpired(at: self.at(300), except: [0]).values.allSatisfy { $0.id != 0 })
        // Only a view: nothing was taken out.
        #expect(queue.pendingCount == 3)
    }

    @Test func removingAllKeepsOnlyWhatIsGiven() {
        var queue = JobQueue()
        queue.append(self.job(0))
        queue.hold(self.job(1))
        queue.hold(self.job(2))
        queue.removeAll(keepingPending: [2: self.job(2)])
        #expect(queue.readyCount == 0)
        #expect(queue.pending.keys.sorted() == [2])
        #expect(queue.count == 1)
    }

    @Test func theReadyJobsCanBeTakenOutAndPutBack() {
        var queue = JobQueue()
        for id in 0..<4 { queue.append(self.job(id)) }
        var kept = Deque<DeliveryJob>()
        while let job = queue.popReady() {
            if job.id % 2 == 1 { kept.append(job) }
        }
        #expect(queue.readyCount == 0)
        queue.restoreReady(kept)
        #expect(queue.ready.map(\.id) == [1, 3])
    }

    /// Random moves between ready and pending against a model: after every step the ready ids are the model's in
    /// order, the pending ones are filed under their ids, and no job is both or twice.
    @Test(arguments: [1, 2, 3] as [UInt64]) func randomSchedulesKeepTheInvariants(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var queue = JobQueue()
        var ready: [Int] = []
        var pending: Set<Int> = []
        /// Jobs out of both, as the dispatcher or a sub-state holds them between events.
        var outside: [DeliveryJob] = []
        var nextID = 0
        for _ in 0..<3_000 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0, 1:
                queue.append(self.job(nextID))
                ready.append(nextID)
                nextID += 1
            case 2, 3:
                let job = queue.popReady()
                #expect(job?.id == ready.first, "seed \(seed)")
                if let job {
                    ready.removeFirst()
                    // Taken by the dispatcher: pending, or out (ended, parked for a route).
                    if Bool.random(using: &random) {
                        queue.hold(job)
                        pending.insert(job.id)
                    } else {
                        outside.append(job)
                    }
                }
            case 4:
                guard !outside.isEmpty else { break }
                let job = outside.removeLast()
                queue.prepend(job)
                ready.insert(job.id, at: 0)
            case 5:
                guard !outside.isEmpty else { break }
                let count = Int.random(in: 1...outside.count, using: &random)
                let jobs = Deque(outside.suffix(count))
                outside.removeLast(count)
                queue.prepend(contentsOf: jobs)
                ready.insert(contentsOf: jobs.map(\.id), at: 0)
            case 6:
                let id = Int.random(in: 0...nextID, using: &random)
                let job = queue.takePending(id)
                #expect((job != nil) == pending.contains(id))
                #expect(job.map { $0.id == id } ?? true)
                if let job {
                    pending.remove(id)
                    outside.append(job)
                }
            case 7:
                let id = Int.random(in: 0...nextID, using: &random)
                #expect(queue.requeue(id) == pending.contains(id))
                if pending.remove(id) != nil { ready.append(id) }
            case 8:
                guard let id = pending.randomElement(using: &random) else { break }
                queue.endWhileHandingOver(id, with: DataProxyError(.shutDown, "closed", isRetriable: true))
                #expect(queue.pending(id)?.endedWhileHandingOver != nil)
            default:
                guard Int.random(in: 0..<20, using: &random) == 0 else { break }
                let keep = pending.filter { _ in Bool.random(using: &random) }
                var kept: [Int: DeliveryJob] = [:]
                for id in keep { kept[id] = queue.pending(id) }
                queue.removeAll(keepingPending: kept)
                ready.removeAll()
                pending = keep
            }
            #expect(queue.ready.map(\.id) == ready)
            #expect(Set(queue.pending.keys) == pending)
            #expect(queue.pending.allSatisfy { $0.key == $0.value.id })
            #expect(Set(ready).isDisjoint(with: pending))
            #expect(Set(ready).count == ready.count)
            #expect(queue.count == ready.count + pending.count)
            #expect(queue.isEmpty == (ready.isEmpty && pending.isEmpty))
        }
        #expect(nextID > 0)
    }
}
