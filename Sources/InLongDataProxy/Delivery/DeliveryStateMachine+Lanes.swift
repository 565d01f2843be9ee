import InLongTransport
import NIOCore

/// The machine's side of the client's lanes (``AppendLane``): leases of quota for one batch each, and the batches
/// handed in. A lease counts against the quota as a fill's reservation does (``BatchAccumulator/leasedBytes``);
/// a sender that finds room only in what lanes leased is told ``Blocked/leased``, and the client has every lane
/// hand its batch in before it tries again.
extension DeliveryStateMachine {
    /// The most of the quota one lease takes: with many lanes, most of the quota stays for the records of the
    /// calls that go the machine's way.
    static var leaseShare: Int { 64 }

    /// What a lane's turn under the lock did.
    enum LaneTurn: Equatable {
        /// The lane holds a new lease for the record's key.
        case leased
        /// The lane's batch of the key waits for room in the backlog to be sealed: the sender waits for the
        /// dispatcher (a record of the same sender going the machine's way meanwhile could be sent before the
        /// lane's).
        case backlogged
        /// The record went the machine's way (``append(_:attributes:key:now:wallSeconds:observer:)``), with this
        /// result: no lease could be had (closed, the quota, a record larger than the batch limit, records in the
        /// spool), or no batch of the lane made way for it, or the key's open batch here could not be sealed to
        /// make way for the lane's.
        case appendedHere(AppendResult)
    }

    /// A lane's turn under the lock for a record (`next`) it could not take: its batch of the key, which could not
    /// take the record, is handed in (when the backlog has room for it), or its oldest batch makes way for one of a
    /// new key; then a lease for the record's key, or the record goes the machine's way.
    ///
    /// A task's records of a stream go to its lane or the machine's way, and never are both under way unsealed:
    /// the lane's batch of the key is handed in before a record goes the machine's way (in the same turn, so that
    /// no other task of the lane leases the key in between), and the key's open batch here is sealed before a
    /// lease. So a task's records of a stream are sealed, hence sent, in the order it sent them.
    mutating func laneTurn(
        _ lane: inout AppendLane,
        next: (body: ByteBuffer, key: BatchKey, recordBytes: Int, charge: Int),
        now: @autoclosure () -> ContinuousClock.Instant,
        wallSeconds: @autoclosure () -> UInt32
    ) -> (LaneTurn, Actions?) {
        var actions: Actions?
        /// The record goes the machine's way.
        func appendHere(_ machine: inout Self) -> (LaneTurn, Actions?) {
            let (result, sealed) = machine.append(next.body, attributes: nil, key: next.key, now: now(), wallSeconds: wallSeconds())
            if let sealed {
                var merged = actions ?? Actions()
                merged.merge(sealed)
                actions = merged
            }
            return (.appendedHere(result), actions)
        }
        if lane.index(of: next.key) != nil {
            // Sealing it needs room in the backlog; until then it stays, and so does the record.
            guard self.backlog.room(ready: self.backlogReady) > 0 else { return (.backlogged, nil) }
            actions = self.handIn(lane.take(next.key))
        } else if lane.batches.count >= AppendLane.maxBatches {
            guard self.backlog.room(ready: self.backlogReady) > 0 else { return appendHere(&self) }
            actions = self.handIn(lane.takeOldest())
        }
        let limits = self.accumulator.limits
        guard !lane.isClosed, self.isAccepting, self.spill.isEmpty, next.recordBytes <= limits.maxBytes else {
            return appendHere(&self)
        }
        // A batch's worth: its bytes as charged are at most twice its block's, for records of a byte or more.
        let bytes = min(2 * limits.maxBytes, limits.quotaBytes / Self.leaseShare)
        let records = min(limits.maxRecords, limits.quotaRecords / Self.leaseShare)
        guard records > 0, bytes >= next.charge, self.accumulator.canLease(records: records, bytes: bytes) else {
            return appendHere(&self)
        }
        if self.accumulator.open.index(forKey: next.key) != nil {
            // Records of the key went this way meanwhile: their batch is sealed first, or the record joins it.
            guard self.backlog.room(ready: self.backlogReady) > 0, let sealed = self.accumulator.sealFull(next.key) else {
                return appendHere(&self)
            }
            var sealedActions = actions ?? Actions()
            self.enqueue([sealed], actions: &sealedActions)
            actions = sealedActions
        }
        self.accumulator.leasedBytes += bytes
        self.accumulator.leasedRecords += records
        let lease = AppendLane.Lease(
            key: next.key,
            bytes: bytes,
            records: records,
            maxBytes: limits.maxBytes,
            maxRecords: limits.maxRecords,
            created: FixedInstant(now()),
            dataTime: wallSeconds()
        )
        // A block as the machine's own batches start with: it grows with the records (spare ones are full-size).
        let capacity = min(limits.maxBytes, max(next.recordBytes, 1024))
        lane.open(lease, block: self.accumulator.spareBlocks.popLast() ?? ByteBufferAllocator().buffer(capacity: capacity))
        return (.leased, actions)
    }

