import DequeModule
import InLongTransport
import InLongWire
import NIOCore

/// The delivery rules of ``DataProxyClient``, with no I/O, no clock and no lock of its own: records are accepted
/// into batches, batches are handed to the dispatcher in order, outcomes decide between an ack, a retry after the
/// job's backoff and a failure, and closing or cancelling ends every job in exactly one outcome. The client feeds
/// it events with the time and runs the returned ``Actions``.
///
/// `Waiter` is a suspended caller resumed with a `Bool` (a continuation in production, a plain value in tests):
/// senders waiting for room or for the dispatcher (resumed to try again), and `flush` callers (resumed with whether
/// every earlier record ended).
///
/// Its state is held in sub-states, each a value that keeps its own invariants: ``JobQueue`` (jobs ready for the
/// dispatcher and those it took), ``RouteWaitList`` (jobs of groups without proxies), ``RetrySchedule``,
/// ``LiveJobs`` (which jobs have not ended, for flushes), ``ReportQuota`` and ``Waiters``, besides the
/// ``BatchAccumulator`` and the ``DispatchBacklog``. The rules that span them are the machine's events: appending,
/// reports, flush and close here, the dispatcher's in `+Dispatch`, outcomes and the time in `+Outcomes`, the
/// lanes' leases and hand-ins (``AppendLane``) in `+Lanes`; what they return is in `+Actions`.
struct DeliveryStateMachine<Waiter> {
    struct Configuration {
        var deliveryTimeout: Duration
        /// Attempts per batch, when capped; otherwise retriable failures are retried until the delivery deadline.
        var maxAttempts: Int?
        var retryBackoff: ExponentialBackoff
        var random: @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
        /// Ready batches at which senders wait for the dispatcher (`Int.max` for none).
        var backlogLimit: Int
        /// Batches encoded at once beside the dispatcher, at most (see ``EncodePipeline``); 0 for none: the
        /// dispatcher encodes each job as it takes it.
        var encoders = 0
    }

    enum Phase: Equatable {
        case running
        /// No new records; what is held is sent until the deadline, then failed.
        /// (The deadline with a fixed layout: a standard instant here would make the whole machine's layout
        /// resilient, its every field reached through runtime metadata, on the per-record path too.)
        case closing(deadline: FixedInstant)
        /// Everything held has ended.
        case closed
    }

    let configuration: Configuration
    private(set) var phase = Phase.running
    var accumulator: BatchAccumulator
    // The sub-states: changed by the machine's events only.
    var backlog: DispatchBacklog
    /// Jobs ready for the dispatcher, and those it took (handed over, submitted, waiting out a retry backoff).
    var jobs = JobQueue()
    /// Jobs of groups with no proxy yet.
    var routes = RouteWaitList()
    /// Which pending jobs wait out a retry backoff, and until when.
    var retries = RetrySchedule()
    /// Which jobs have not ended, in acceptance order, for flushes.
    var liveJobs = LiveJobs()
    /// Quota held for delivery reports not taken yet.
    var reports = ReportQuota()
    /// Parked senders and flush callers.
    var waiters = Waiters()
    /// Records on disk only, waiting for room in memory (with a spool).
    var spill = SpillQueue()
    /// Sealed jobs being encoded, before they are ready (when encoders are configured).
    var encodes: EncodePipeline
    /// The last uniq given to a job.
    var nextUniq: UInt32 = 0
    /// The records' ids, shared with the client's lanes (``AppendLane``).
    let recordIDs: RecordIDSource
    /// The id the next record would take.
    var nextRecordID: UInt64 { self.recordIDs.next }
    /// The proxies in use; empty until discovery found some.
    private(set) var proxies: [Endpoint] = []

    init(configuration: Configuration, limits: BatchAccumulator.Limits, recordIDs: RecordIDSource = RecordIDSource()) {
        self.configuration = configuration
        self.recordIDs = recordIDs
        self.accumulator = BatchAccumulator(limits: limits)
        self.backlog = DispatchBacklog(limit: configuration.backlogLimit)
        self.encodes = EncodePipeline(limit: configuration.encoders)
    }

