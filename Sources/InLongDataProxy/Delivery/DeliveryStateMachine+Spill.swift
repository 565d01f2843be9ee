import InLongTransport
import NIOCore

/// Spilling: with a spool, records the memory quota has no room for are written to the spool only and read back
/// into batches as the quota frees (``SpillQueue``). These are the rules that span the queue and the rest.
extension DeliveryStateMachine {
    /// A call of `count` records of `key` spills them: their ids, and the entry to report the write's end to;
    /// `nil` when the client no longer accepts records.
    mutating func reserveSpill(count: Int, key: BatchKey, observer: RecordObserver) -> (seq: Int, ids: Range<UInt64>)? {
        guard self.isAccepting, count > 0 else { return nil }
        let ids = self.takeRecordIDs(count)
        return (self.spill.add(ids: ids, key: key, observer: observer), ids)
    }

    /// The spill `seq` is on disk at `location`: it can be read back (or, when everything failed meanwhile, it
    /// fails now).
    mutating func spillWritten(_ seq: Int, at location: SpillLocation, now: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        if let failed = self.spill.written(seq, at: location) {
            self.failSpilled(failed, self.spillShutDown(failed), now: now, actions: &actions)
        }
        self.spill.resumeDrainer(into: &actions.resumeSenders)
        return actions
    }

    /// The spill `seq` could not be written (the spool is full, or failed): its records were not accepted.
    mutating func spillAbandoned(_ seq: Int, now: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        self.spill.remove(seq)
        self.spillProgressed(now: now, actions: &actions)
        return actions
    }

    /// What the drainer does next.
    func nextSpill() -> SpillStep {
        if let first = self.spill.entries.first, let location = first.location {
            return .read(seq: first.seq, ids: first.ids, location: location, skip: first.appended)
        }
        switch self.phase {
        case .running: return .wait
        case .closing: return self.spill.isEmpty ? .stop : .wait
        case .closed: return .stop
        }
    }

    /// Parks the drainer until there is something to read (`bytes` is `nil`), or room for a record of `bytes` it
    /// read; `false` when it should look again now.
    mutating func parkDrainer(_ waiter: Waiter, bytes: Int?) -> Bool {
        if let bytes {
            if self.accumulator.hasRoom(forBytes: bytes + BatchAccumulator.recordOverhead) || self.spill.isEmpty { return false }
        } else if self.nextSpill() != .wait {
            return false
        }
        if case .closed = self.phase { return false }
        self.spill.park(waiter, duringFillFor: bytes.flatMap { self.accumulator.fills > 0 ? $0 + BatchAccumulator.recordOverhead : nil })
        return true
    }

    /// The drainer's task was cancelled: its waiter, if parked.
    mutating func cancelDrainer() -> Waiter? {
        self.spill.takeDrainer()
    }

    /// Appends records the drainer read back for entry `seq`, as far as the quota allows (they keep their ids):
    /// how many, and whether the entry is still the first (otherwise what was read is no longer needed).
    mutating func drainSpill(
        _ seq: Int,
        _ records: ArraySlice<SpoolRecord>,
        now: ContinuousClock.Instant,
        wallSeconds: UInt32
    ) -> (appended: Int, current: Bool, Actions) {
        var actions = Actions()
        guard let first = self.spill.entries.first, first.seq == seq, first.location != nil else { return (0, false, actions) }
        var appended = 0
        var sealed: [SealedBatch] = []
        appending: for record in records {
            switch self.accumulator.append(
                record.body, attributes: record.attributes, key: record.key, id: record.id, now: now, wallSeconds: wallSeconds, observer: first.observer
            ) {
            case .accepted, .acceptedFull: appended += 1
            case .acceptedAndSealed(let batch):
                appended += 1
                sealed.append(batch)
            case .full, .noRoomToSeal: break appending
            }
        }
        let done = self.spill.appended(appended)
        if case .closing = self.phase { sealed += self.accumulator.sealAll() }
        self.enqueue(sealed, actions: &actions)
        if done { self.spillProgressed(now: now, actions: &actions) }
        return (appended, !done, actions)
    }

    /// The first entry could not be read back: its records not appended yet fail with `error`.
    mutating func spillUnreadable(_ seq: Int, error: DataProxyError, now: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        guard let entry = self.spill.remove(seq) else { return actions }
        self.failSpilled(entry, error, now: now, actions: &actions)
        self.spillProgressed(now: now, actions: &actions)
        return actions
    }

    /// Fails every spilled record not appended yet (everything fails); those being written fail once written.
    mutating func failAllSpilled(now: ContinuousClock.Instant, actions: inout Actions) {
        for entry in self.spill.failAll() {
            self.failSpilled(entry, self.spillShutDown(entry), now: now, actions: &actions)
        }
        self.spill.resumeDrainer(into: &actions.resumeSenders)
    }

    /// An entry left the queue: flushes waiting for the spill to drain up to it go on as flushes of the jobs
    /// made so far; senders waiting for the spill to drain try again.
    private mutating func spillProgressed(now: ContinuousClock.Instant, actions: inout Actions) {
        self.spill.resumeDrainer(into: &actions.resumeSenders)
        if self.spill.isEmpty { self.waiters.resumeRoomWaiters(into: &actions.resumeSenders) }
        let reached = self.waiters.takeSpillFlushes(reachedBy: self.spill.drainedBefore)
        guard !reached.isEmpty else { return }
        self.enqueue(self.accumulator.sealAll(), actions: &actions)
        let target = self.liveJobs.nextID
        for (id, waiter) in reached {
            if let oldest = self.liveJobs.oldest, oldest < target {
                self.waiters.parkFlush(waiter, target: target, id: id)
            } else {
                actions.resumeFlushes.append((waiter, true))
            }
        }
        if case .closing = self.phase, self.isFinished { actions.wakeDispatcher = true }
    }

    /// Reports spilled records that were never appended as failed. They weigh nothing on the quota and carry no
    /// bodies in their report: they are still in the spool (see ``spillShutDown(_:)``).
    private func failSpilled(_ entry: SpillQueue.Entry, _ error: DataProxyError, now: ContinuousClock.Instant, actions: inout Actions) {
        let ids = entry.remaining
        guard !ids.isEmpty else { return }
        var observers: [BatchObserver] = []
        switch entry.observer {
        case .none: break
        case .waiter(let waiter): observers.append(.waiter(waiter))
        case .tracker(let tracker): observers.track(tracker, ids)
        }
        let batch = SealedBatch(
            key: entry.key, block: ByteBuffer(), recordCount: ids.count, chargedBytes: 0, ids: DataProxyRecordIDs(ids),
            observers: observers, createdAt: now, dataTime: 0
        )
        let job = DeliveryJob(
            id: -1, batch: batch, deadline: now, backoff: self.configuration.retryBackoff.makeIterator(random: self.configuration.random)
        )
        actions.finish.append((job, .failure(error), false))
    }

    /// Spilled records end with the client's close as records in memory do (``DataProxyError/Code/shutDown``,
    /// kept in the spool for the next client).
    private func spillShutDown(_ entry: SpillQueue.Entry) -> DataProxyError {
        var error = DataProxyError(
            .shutDown,
            "the client closed before records spilled to the spool were sent; they stay in the spool for the next client",
            isRetriable: true,
            persistence: .notSent,
            group: entry.key.group,
            stream: entry.key.stream
        )
        if self.proxies.isEmpty { error.lastFailure = .noProxies }
        return error
    }
}