    /// Hands in a lane's batch of `key`, which a record filled, when the backlog has room to seal it (otherwise
    /// the next record of the key, or its linger, does).
    mutating func laneFilled(_ lane: inout AppendLane, key: BatchKey) -> Actions? {
        guard self.backlog.room(ready: self.backlogReady) > 0 else { return nil }
        return self.handIn(lane.take(key))
    }

    /// Hands in a lane's batch of `key` whatever room the backlog has: the records of a call that goes this way are
    /// to be sealed after it.
    mutating func handInLane(_ lane: inout AppendLane, key: BatchKey) -> Actions? {
        self.handIn(lane.take(key))
    }

    /// Hands in a lane's batches whatever room the backlog has, as the machine's own batches are sealed by age:
    /// those lingering `linger` at `now`, or all of them (`now` `nil`: a flush, a close, a sender that needs the
    /// quota they leased). `close` closes the lane too.
    mutating func handInLane(_ lane: inout AppendLane, dueAt now: ContinuousClock.Instant? = nil, close: Bool) -> Actions? {
        let handIns = close ? lane.close() : lane.take(dueAt: now, linger: self.accumulator.limits.linger)
        guard !handIns.isEmpty else { return nil }
        var actions = Actions()
        for handIn in handIns { self.handIn(handIn, actions: &actions) }
        return actions
    }

    /// Hands in what a lane gave up, if anything.
    private mutating func handIn(_ handIn: AppendLane.HandIn?) -> Actions? {
        guard let handIn else { return nil }
        var actions = Actions()
        self.handIn(handIn, actions: &actions)
        return actions
    }

    /// The lease ends: the batch's records are held as sealed ones, the rest of the lease is free again.
    private mutating func handIn(_ handIn: AppendLane.HandIn, actions: inout Actions) {
        self.accumulator.leasedBytes -= handIn.leasedBytes
        self.accumulator.leasedRecords -= handIn.leasedRecords
        precondition(self.accumulator.leasedBytes >= 0 && self.accumulator.leasedRecords >= 0, "a lease handed in twice")
        if let batch = handIn.batch {
            self.accumulator.heldBytes += batch.chargedBytes
            self.accumulator.heldRecords += batch.recordCount
            if self.phase == .closed {
                // Everything else has ended: the records end at once, as the others did.
                let job = self.newJob(batch)
                self.finish(job, .failure(self.shutDown(job, cancelled: true)), actions: &actions)
            } else {
                self.enqueue([batch], actions: &actions)
            }
        } else if let block = handIn.unusedBlock {
            self.accumulator.recycle(block)
        }
        // What the lease held beyond its records is free: senders that found no room may have it now.
        self.waiters.resumeRoomWaiters(into: &actions.resumeSenders)
        if !self.spill.isEmpty { self.spill.resumeDrainer(into: &actions.resumeSenders) }
        if actions.heldBytes == nil { actions.heldBytes = self.accumulator.heldBytes }
    }
}