    var isAccepting: Bool {
        if case .running = self.phase { return true }
        return false
    }
    /// Jobs ready, in flight or waiting to retry.
    var jobCount: Int { self.jobs.count + self.routes.count + self.encodes.count }
    /// Sealed jobs the dispatcher has not taken: ready, or being encoded for it (what the backlog counts).
    var waitingJobs: Int { self.jobs.readyCount + self.encodes.count }
    /// What the backlog's limit counts: the waiting jobs, and the batches fills under way may still seal.
    var backlogReady: Int { self.waitingJobs + self.accumulator.reservedSeals }
    /// Whether the client closed and every record ended: the dispatcher may stop.
    var isFinished: Bool {
        switch self.phase {
        case .running: false
        case .closing:
            self.jobs.isEmpty && self.routes.isEmpty && self.encodes.isEmpty && self.accumulator.heldRecords == self.reports.heldRecords
                && self.spill.isEmpty && self.accumulator.leasedRecords == 0
        // A job the dispatcher was handing over when everything failed ends when it reports.
        case .closed: self.jobs.pendingCount == 0
        }
    }

    // MARK: Append

    /// Appends a run of records of one key at once, as far as the quota and the backlog allow: a fill begun and
    /// committed in one step (tests and the simulation; the client writes its fills outside the lock).
    mutating func appendRun(
        _ bodies: ArraySlice<ByteBuffer>,
        key: BatchKey,
        now: ContinuousClock.Instant,
        wallSeconds: UInt32,
        tracker: DeliveryTracker? = nil
    ) -> (ids: Range<UInt64>, blocked: Blocked?, sealed: Sealed?) {
        let first = self.nextRecordID
        var sealed: [(key: BatchKey, records: Int, bytes: Int, dataTime: UInt32)] = []
        var appended = 0
        // Turn after turn while a turn's reservation, not the quota, stops it.
        while true {
            var fill: BatchFill
            switch bodies.withUnsafeBufferPointer({ self.beginFill(key: key, wanted: BatchAccumulator.wanted(UnsafeBufferPointer(rebasing: $0[appended...]))) }) {
            case .blocked(let blocked):
                return (first..<self.nextRecordID, blocked, sealed.isEmpty ? nil : Sealed(batches: sealed, heldBytes: self.accumulator.heldBytes))
            case .fill(let started): fill = started
            }
            bodies.withUnsafeBufferPointer { fill.fill(from: BodiesFillSource(bodies: $0), at: appended) }
            let (committed, actions) = self.commitFill(fill, tracker: tracker, now: now, wallSeconds: wallSeconds)
            // Nothing happened between the two steps: nobody waits on the reservation, only sealed batches are left.
            precondition(actions.map { $0.resumeSenders.isEmpty && $0.finish.isEmpty } ?? true, "a fill at once resumed senders")
            precondition(committed.tooLargeLimit == nil, "records of a run are checked against the limit before")
            sealed += actions?.sealed ?? []
            appended += committed.ids.count
            guard committed.turnOver, appended < bodies.count else {
                return (first..<self.nextRecordID, committed.blocked, sealed.isEmpty ? nil : Sealed(batches: sealed, heldBytes: self.accumulator.heldBytes))
            }
        }
    }

    /// Appends one record, with who observes its outcome. Actions only when a batch was sealed.
    mutating func append(
        _ body: ByteBuffer,
        attributes: String?,
        key: BatchKey,
        now: @autoclosure () -> ContinuousClock.Instant,
        wallSeconds: @autoclosure () -> UInt32,
        observer: RecordObserver = .none
    ) -> (AppendResult, Sealed?) {
        guard self.isAccepting else { return (.blocked(.closed), nil) }
        let recordBytes = BatchAccumulator.blockBytes(bodyLength: body.readableBytes, attributesLength: attributes?.utf8.count)
        // Checked under the lock the append takes anyway: the limit can change with the Manager's answer.
        guard recordBytes <= self.accumulator.limits.maxBytes else {
            return (.tooLarge(limit: self.accumulator.limits.maxBytes), nil)
        }
        guard self.spill.isEmpty else { return (.blocked(.full), nil) }
        // Taken now, since a lane may take the next one meanwhile; given back when the record is not accepted.
        let id = self.recordIDs.take()
        // Only a record that seals a batch needs room in the backlog: one that fills its batch without it leaves
        // the batch open, and only one the open batch cannot take waits. The room is read only then: the queues it
        // counts are the dispatcher's, and reading them per record moved their memory between cores.
        var maySeal = false
        while true {
            switch self.accumulator.append(body, attributes: attributes, key: key, id: id, now: now(), wallSeconds: wallSeconds(), observer: observer, maySeal: maySeal) {
            case .accepted:
                return (.accepted(id), nil)
            case .acceptedFull:
                guard self.backlog.room(ready: self.backlogReady) > 0, let batch = self.accumulator.sealFull(key) else { return (.accepted(id), nil) }
                return (.accepted(id), self.enqueueSealed([batch]))
            case .acceptedAndSealed(let batch):
                return (.accepted(id), self.enqueueSealed([batch]))
            case .full:
                self.recordIDs.giveBack(id)
                let charge = BatchAccumulator.charge(bodyLength: body.readableBytes, attributesLength: attributes?.utf8.count)
                return (.blocked(Blocked(self.accumulator.whyNoRoom(forBytes: charge))), nil)
            case .noRoomToSeal:
                // The open batch cannot take the record: it goes in once that one is sealed, if there is room.
                guard !maySeal, self.backlog.room(ready: self.backlogReady) > 0 else {
                    self.recordIDs.giveBack(id)
                    return (.blocked(.backlogged), nil)
                }
                maySeal = true
            }
        }
    }

