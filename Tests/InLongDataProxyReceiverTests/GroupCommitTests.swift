import InLongWire
import Testing

@testable import InLongDataProxyReceiver

/// Group commit of the durable JSON Lines sink: one fsync at a time, covering every write before it; a writer is
/// resumed only once a sync covered its bytes (or failed), and none is left waiting while no sync runs.
@Suite struct GroupCommitTests {
    typealias Commit = GroupCommit<Int>

    @Test func writersArrivingDuringASyncShareTheNextOne() {
        var commit = Commit()
        let first = commit.wrote(100)
        #expect(commit.wait(for: first, 1).startSync == 100)
        let second = commit.wrote(50)
        let third = commit.wrote(50)
        // A sync runs: the later writers wait for the next, without starting one.
        #expect(commit.wait(for: second, 2).startSync == nil)
        #expect(commit.wait(for: third, 3).startSync == nil)
        let ended = commit.syncEnded(succeeded: true)
        #expect(ended.resume == [1])
        #expect(ended.startSync == 200)  // one sync for both
        let next = commit.syncEnded(succeeded: true)
        #expect(next.resume == [2, 3])
        #expect(next.startSync == nil)
        #expect(commit.synced == 200)
    }

    @Test func aTicketAlreadyDurableResumesAtOnce() {
        var commit = Commit()
        let first = commit.wrote(10)
        let second = commit.wrote(10)
        _ = commit.wait(for: second, 2)
        #expect(commit.syncEnded(succeeded: true).resume == [2])
        // The first writer came late: its bytes were covered by the sync of the second.
        let late = commit.wait(for: first, 1)
        #expect(late.resume == [1])
        #expect(late.startSync == nil)
    }

    @Test func aFailedSyncReleasesItsWritersWithoutMovingTheDurableMark() {
        var commit = Commit()
        let ticket = commit.wrote(10)
        _ = commit.wait(for: ticket, 1)
        let failed = commit.syncEnded(succeeded: false)
        #expect(failed.resume == [1])
        #expect(commit.synced == 0)
        // A later writer gets a sync of its own, covering the earlier bytes again.
        let later = commit.wrote(5)
        #expect(commit.wait(for: later, 2).startSync == 15)
    }

    /// Seeded schedules of writes, waits and sync ends (some failing), invariants after every step.
    @Test(arguments: 0..<200) func seededSchedulesKeepTheRules(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var commit = Commit()
        var written: [(ticket: UInt64, id: Int)] = []  // written, not yet waiting
        var waiting: [Int: UInt64] = [:]
        var resumed = Set<Int>()
        var syncTarget: UInt64?
        var nextID = 0
        var lastSynced: UInt64 = 0

        func apply(_ actions: Commit.Actions, succeeded: Bool, coveredUpTo target: UInt64?) {
            for id in actions.resume {
                let ticket = waiting.removeValue(forKey: id)
                #expect(ticket != nil, "seed \(seed): writer \(id) resumed without waiting")
                #expect(resumed.insert(id).inserted, "seed \(seed): writer \(id) resumed twice")
                if let ticket {
                    // Resumed only when durable, or by the failed sync that covered it.
                    #expect(ticket <= commit.synced || (!succeeded && ticket <= (target ?? 0)), "seed \(seed): writer \(id) resumed early")
                }
            }
            if let start = actions.startSync {
                #expect(syncTarget == nil, "seed \(seed): two syncs at once")
                #expect(start == commit.written)
                syncTarget = start
            }
        }

        for _ in 0..<300 {
            switch random.next() % 4 {
            case 0:
                written.append((commit.wrote(Int(random.next() % 1000) + 1), nextID))
                nextID += 1
            case 1 where !written.isEmpty:
                let (ticket, id) = written.remove(at: Int(random.next() % UInt64(written.count)))
                waiting[id] = ticket
                apply(commit.wait(for: ticket, id), succeeded: true, coveredUpTo: nil)
            case 2 where syncTarget != nil:
                let target = syncTarget
                syncTarget = nil
                let succeeded = random.next() % 5 != 0
                apply(commit.syncEnded(succeeded: succeeded), succeeded: succeeded, coveredUpTo: target)
            default:
                break
            }
            #expect(commit.synced >= lastSynced && commit.synced <= commit.written)
            lastSynced = commit.synced
            // Never stuck: someone waits only while a sync runs.
            #expect(waiting.isEmpty || syncTarget != nil, "seed \(seed): writers wait with no sync under way")
            #expect(commit.waitingCount == waiting.count)
        }
        // Drain: every writer ends.
        for (ticket, id) in written {
            waiting[id] = ticket
            apply(commit.wait(for: ticket, id), succeeded: true, coveredUpTo: nil)
        }
        while syncTarget != nil {
            let target = syncTarget
            syncTarget = nil
            apply(commit.syncEnded(succeeded: true), succeeded: true, coveredUpTo: target)
        }
        #expect(waiting.isEmpty)
        #expect(resumed.count == nextID)
    }
}
