import DequeModule
import InLongTransport
import InLongWire
import NIOCore

/// The quota in use, numbered: the machine's actions run outside its lock, so two threads can report it out of
/// order, and the number tells which report is the newer.
struct HeldBytes: Equatable {
    var bytes: Int
    var version: UInt64
}

/// The delivery rules of ``DataProxyClient``, with no I/O, no clock and no lock of its own: records are accepted
/// into batches, batches are handed to the dispatcher in order, outcomes decide between an ack, a retry after the
/// job's backoff and a failure, and closing or cancelling ends every job in exactly one outcome. The client feeds
/// it events with the time and runs the returned ``Actions``.
///
/// `Waiter` is a suspended caller resumed with a `Bool` (a continuation in production, a plain value in tests):
/// senders waiting for room or for the dispatcher (resumed to try again), and `flush` callers (resumed with whether
/// every earlier record ended).
struct DeliveryStateMachine<Waiter> {
    struct Configuration {
        var deliveryTimeout: Duration
        /// Attempts per batch, when capped; otherwise retriable failures are retried until the delivery deadline.
        var maxAttempts: Int?
        var retryBackoff: Backoff
        var random: @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
        /// Ready batches at which senders wait for the dispatcher (`Int.max` for none).
        var backlogLimit: Int
    }

    enum Phase: Equatable {
        case running
        /// No new records; what is held is sent until the deadline, then failed.
        case closing(deadline: ContinuousClock.Instant)
        /// Everything held has ended.
        case closed
    }

    /// What the driver does once the lock is released, in this order: wake the dispatcher, finish jobs (quota
    /// already released), resume senders, resume flush callers (last, so that they see the finished records
    /// counted).
    struct Actions {
        var wakeDispatcher = false
        /// Jobs that ended; `reportHolds` when their quota stays held until report readers took the report
        /// (``reportsTaken(bytes:records:)``).
        var finish: [(job: DeliveryJob, result: Result<DataProxyAck, DataProxyError>, reportHolds: Bool)] = []
        var resumeSenders: [Waiter] = []
        var resumeFlushes: [(waiter: Waiter, allEnded: Bool)] = []
        /// Batches sealed, for per-stream metrics.
        var sealed: [(key: BatchKey, records: Int, bytes: Int)] = []
        /// A retry was scheduled.
        var retried: (key: BatchKey, attempts: Int, error: DataProxyError, delay: Duration)?
        /// The quota in use after the change, when it changed.
        var heldBytes: HeldBytes?

        init() {}

        init(_ sealed: Sealed) {
            self.merge(sealed)
        }

        mutating func merge(_ sealed: Sealed) {
            self.wakeDispatcher = true
            self.sealed += sealed.batches
            self.heldBytes = sealed.heldBytes
        }

        /// Adds `other`'s actions after these.
        mutating func merge(_ other: Actions) {
            guard !other.isEmpty else { return }
            self.wakeDispatcher = self.wakeDispatcher || other.wakeDispatcher
            self.finish += other.finish
            self.resumeSenders += other.resumeSenders
            self.resumeFlushes += other.resumeFlushes
            self.sealed += other.sealed
            self.retried = other.retried ?? self.retried
            self.heldBytes = other.heldBytes ?? self.heldBytes
        }

        var isEmpty: Bool {
            !self.wakeDispatcher && self.finish.isEmpty && self.resumeSenders.isEmpty && self.resumeFlushes.isEmpty
                && self.sealed.isEmpty && self.retried == nil && self.heldBytes == nil
        }
    }

    /// What appending asks of the driver when it sealed batches: wake the dispatcher, count them. Small, so that
    /// the per-record path returns little.
    struct Sealed {
        var batches: [(key: BatchKey, records: Int, bytes: Int)]
        var heldBytes: HeldBytes
    }

    /// Why an append stopped before the end of its records.
    enum Blocked: Equatable {
        /// The byte or record quota is used up.
        case full
        /// The dispatcher is behind: wait for it.
        case backlogged
        /// The client is closing or closed.
        case closed
    }

