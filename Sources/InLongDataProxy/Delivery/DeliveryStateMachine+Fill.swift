/// Appending many records of one key without holding the lock while they are written (``BatchFill``): the
/// beginning and the commit are the machine's events; the writing between them is the caller's.
extension DeliveryStateMachine {
    enum FillStart {
        case fill(BatchFill)
        case blocked(Blocked)
    }

    /// Starts a fill of `key`'s records, unless the client is closing, records wait in the spool (a new record
    /// spills behind them) or the dispatcher's backlog is full (with what other fills reserved of it). `wanted`
    /// bounds the quota reserved.
    mutating func beginFill(key: BatchKey, wanted: BatchAccumulator.Wanted) -> FillStart {
        guard self.isAccepting else { return .blocked(.closed) }
        guard self.spill.isEmpty else { return .blocked(.full) }
        let room = self.backlog.room(ready: self.backlogReady)
        guard room > 0 else { return .blocked(.backlogged) }
        return .fill(self.accumulator.beginFill(key: key, wanted: wanted, room: room))
    }

    /// What a fill's commit did: the records written took `ids` (none when the client closed meanwhile).
    struct FillCommitted {
        var ids: Range<UInt64>
        /// Why the caller stops before its next record, if it does.
        var blocked: Blocked?
        /// The body length of the record it stopped before.
        var stoppedBefore: Int?
        /// The limit the record it stopped before exceeds.
        var tooLargeLimit: Int?
        /// The fill's records were not accepted: the client closed (`blocked` is `.closed`), records were spilled
        /// meanwhile (`.full`), or the batch limit was lowered (no stop: the call goes on with another turn).
        var refused = false
        /// The fill's reservation ran out before the quota did: the call goes on with another turn.
        var turnOver = false
    }

    /// Accepts a fill's records (observed by `tracker`), unless the client stopped accepting since it began.
    /// Actions when batches were sealed, or when the reservation's end lets waiting senders try again.
    mutating func commitFill(
        _ fill: consuming BatchFill,
        tracker: DeliveryTracker? = nil,
        now: ContinuousClock.Instant,
        wallSeconds: UInt32
    ) -> (FillCommitted, Actions?) {
        // Records spilled to the spool while the fill wrote (a sender found no room) go first: the fill's records
        // are not accepted, and the call spills them behind.
        let spilled = !self.spill.isEmpty
        // A batch limit lowered since the beginning (the Manager's): the batches were cut to the old one, so the
        // records are not accepted and the call writes them again (limits only go down: this happens once).
        let limits = self.accumulator.limits
        let limitLowered = fill.maxBytes > limits.maxBytes || fill.maxRecords > limits.maxRecords
        let accept = self.isAccepting && !spilled && !limitLowered
        let records = accept ? fill.records : 0
        let stop = fill.stop
        let maxBytes = fill.maxBytes
        let reserved = fill.reservedRecords > 0 || fill.reservedBytes > 0
        let ids = self.takeRecordIDs(records)
        let sealed = self.accumulator.commitFill(fill, firstID: ids.lowerBound, tracker: tracker, now: now, wallSeconds: wallSeconds, accept: accept)
        var committed = FillCommitted(ids: ids)
        if !accept {
            committed.refused = true
            committed.blocked = !self.isAccepting ? .closed : spilled ? .full : nil
        } else {
            switch stop {
            case .end: break
            case .turnOver: committed.turnOver = true
            case .quota(let length):
                // Room now (a fill that held it ended meanwhile) or once the fills under way end: not a full buffer.
                let charge = BatchAccumulator.charge(bodyLength: length, attributesLength: nil)
                committed.blocked = Blocked(self.accumulator.whyNoRoom(forBytes: charge))
                committed.stoppedBefore = length
            case .backlogged(let length):
                committed.blocked = .backlogged
                committed.stoppedBefore = length
            case .tooLarge(let length):
                committed.tooLargeLimit = maxBytes
                committed.stoppedBefore = length
            }
        }
        var actions: Actions?
        if !sealed.isEmpty {
            var sealedActions = Actions()
            self.enqueue(sealed, actions: &sealedActions)
            actions = sealedActions
        }
        if reserved { self.resumeWhoFitsAfterAFill(&actions) }
        // The room the fill reserved in the backlog and did not seal is free again: senders it held may go on.
        var released = actions ?? Actions()
        self.releaseBacklogWaitersIfDue(&released)
        if !released.resumeSenders.isEmpty { actions = released }
        return (committed, actions)
    }

    /// Senders (and the drainer) that found no room while a fill's reservation held quota: those whose record fits
    /// now go on. Only those: one resumed without room would find none, park again during another caller's fill,
    /// be resumed by its end, and so on, two callers waking each other for ever with nothing acked.
    private mutating func resumeWhoFitsAfterAFill(_ actions: inout Actions?) {
        let noFillLeft = self.accumulator.fills == 0
        var resumed: [Waiter] = []
        for (id, bytes) in self.waiters.roomDuringFill {
            if self.spill.isEmpty, self.accumulator.hasRoom(forBytes: bytes) {
                self.waiters.resumeRoomWaiter(id, into: &resumed)
            } else if noFillLeft {
                self.waiters.forgetParkedDuringFill(id)
            }
        }
        if let bytes = self.spill.drainerRoomDuringFill {
            if self.accumulator.hasRoom(forBytes: bytes) {
                self.spill.resumeDrainer(into: &resumed)
            } else if noFillLeft {
                self.spill.forgetDrainerDuringFill()
            }
        }
        guard !resumed.isEmpty else { return }
        var merged = actions ?? Actions()
        merged.resumeSenders += resumed
        actions = merged
    }
}
