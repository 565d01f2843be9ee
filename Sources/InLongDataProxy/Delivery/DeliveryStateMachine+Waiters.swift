extension DeliveryStateMachine {
    /// The suspended callers: senders parked until the quota has room or the dispatcher caught up, and `flush`
    /// callers parked until every job before their target ended.
    ///
    /// Invariants: every id is given once, from one counter shared by every kind, so an id names at most one
    /// parked waiter; a waiter is handed back (resumed or cancelled) at most once, and only by the kind it was
    /// parked as (a sender's id never takes out a flush, nor the reverse).
    struct Waiters {
        private var room: [Int: Waiter] = [:]
        /// Senders waiting for room that parked while a fill held quota reserved, with the bytes their record needs:
        /// that fill's end may give them the room (an ack resumes them all anyway).
        private(set) var roomDuringFill: [Int: Int] = [:]
        private var backlog: [Int: Waiter] = [:]
        private var flushes: [Int: (target: Int, waiter: Waiter)] = [:]
        /// Flushes waiting for spilled records to be read back: until every spill entry below the seq left.
        private var spillFlushes: [Int: (seq: Int, waiter: Waiter)] = [:]
        /// The id the next parked waiter takes.
        private(set) var nextID = 0

        var hasRoomWaiters: Bool { !self.room.isEmpty }
        var hasBacklogWaiters: Bool { !self.backlog.isEmpty }
        var hasFlushes: Bool { !self.flushes.isEmpty || !self.spillFlushes.isEmpty }
        /// Senders parked, of both kinds.
        var senderCount: Int { self.room.count + self.backlog.count }
        var flushCount: Int { self.flushes.count + self.spillFlushes.count }

        // MARK: Parking

        /// Parks a sender until the quota has room; its id. `duringFillFor`: the bytes its record needs, when a
        /// fill's reservation holds quota (the fill's end may be that room).
        mutating func parkForRoom(_ waiter: Waiter, duringFillFor bytes: Int? = nil) -> Int {
            let id = self.takeID()
            self.room[id] = waiter
            if let bytes { self.roomDuringFill[id] = bytes }
            return id
        }

        /// Hands the sender of `id`, parked for room during a fill, to `resumed` (if still parked).
        mutating func resumeRoomWaiter(_ id: Int, into resumed: inout [Waiter]) {
            self.roomDuringFill[id] = nil
            if let waiter = self.room.removeValue(forKey: id) { resumed.append(waiter) }
        }

        /// The sender of `id` no longer waits on a fill (no fill holds quota now: only an ack gives it room).
        mutating func forgetParkedDuringFill(_ id: Int) {
            self.roomDuringFill[id] = nil
        }

        /// Parks a sender until the dispatcher caught up; its id.
        mutating func parkForBacklog(_ waiter: Waiter) -> Int {
            let id = self.takeID()
            self.backlog[id] = waiter
            return id
        }

        /// Parks a flush caller until every job with an id below `target` ended; its id.
        mutating func parkFlush(_ waiter: Waiter, target: Int) -> Int {
            let id = self.takeID()
            self.flushes[id] = (target, waiter)
            return id
        }

        /// Parks a flush caller until every spill entry below `seq` left the spill queue; its id.
        mutating func parkFlush(_ waiter: Waiter, afterSpill seq: Int) -> Int {
            let id = self.takeID()
            self.spillFlushes[id] = (seq, waiter)
            return id
        }

        /// Parks again, under the id it had, a flush that waited for the spill: now for the jobs below `target`.
        mutating func parkFlush(_ waiter: Waiter, target: Int, id: Int) {
            self.flushes[id] = (target, waiter)
        }

        /// Takes out the flushes waiting for spill entries below `drainedBefore` only.
        mutating func takeSpillFlushes(reachedBy drainedBefore: Int) -> [(id: Int, waiter: Waiter)] {
            guard !self.spillFlushes.isEmpty else { return [] }
            var reached: [(id: Int, waiter: Waiter)] = []
            for (id, flush) in self.spillFlushes where flush.seq <= drainedBefore {
                reached.append((id, flush.waiter))
                self.spillFlushes[id] = nil
            }
            return reached.sorted { $0.id < $1.id }
        }

        private mutating func takeID() -> Int {
            defer { self.nextID += 1 }
            return self.nextID
        }

        // MARK: Cancelling

        /// Takes out a parked sender (its task was cancelled): its waiter, unless it was handed back already.
        mutating func cancelSender(_ id: Int) -> Waiter? {
            self.roomDuringFill[id] = nil
            return self.room.removeValue(forKey: id) ?? self.backlog.removeValue(forKey: id)
        }

        /// Takes out a parked flush (its deadline passed, its task was cancelled): its waiter, if still parked.
        mutating func cancelFlush(_ id: Int) -> Waiter? {
            self.flushes.removeValue(forKey: id)?.waiter ?? self.spillFlushes.removeValue(forKey: id)?.waiter
        }

        // MARK: Resuming

        /// Hands every sender waiting for room to `resumed`.
        mutating func resumeRoomWaiters(into resumed: inout [Waiter]) {
            guard !self.room.isEmpty else { return }
            resumed += self.room.values
            self.room.removeAll()
            self.roomDuringFill.removeAll()
        }

        /// Hands every sender waiting for the dispatcher to `resumed`.
        mutating func resumeBacklogWaiters(into resumed: inout [Waiter]) {
            guard !self.backlog.isEmpty else { return }
            resumed += self.backlog.values
            self.backlog.removeAll()
        }

        /// Hands every parked sender to `resumed`: those waiting for room first.
        mutating func resumeAllSenders(into resumed: inout [Waiter]) {
            resumed += self.room.values
            resumed += self.backlog.values
            self.room.removeAll()
            self.backlog.removeAll()
            self.roomDuringFill.removeAll()
        }

        /// Hands the flushes whose target is at most `oldestLive` (the oldest job not ended, or the next job's id
        /// when every job ended) to `resumed`, as having seen every earlier record end.
        mutating func resumeFlushes(reachedBy oldestLive: Int, into resumed: inout [(waiter: Waiter, allEnded: Bool)]) {
            guard !self.flushes.isEmpty else { return }
            for (id, flush) in self.flushes where flush.target <= oldestLive {
                resumed.append((flush.waiter, true))
                self.flushes[id] = nil
            }
        }

        /// Hands every parked flush to `resumed`, as having seen every earlier record end (everything ended).
        mutating func resumeAllFlushes(into resumed: inout [(waiter: Waiter, allEnded: Bool)]) {
            for (_, flush) in self.flushes { resumed.append((flush.waiter, true)) }
            for (_, flush) in self.spillFlushes { resumed.append((flush.waiter, true)) }
            self.flushes.removeAll()
            self.spillFlushes.removeAll()
        }
    }
}

extension DeliveryStateMachine.Waiters: Sendable where Waiter: Sendable {}