    let configuration: Configuration
    private(set) var phase = Phase.running
    var accumulator: BatchAccumulator
    private var backlog: DispatchBacklog
    /// Jobs waiting for the dispatcher, oldest first.
    private var ready = Deque<DeliveryJob>()
    /// Jobs handed to the dispatcher, submitted, or waiting out a retry backoff, by id.
    private var pending: [Int: DeliveryJob] = [:]
    /// Jobs of groups with no proxy yet (discovered on first use), by group, oldest first.
    private var awaitingRoute: [String: Deque<DeliveryJob>] = [:]
    /// Groups whose proxies are known: a job of one of them is never parked (its route may have come between
    /// the dispatcher's look and its park).
    private var routedGroups: Set<String> = []
    /// Jobs (in `pending`) waiting out a retry backoff, with when they are due.
    private var retries: [(due: ContinuousClock.Instant, id: Int)] = []
    private var nextJobID = 0
    private var heldBytesVersion: UInt64 = 0
    private var nextUniq: UInt32 = 0
    /// The id of the next record accepted.
    private(set) var nextRecordID: UInt64 = 0
    /// Open ``DataProxyClient/deliveryReports()`` sequences: while there are some, an ended job's quota is held
    /// until its report is taken, so that a reader falling behind slows acceptance instead of losing reports.
    private(set) var reportReaders = 0
    /// Quota of ended jobs whose reports are not taken yet.
    private(set) var reportHeldRecords = 0
    private(set) var reportHeldBytes = 0
    /// Ids of jobs not yet ended, oldest first, and those among them that ended out of order.
    private var liveJobs = Deque<Int>()
    private var endedOutOfOrder = Set<Int>()
    private var roomWaiters: [Int: Waiter] = [:]
    private var backlogWaiters: [Int: Waiter] = [:]
    private var flushWaiters: [Int: (target: Int, waiter: Waiter)] = [:]
    private var nextWaiterID = 0
    /// The proxies in use; empty until discovery found some.
    private(set) var proxies: [Endpoint] = []

    init(configuration: Configuration, limits: BatchAccumulator.Limits) {
        self.configuration = configuration
        self.accumulator = BatchAccumulator(limits: limits)
        self.backlog = DispatchBacklog(limit: configuration.backlogLimit)
    }

    var isAccepting: Bool {
        if case .running = self.phase { return true }
        return false
    }
    /// Jobs ready, in flight or waiting to retry.
    var jobCount: Int { self.ready.count + self.pending.count + self.awaitingRoute.values.reduce(0) { $0 + $1.count } }
    /// Whether the client closed and every record ended: the dispatcher may stop.
    var isFinished: Bool {
        switch self.phase {
        case .running: false
        case .closing:
            self.ready.isEmpty && self.pending.isEmpty && self.awaitingRoute.isEmpty
                && self.accumulator.heldRecords == self.reportHeldRecords
        // A job the dispatcher was handing over when everything failed ends when it reports.
        case .closed: self.pending.isEmpty
        }
    }

    // MARK: Append

    /// Appends a run of records of one key under one lock, as far as the quota and the backlog allow; they take
    /// the ids `ids`. Actions only when a batch was sealed (the hot path builds none).
    mutating func appendRun(
        _ bodies: ArraySlice<ByteBuffer>,
        key: BatchKey,
        now: ContinuousClock.Instant,
        wallSeconds: UInt32,
        tracker: DeliveryTracker? = nil
    ) -> (ids: Range<UInt64>, blocked: Blocked?, sealed: Sealed?) {
        let first = self.nextRecordID
        guard self.isAccepting else { return (first..<first, .closed, nil) }
        let room = self.backlog.room(ready: self.ready.count)
        guard room > 0 else { return (first..<first, .backlogged, nil) }
        let (appended, sealed) = self.accumulator.appendRun(
            bodies, key: key, firstID: first, now: now, wallSeconds: wallSeconds, tracker: tracker, maxSealed: room
        )
        self.nextRecordID += UInt64(appended)
        let ids = first..<self.nextRecordID
        let blocked: Blocked? = appended == bodies.count ? nil : (sealed.count >= room ? .backlogged : .full)
        guard !sealed.isEmpty else { return (ids, blocked, nil) }
        return (ids, blocked, self.enqueueSealed(sealed, now: now))
    }

