import Testing

@testable import InLongAgent

@Suite struct OffsetTrackerTests {
    @Test func inOrderAcksCommitEachRange() {
        var tracker = OffsetTracker()
        let first = tracker.read(upTo: 10)
        let second = tracker.read(upTo: 25)
        #expect(tracker.readOffset == 25)
        #expect(tracker.committedOffset == 0)
        #expect(ack(&tracker, first))
        #expect(tracker.committedOffset == 10)
        #expect(ack(&tracker, second))
        #expect(tracker.committedOffset == 25)
        #expect(tracker.outstandingCount == 0)
    }

    @Test func outOfOrderAcksWaitForTheGapToClose() {
        var tracker = OffsetTracker()
        let a = tracker.read(upTo: 5)
        let b = tracker.read(upTo: 9)
        let c = tracker.read(upTo: 20)
        #expect(!ack(&tracker, c))
        #expect(tracker.committedOffset == 0)
        #expect(!ack(&tracker, b))
        #expect(tracker.committedOffset == 0)
        #expect(ack(&tracker, a))
        #expect(tracker.committedOffset == 20)
        #expect(tracker.outstandingCount == 0)
    }

    @Test func aGapHoldsTheCommitBehindIt() {
        var tracker = OffsetTracker(committedOffset: 100)
        let a = tracker.read(upTo: 110)
        let b = tracker.read(upTo: 120)
        let c = tracker.read(upTo: 130)
        tracker.ack(a)
        tracker.ack(c)
        #expect(tracker.committedOffset == 110)
        #expect(tracker.outstandingCount == 2)
        tracker.ack(b)
        #expect(tracker.committedOffset == 130)
    }

    @Test func duplicateAcksChangeNothing() {
        var tracker = OffsetTracker()
        let a = tracker.read(upTo: 5)
        let b = tracker.read(upTo: 8)
        #expect(ack(&tracker, a))
        #expect(!ack(&tracker, a))
        #expect(tracker.committedOffset == 5)
        #expect(ack(&tracker, b))
        #expect(!ack(&tracker, b))
        #expect(tracker.committedOffset == 8)
    }

    @Test func restartForgetsOutstandingRangesAndIgnoresTheirLateAcks() {
        var tracker = OffsetTracker()
        let before = tracker.read(upTo: 50)
        tracker.restart(at: 0)
        #expect(tracker.committedOffset == 0)
        #expect(tracker.readOffset == 0)
        let after = tracker.read(upTo: 7)
        #expect(!ack(&tracker, before))
        #expect(tracker.committedOffset == 0)
        #expect(ack(&tracker, after))
        #expect(tracker.committedOffset == 7)
    }

    @Test func resumingFromACheckpointStartsThere() {
        var tracker = OffsetTracker(committedOffset: 4096)
        #expect(tracker.readOffset == 4096)
        let next = tracker.read(upTo: 4100)
        tracker.ack(next)
        #expect(tracker.committedOffset == 4100)
    }

    /// Every permutation of acks over a few ranges ends committed at the last range's end, and never commits past
    /// an unacked range on the way.
    @Test func everyAckOrderCommitsOnlyAckedPrefixes() {
        let ends: [Int64] = [3, 7, 12, 20, 21]
        for order in permutations(Array(0..<ends.count)) {
            var tracker = OffsetTracker()
            let tickets = ends.map { tracker.read(upTo: $0) }
            var acked = Set<Int>()
            for index in order {
                tracker.ack(tickets[index])
                acked.insert(index)
                let prefix = (0..<ends.count).prefix { acked.contains($0) }.count
                #expect(tracker.committedOffset == (prefix == 0 ? 0 : ends[prefix - 1]))
            }
            #expect(tracker.committedOffset == 21)
        }
    }
}

/// Acks and says whether the commit moved, in a form `#expect` can take.
private func ack(_ tracker: inout OffsetTracker, _ ticket: OffsetTracker.Ticket) -> Bool {
    tracker.ack(ticket)
}

private func permutations(_ items: [Int]) -> [[Int]] {
    guard items.count > 1 else { return [items] }
    return items.indices.flatMap { index -> [[Int]] in
        var rest = items
        let item = rest.remove(at: index)
        return permutations(rest).map { [item] + $0 }
    }
}