    /// Gives the next `count` record ids (records accepted without being appended: spilled).
    mutating func takeRecordIDs(_ count: Int) -> Range<UInt64> {
        self.recordIDs.take(count)
    }

    /// A sender stopped by `blocked` waits: for quota (`.full`, with the record's `bytes`) or for the dispatcher.
    mutating func wait(for blocked: Blocked, bytes: Int, waiter: Waiter) -> Wait {
        guard self.isAccepting else { return .retryNow }
        switch blocked {
        case .closed, .leased:
            return .retryNow
        case .full, .reserved:
            let needed = bytes + BatchAccumulator.recordOverhead
            if self.spill.isEmpty, self.accumulator.hasRoom(forBytes: needed) { return .retryNow }
            // Waiting for fills that have ended: trying again tells whether the buffer is full indeed.
            if blocked == .reserved, self.accumulator.fills == 0 { return .retryNow }
            return .parked(id: self.waiters.parkForRoom(waiter, duringFillFor: self.accumulator.fills > 0 ? needed : nil))
        case .backlogged:
            if self.backlog.releasesWaiters(ready: self.backlogReady) { return .retryNow }
            return .parked(id: self.waiters.parkForBacklog(waiter))
        }
    }

    /// A parked sender's task was cancelled: the waiter to resume, unless it was resumed already.
    mutating func cancelWait(_ id: Int) -> Waiter? {
        self.waiters.cancelSender(id)
    }

    /// The proxies in use changed (discovery, a refresh).
    mutating func proxiesChanged(_ proxies: [Endpoint]) {
        self.proxies = proxies
    }

    // MARK: Reports

    /// Report sequences were opened or ended; `count` are open now.
    mutating func reportReadersChanged(_ count: Int) {
        self.reports.readersChanged(count)
    }

    /// Every open report sequence took (or dropped) the report of a job that held its quota for it.
    mutating func reportsTaken(bytes: Int, records: Int) -> Actions {
        var actions = Actions()
        self.reports.taken(bytes: bytes, records: records)
        self.accumulator.release(bytes: bytes, records: records)
        actions.heldBytes = self.heldBytesNow()
        self.waiters.resumeRoomWaiters(into: &actions.resumeSenders)
        if !self.spill.isEmpty { self.spill.resumeDrainer(into: &actions.resumeSenders) }
        if case .closing = self.phase, self.isFinished { actions.wakeDispatcher = true }
        return actions
    }

    // MARK: Flush, close, cancel

    /// Seals every open batch; the caller waits until every job accepted so far ended.
    mutating func flush(waiter: Waiter, now: ContinuousClock.Instant) -> (FlushResult, Actions) {
        var actions = Actions()
        self.enqueue(self.accumulator.sealAll(), actions: &actions)
        // Records waiting in the spool count as accepted before the call: the flush waits for them to be read back.
        guard self.spill.isEmpty else {
            return (.parked(id: self.waiters.parkFlush(waiter, afterSpill: self.spill.nextSeq)), actions)
        }
        let target = self.liveJobs.nextID
        guard let oldest = self.liveJobs.oldest, oldest < target else { return (.ended, actions) }
        return (.parked(id: self.waiters.parkFlush(waiter, target: target)), actions)
    }

    /// A flush caller's deadline passed or its task was cancelled: the waiter to resume, if still parked.
    mutating func cancelFlush(_ id: Int) -> Waiter? {
        self.waiters.cancelFlush(id)
    }

    /// Stops accepting records, sends what is buffered and fails what is left at `deadline`.
    mutating func closeRequested(now: ContinuousClock.Instant, deadline: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        guard self.phase == .running else { return actions }
        self.phase = .closing(deadline: FixedInstant(deadline))
        self.enqueue(self.accumulator.sealAll(), actions: &actions)
        self.waiters.resumeAllSenders(into: &actions.resumeSenders)
        self.spill.resumeDrainer(into: &actions.resumeSenders)
        actions.wakeDispatcher = true
        return actions
    }