    enum AppendResult: Equatable {
        /// Accepted with this id.
        case accepted(UInt64)
        case blocked(Blocked)
        /// The record does not fit a frame of the current limit.
        case tooLarge(limit: Int)
    }

    /// Appends one record, with who observes its outcome. Actions only when a batch was sealed.
    mutating func append(
        _ body: ByteBuffer,
        attributes: String?,
        key: BatchKey,
        now: ContinuousClock.Instant,
        wallSeconds: UInt32,
        observer: RecordObserver = .none
    ) -> (AppendResult, Sealed?) {
        guard self.isAccepting else { return (.blocked(.closed), nil) }
        let recordBytes = BatchAccumulator.blockBytes(bodyLength: body.readableBytes, attributesLength: attributes?.utf8.count)
        // Checked under the lock the append takes anyway: the limit can change with the Manager's answer.
        guard recordBytes <= self.accumulator.limits.maxBytes else {
            return (.tooLarge(limit: self.accumulator.limits.maxBytes), nil)
        }
        guard self.backlog.room(ready: self.ready.count) > 0 else { return (.blocked(.backlogged), nil) }
        let id = self.nextRecordID
        switch self.accumulator.append(body, attributes: attributes, key: key, id: id, now: now, wallSeconds: wallSeconds, observer: observer) {
        case .accepted:
            self.nextRecordID += 1
            return (.accepted(id), nil)
        case .acceptedAndSealed(let batch):
            self.nextRecordID += 1
            return (.accepted(id), self.enqueueSealed([batch], now: now))
        case .full:
            return (.blocked(.full), nil)
        }
    }

    enum Wait: Equatable {
        /// Try again now.
        case retryNow
        /// Parked under this id until resumed (or cancelled with ``cancelWait(_:)``).
        case parked(id: Int)
    }

    /// A sender stopped by `blocked` waits: for quota (`.full`, with the record's `bytes`) or for the dispatcher.
    mutating func wait(for blocked: Blocked, bytes: Int, waiter: Waiter) -> Wait {
        guard self.isAccepting else { return .retryNow }
        let id = self.nextWaiterID
        switch blocked {
        case .closed:
            return .retryNow
        case .full:
            if self.accumulator.hasRoom(forBytes: bytes + BatchAccumulator.recordOverhead) { return .retryNow }
            self.roomWaiters[id] = waiter
        case .backlogged:
            if self.backlog.releasesWaiters(ready: self.ready.count) { return .retryNow }
            self.backlogWaiters[id] = waiter
        }
        self.nextWaiterID += 1
        return .parked(id: id)
    }

    /// A parked sender's task was cancelled: the waiter to resume, unless it was resumed already.
    mutating func cancelWait(_ id: Int) -> Waiter? {
        self.roomWaiters.removeValue(forKey: id) ?? self.backlogWaiters.removeValue(forKey: id)
    }

    // MARK: Dispatch

    /// Pops the next job to send and the proxies it should avoid; `nil` when none is ready. Jobs past their
    /// deadline end on the way. The job stays pending until ``submitted(_:to:now:spentBlock:)`` or
    /// ``notSubmitted(_:spentBlock:)``, so that closing meanwhile still ends it.
    mutating func nextJob(now: ContinuousClock.Instant) -> (next: (job: DeliveryJob, avoiding: Set<Endpoint>)?, actions: Actions) {
        var actions = Actions()
        let next = self.popReady(now: now, actions: &actions)
        return (next, actions)
    }

    private mutating func popReady(now: ContinuousClock.Instant, actions: inout Actions) -> (job: DeliveryJob, avoiding: Set<Endpoint>)? {
        while var job = self.ready.popFirst() {
            if now >= job.deadline {
                self.finish(job, .failure(self.expired(job)), actions: &actions)
                continue
            }
            if job.frame == nil {
                self.nextUniq &+= 1
                job.uniq = self.nextUniq
            }
            // A retry avoids the proxy that holds (or lost) the unacked original, while another is ready; the pool
            // avoids failing proxies itself.
            let avoiding: Set<Endpoint> = job.lastProxy.map { [$0] } ?? []
            job.handingOver = true
            self.pending[job.id] = job
            self.releaseBacklogWaitersIfDue(&actions)
            return (job, avoiding)
        }
        // Expired jobs may have emptied the queue: the senders waiting for it go on.
        self.releaseBacklogWaitersIfDue(&actions)
        return nil
    }

    private mutating func releaseBacklogWaitersIfDue(_ actions: inout Actions) {
        guard !self.backlogWaiters.isEmpty, self.backlog.releasesWaiters(ready: self.ready.count) else { return }
        self.resumeBacklogWaiters(&actions)
    }

    /// The dispatcher submitted `job` (encoded) to a connection to `proxy`. A job that ended meanwhile (its
    /// deadline, the close) fails now, as possibly sent: its bytes were handed to the connection.
    mutating func submitted(_ job: DeliveryJob, to proxy: Endpoint?, now: ContinuousClock.Instant, spentBlock: ByteBuffer?) -> Actions {
        var actions = Actions()
        self.backlog.stalled = false
        if let spentBlock { self.accumulator.recycle(spentBlock) }
        guard let held = self.pending[job.id] else { return actions }
        var job = job
        job.handingOver = false
        job.attempts += 1
        job.lastProxy = proxy
        job.sentAt = now
        if var error = held.endedWhileHandingOver {
            self.pending[job.id] = nil
            job.mayHaveBeenDelivered = true
            error.persistence = .possiblySent
            error.attempts = job.attempts
            error.proxy = proxy
            self.finish(job, .failure(error), actions: &actions)
            actions.wakeDispatcher = true
            return actions
        }
        self.pending[job.id] = job
        return actions
    }

    /// The job ended while the dispatcher handed it over and the dispatcher reports that it did not reach a
    /// connection: it fails with what ended it, as sent or not before.
    private mutating func endIfEndedWhileHandingOver(_ job: DeliveryJob, actions: inout Actions) -> Bool {
        guard let error = self.pending[job.id]?.endedWhileHandingOver else { return false }
        self.pending[job.id] = nil
        self.finish(job, .failure(error), actions: &actions)
        actions.wakeDispatcher = true
        return true
    }

    /// No connection could take `job` (starting, or every proxy down): it goes back to the front of the queue,
    /// without an attempt, and senders may buffer up to the quota meanwhile.
    mutating func notSubmitted(_ job: DeliveryJob, spentBlock: ByteBuffer?) -> Actions {
        var actions = Actions()
        if let spentBlock { self.accumulator.recycle(spentBlock) }
        if self.endIfEndedWhileHandingOver(job, actions: &actions) { return actions }
        guard self.pending.removeValue(forKey: job.id) != nil else { return actions }
        var job = job
        job.handingOver = false
        self.ready.prepend(job)
        self.backlog.stalled = true
        self.resumeBacklogWaiters(&actions)
        return actions
    }

    /// No proxy serves the job's group yet: it waits, apart from the queue (so that other groups go on), until
    /// ``routeReady(_:)`` or its deadline.
    mutating func awaitRoute(_ job: DeliveryJob) -> Actions {
        var actions = Actions()
        if self.endIfEndedWhileHandingOver(job, actions: &actions) { return actions }
        guard var job = self.pending.removeValue(forKey: job.id) else { return actions }
        job.handingOver = false
        if self.routedGroups.contains(job.batch.key.group) {
            self.ready.prepend(job)
            actions.wakeDispatcher = true
            return actions
        }
        job.awaitedRoute = true
        self.awaitingRoute[job.batch.key.group, default: []].append(job)
        return actions
    }