    /// The run ended (cancelled, or nothing more will be sent): close with no grace. Every record held ends as
    /// failed, every waiter resumes.
    mutating func cancelled(now: ContinuousClock.Instant) -> Actions {
        self.failEverything(now: now, cancelled: true)
    }

    /// Fails every job held at once (`cancelled`: the run was cancelled) and resumes every waiter: the close
    /// deadline passed, or the run ended.
    mutating func failEverything(now: ContinuousClock.Instant, cancelled: Bool = false) -> Actions {
        var actions = Actions()
        if self.phase == .running { self.phase = .closing(deadline: FixedInstant(now)) }
        self.enqueue(self.accumulator.sealAll(), actions: &actions)
        // Submitted jobs may have been written: possibly sent.
        var jobs = Array(self.jobs.ready) + self.encodes.removeAll()
        self.routes.removeAll(into: &jobs)
        var handingOver: [Int: DeliveryJob] = [:]
        for var job in self.jobs.pending.values {
            if job.handingOver {
                // It ends when the dispatcher reports whether a connection took it, as sent or not.
                job.endedWhileHandingOver = job.endedWhileHandingOver ?? self.shutDown(job, cancelled: cancelled)
                handingOver[job.id] = job
                continue
            }
            if job.sentAt != nil, !self.retries.contains(job.id) { job.mayHaveBeenDelivered = true }
            jobs.append(job)
        }
        self.jobs.removeAll(keepingPending: handingOver)
        self.retries.removeAll()
        for job in jobs.sorted(by: { $0.id < $1.id }) {
            self.finish(job, .failure(self.shutDown(job, cancelled: cancelled)), actions: &actions)
        }
        self.failAllSpilled(now: now, actions: &actions)
        self.phase = .closed
        self.waiters.resumeAllSenders(into: &actions.resumeSenders)
        // Jobs being handed over end when the dispatcher reports; the flushes behind them resume then.
        if self.jobs.pendingCount == 0 { self.waiters.resumeAllFlushes(into: &actions.resumeFlushes) }
        actions.wakeDispatcher = true
        return actions
    }

    // MARK: Helpers

    private func heldBytesNow() -> Int {
        self.accumulator.heldBytes
    }

    private mutating func enqueueSealed(_ batches: [SealedBatch]) -> Sealed {
        var actions = Actions()
        self.enqueue(batches, actions: &actions)
        return Sealed(batches: actions.sealed, heldBytes: actions.heldBytes ?? self.heldBytesNow())
    }

    /// A job for a sealed batch, counted live until it ends.
    mutating func newJob(_ batch: SealedBatch) -> DeliveryJob {
        DeliveryJob(
            id: self.liveJobs.add(),
            batch: batch,
            deadline: batch.createdAt + self.configuration.deliveryTimeout,
            backoff: self.configuration.retryBackoff.makeIterator(random: self.configuration.random)
        )
    }

    /// Turns sealed batches into jobs at the back of the ready queue.
    mutating func enqueue(_ batches: [SealedBatch], actions: inout Actions) {
        guard !batches.isEmpty else { return }
        for batch in batches {
            let job = self.newJob(batch)
            if self.encodes.isEnabled {
                self.encodes.append(job)
            } else {
                self.jobs.append(job)
            }
            actions.sealed.append((batch.key, batch.recordCount, batch.chargedBytes, batch.dataTime))
        }
        actions.heldBytes = self.heldBytesNow()
        actions.wakeDispatcher = true
    }

    /// Ends a job: releases its quota (or holds it for its report, when reports are read) and lets senders
    /// waiting for room, and flushes waiting for it, go on.
    mutating func finish(_ job: DeliveryJob, _ result: Result<DataProxyAck, DataProxyError>, actions: inout Actions) {
        let reportHolds = self.reports.hold(bytes: job.batch.chargedBytes, records: job.batch.recordCount)
        if !reportHolds { self.accumulator.release(bytes: job.batch.chargedBytes, records: job.batch.recordCount) }
        self.liveJobs.ended(job.id)
        actions.finish.append((job, result, reportHolds))
        actions.heldBytes = self.heldBytesNow()
        if !reportHolds {
            self.waiters.resumeRoomWaiters(into: &actions.resumeSenders)
            if !self.spill.isEmpty { self.spill.resumeDrainer(into: &actions.resumeSenders) }
        }
        self.waiters.resumeFlushes(reachedBy: self.liveJobs.oldestLive, into: &actions.resumeFlushes)
        if case .closing = self.phase, self.isFinished { actions.wakeDispatcher = true }
    }
}

extension DeliveryStateMachine: Sendable where Waiter: Sendable {}