    /// Groups with jobs waiting for proxies.
    var groupsAwaitingRoute: [String] { Array(self.awaitingRoute.keys) }

    /// Proxies for `group` are known now: its waiting jobs go back to the front of the queue, oldest first.
    mutating func routeReady(_ group: String) -> Actions {
        var actions = Actions()
        self.routedGroups.insert(group)
        guard let jobs = self.awaitingRoute.removeValue(forKey: group) else { return actions }
        for job in jobs.reversed() { self.ready.prepend(job) }
        actions.wakeDispatcher = true
        return actions
    }

    /// The job cannot be encoded: it fails.
    mutating func encodingFailed(_ job: DeliveryJob, _ detail: String) -> Actions {
        var actions = Actions()
        guard let job = self.pending.removeValue(forKey: job.id) else { return actions }
        self.finish(job, .failure(job.error(.invalidArgument, "cannot encode the batch: \(detail)", retriable: false)), actions: &actions)
        return actions
    }

    // MARK: Outcomes

    /// A submitted request ended.
    mutating func completed(jobID: Int, outcome: DeliveryOutcome, now: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        // A job failed by the close deadline or cancellation is no longer pending: its late outcome is ignored.
        guard var job = self.pending.removeValue(forKey: jobID) else { return actions }
        let error: DataProxyError
        switch outcome {
        case .acked(let proxyIP):
            let ack = DataProxyAck(
                proxy: job.lastProxy ?? Endpoint(host: "?", port: 0),
                proxyIP: proxyIP,
                latency: now - (job.sentAt ?? now),
                attempts: job.attempts
            )
            self.finish(job, .success(ack), actions: &actions)
            return actions
        case .rejected(let code, let message):
            // A fatal errCode is about the records, not the proxy.
            let retriable = code.disposition == .retriable
            // The proxy read the request and refused it: it did not store it, but an earlier attempt may have.
            var rejected = job.error(.serverRejected, "the proxy answered errCode \(code)", retriable: retriable)
            rejected.serverErrorCode = code
            rejected.serverErrorMessage = message
            error = rejected
        case .transportFailed(let failure):
            if failure.mayHaveBeenDelivered {
                job.mayHaveBeenDelivered = true
            } else {
                // Refused before a byte was written (a connection closing or not ready): not an attempt, so a
                // connection cycling fast cannot use up a record's attempts; the delivery deadline still binds.
                job.attempts -= 1
            }
            var failed = job.error(Self.code(of: failure), "\(failure)", retriable: true)
            failed.underlying = failure
            error = failed
        case .unexpectedReply(let reply):
            job.mayHaveBeenDelivered = true
            error = job.error(.connectionFailed, "unexpected reply \(reply)", retriable: true)
        }
        self.retryOrFail(job, error, now: now, actions: &actions)
        return actions
    }

    /// What a transport failure is reported as.
    static func code(of failure: TransportError) -> DataProxyError.Code {
        switch failure.code {
        case .requestTimeout: .requestTimeout
        case .notConnected, .tooManyRequests, .noEndpoints, .shutDown: .notConnected
        case .connectionClosed, .heartbeatTimeout, .idleTimeout, .connectFailed, .connectTimeout, .unresponsive: .connectionLost
        default: .connectionFailed
        }
    }

    private mutating func retryOrFail(_ job: DeliveryJob, _ error: DataProxyError, now: ContinuousClock.Instant, actions: inout Actions) {
        var job = job
        job.lastError = error
        if !error.isRetriable {
            self.finish(job, .failure(error), actions: &actions)
            return
        }
        if let maxAttempts = self.configuration.maxAttempts, job.attempts >= maxAttempts {
            self.finish(job, .failure(error), actions: &actions)
            return
        }
        if now >= job.deadline {
            self.finish(job, .failure(self.expired(job)), actions: &actions)
            return
        }
        if case .closing(let deadline) = self.phase, now >= deadline {
            self.finish(job, .failure(self.shutDown(job)), actions: &actions)
            return
        }
        let delay = job.backoff.next()
        self.pending[job.id] = job
        self.retries.append((min(now + delay, job.deadline), job.id))
        actions.retried = (job.batch.key, job.attempts, error, delay)
    }

    private func expired(_ job: DeliveryJob) -> DataProxyError {
        if self.proxies.isEmpty || (job.awaitedRoute && job.attempts == 0) {
            return job.error(.noProxies, "no proxy was found within the delivery timeout", retriable: true)
        }
        var error = job.error(.deliveryTimeout, "not acked within the delivery timeout", retriable: true)
        if let last = job.lastError {
            error.detail += "; last failure: \(last.code): \(last.detail)"
            error.serverErrorCode = last.serverErrorCode
            error.underlying = last.underlying
            error.lastFailure = last.code
        }
        return error
    }

    /// `cancelled`: the run was cancelled, which also fails the connections; what they failed with then is no
    /// reason of the records', so no last failure is named.
    private func shutDown(_ job: DeliveryJob, cancelled: Bool = false) -> DataProxyError {
        var error = job.error(.shutDown, "the client closed before an ack", retriable: true)
        guard !cancelled else { return error }
        if let last = job.lastError {
            error.detail += "; last failure: \(last.code): \(last.detail)"
            error.lastFailure = last.code
        } else if job.sentAt == nil {
            // Never handed to a connection: none could take it, or its group never had proxies.
            error.lastFailure = self.proxies.isEmpty || job.awaitedRoute ? .noProxies : .notConnected
        }
        return error
    }

    // MARK: Time

    /// Seals batches past their linger time, requeues retries that are due, fails what is past its deadline,
    /// and at the close deadline fails everything still held.
    mutating func tick(now: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        if case .closing(let deadline) = self.phase, now >= deadline {
            return self.failEverything(now: now)
        }
        self.enqueue(self.accumulator.sealExpired(now: now), now: now, actions: &actions)
        if !self.retries.isEmpty {
            var requeued = false
            self.retries.removeAll { retry in
                guard retry.due <= now else { return false }
                if let job = self.pending.removeValue(forKey: retry.id) {
                    self.ready.append(job)
                    requeued = true
                }
                return true
            }
            if requeued { actions.wakeDispatcher = true }
        }
        // A request past its job's deadline is given up (a late ack is ignored): the deadline binds however long
        // the transport keeps it.
        if !self.pending.isEmpty {
            let retrying = Set(self.retries.map(\.id))
            let expired = self.pending.filter { now >= $0.value.deadline && !retrying.contains($0.key) }
            for (id, job) in expired {
                var job = job
                if job.handingOver {
                    // Whether it reaches a connection is not known yet: it ends when the dispatcher reports.
                    if job.endedWhileHandingOver == nil {
                        let error = self.expired(job)
                        self.pending[id]?.endedWhileHandingOver = error
                    }
                    continue
                }
                self.pending[id] = nil
                if job.sentAt != nil { job.mayHaveBeenDelivered = true }
                self.finish(job, .failure(self.expired(job)), actions: &actions)
            }
        }
        // Jobs of groups without proxies end at their deadline too.
        if !self.awaitingRoute.isEmpty {
            for (group, jobs) in self.awaitingRoute where jobs.contains(where: { now >= $0.deadline }) {
                var kept = Deque<DeliveryJob>()
                for job in jobs {
                    if now >= job.deadline {
                        self.finish(job, .failure(self.expired(job)), actions: &actions)
                    } else {
                        kept.append(job)
                    }
                }
                self.awaitingRoute[group] = kept.isEmpty ? nil : kept
            }
        }
        // Jobs nobody can send (no proxy known yet, or the dispatcher stalled) still end at their deadline.
        if let oldest = self.ready.first, now >= oldest.deadline {
            var kept = Deque<DeliveryJob>()
            while let job = self.ready.popFirst() {
                if now >= job.deadline {
                    self.finish(job, .failure(self.expired(job)), actions: &actions)
                } else {
                    kept.append(job)
                }
            }
            self.ready = kept
            self.resumeBacklogWaiters(&actions)
        }
        return actions
    }

    /// The proxies in use changed (discovery, a refresh).
    mutating func proxiesChanged(_ proxies: [Endpoint]) {
        self.proxies = proxies
    }

    // MARK: Reports

    /// Report sequences were opened or ended; `count` are open now.
    mutating func reportReadersChanged(_ count: Int) {
        self.reportReaders = count
    }

    /// Every open report sequence took (or dropped) the report of a job that held its quota for it.
    mutating func reportsTaken(bytes: Int, records: Int) -> Actions {
        var actions = Actions()
        self.reportHeldRecords -= records
        self.reportHeldBytes -= bytes
        self.accumulator.release(bytes: bytes, records: records)
        actions.heldBytes = self.heldBytesNow()
        self.resumeRoomWaiters(&actions)
        if case .closing = self.phase, self.isFinished { actions.wakeDispatcher = true }
        return actions
    }

    // MARK: Flush, close, cancel

    enum FlushResult {
        case ended
        case parked(id: Int)
    }

    /// Seals every open batch; the caller waits until every job accepted so far ended.
    mutating func flush(waiter: Waiter, now: ContinuousClock.Instant) -> (FlushResult, Actions) {
        var actions = Actions()
        self.enqueue(self.accumulator.sealAll(), now: now, actions: &actions)
        let target = self.nextJobID
        guard let oldest = self.liveJobs.first, oldest < target else { return (.ended, actions) }
        let id = self.nextWaiterID
        self.nextWaiterID += 1
        self.flushWaiters[id] = (target, waiter)
        return (.parked(id: id), actions)
    }

    /// A flush caller's deadline passed or its task was cancelled: the waiter to resume, if still parked.
    mutating func cancelFlush(_ id: Int) -> Waiter? {
        self.flushWaiters.removeValue(forKey: id)?.waiter
    }

    /// Stops accepting records, sends what is buffered and fails what is left at `deadline`.
    mutating func closeRequested(now: ContinuousClock.Instant, deadline: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        guard self.phase == .running else { return actions }
        self.phase = .closing(deadline: deadline)
        self.enqueue(self.accumulator.sealAll(), now: now, actions: &actions)
        self.resumeAllSenders(&actions)
        actions.wakeDispatcher = true
        return actions
    }

    /// The run ended (cancelled, or nothing more will be sent): close with no grace. Every record held ends as
    /// failed, every waiter resumes.
    mutating func cancelled(now: ContinuousClock.Instant) -> Actions {
        self.failEverything(now: now, cancelled: true)
    }

    private mutating func failEverything(now: ContinuousClock.Instant, cancelled: Bool = false) -> Actions {
        var actions = Actions()
        if self.phase == .running { self.phase = .closing(deadline: now) }
        self.enqueue(self.accumulator.sealAll(), now: now, actions: &actions)
        // Submitted jobs may have been written: possibly sent.
        var jobs = Array(self.ready)
        for waiting in self.awaitingRoute.values { jobs += waiting }
        self.awaitingRoute.removeAll()
        var handingOver: [Int: DeliveryJob] = [:]
        for var job in self.pending.values {
            if job.handingOver {
                // It ends when the dispatcher reports whether a connection took it, as sent or not.
                job.endedWhileHandingOver = job.endedWhileHandingOver ?? self.shutDown(job, cancelled: cancelled)
                handingOver[job.id] = job
                continue
            }
            if job.sentAt != nil, !self.retries.contains(where: { $0.id == job.id }) { job.mayHaveBeenDelivered = true }
            jobs.append(job)
        }
        self.ready.removeAll()
        self.pending = handingOver
        self.retries.removeAll()
        for job in jobs.sorted(by: { $0.id < $1.id }) {
            self.finish(job, .failure(self.shutDown(job, cancelled: cancelled)), actions: &actions)
        }
        self.phase = .closed
        self.resumeAllSenders(&actions)
        // Jobs being handed over end when the dispatcher reports; the flushes behind them resume then.
        if self.pending.isEmpty {
            for (_, flush) in self.flushWaiters { actions.resumeFlushes.append((flush.waiter, true)) }
            self.flushWaiters.removeAll()
        }
        actions.wakeDispatcher = true
        return actions
    }

    // MARK: Helpers

    private mutating func heldBytesNow() -> HeldBytes {
        self.heldBytesVersion += 1
        return HeldBytes(bytes: self.accumulator.heldBytes, version: self.heldBytesVersion)
    }

    private mutating func enqueueSealed(_ batches: [SealedBatch], now: ContinuousClock.Instant) -> Sealed {
        var actions = Actions()
        self.enqueue(batches, now: now, actions: &actions)
        return Sealed(batches: actions.sealed, heldBytes: actions.heldBytes ?? self.heldBytesNow())
    }

    /// Turns sealed batches into jobs at the back of the ready queue.
    private mutating func enqueue(_ batches: [SealedBatch], now: ContinuousClock.Instant, actions: inout Actions) {
        guard !batches.isEmpty else { return }
        for batch in batches {
            let job = DeliveryJob(
                id: self.nextJobID,
                batch: batch,
                deadline: batch.createdAt + self.configuration.deliveryTimeout,
                backoff: self.configuration.retryBackoff.makeIterator(random: self.configuration.random)
            )
            self.ready.append(job)
            self.liveJobs.append(self.nextJobID)
            self.nextJobID += 1
            actions.sealed.append((batch.key, batch.recordCount, batch.chargedBytes))
        }
        actions.heldBytes = self.heldBytesNow()
        actions.wakeDispatcher = true
    }

    /// Ends a job: releases its quota (or holds it for its report, when reports are read) and lets senders
    /// waiting for room, and flushes waiting for it, go on.
    private mutating func finish(_ job: DeliveryJob, _ result: Result<DataProxyAck, DataProxyError>, actions: inout Actions) {
        let reportHolds = self.reportReaders > 0
        if reportHolds {
            self.reportHeldRecords += job.batch.recordCount
            self.reportHeldBytes += job.batch.chargedBytes
        } else {
            self.accumulator.release(bytes: job.batch.chargedBytes, records: job.batch.recordCount)
        }
        if self.liveJobs.first == job.id {
            self.liveJobs.removeFirst()
            while let oldest = self.liveJobs.first, self.endedOutOfOrder.remove(oldest) != nil {
                self.liveJobs.removeFirst()
            }
        } else {
            self.endedOutOfOrder.insert(job.id)
        }
        actions.finish.append((job, result, reportHolds))
        actions.heldBytes = self.heldBytesNow()
        if !reportHolds { self.resumeRoomWaiters(&actions) }
        if !self.flushWaiters.isEmpty {
            let oldestLive = self.liveJobs.first ?? self.nextJobID
            for (id, flush) in self.flushWaiters where flush.target <= oldestLive {
                actions.resumeFlushes.append((flush.waiter, true))
                self.flushWaiters[id] = nil
            }
        }
        if case .closing = self.phase, self.isFinished { actions.wakeDispatcher = true }
    }

    private mutating func resumeRoomWaiters(_ actions: inout Actions) {
        guard !self.roomWaiters.isEmpty else { return }
        actions.resumeSenders += self.roomWaiters.values
        self.roomWaiters.removeAll()
    }

    private mutating func resumeBacklogWaiters(_ actions: inout Actions) {
        guard !self.backlogWaiters.isEmpty else { return }
        actions.resumeSenders += self.backlogWaiters.values
        self.backlogWaiters.removeAll()
    }

    private mutating func resumeAllSenders(_ actions: inout Actions) {
        actions.resumeSenders += self.roomWaiters.values
        actions.resumeSenders += self.backlogWaiters.values
        self.roomWaiters.removeAll()
        self.backlogWaiters.removeAll()
    }
}

extension DeliveryStateMachine: Sendable where Waiter: Sendable {}
extension DeliveryStateMachine.Actions: Sendable where Waiter: Sendable {}
