import InLongTransport
import NIOCore

/// The dispatcher's events: it takes the next job, and reports whether a connection took it, none could, or its
/// group has no proxy yet.
extension DeliveryStateMachine {
    /// Pops the next job to send and the proxies it should avoid; `nil` when none is ready. Jobs past their
    /// deadline end on the way. The job stays pending until ``submitted(_:to:now:spentBlock:)`` or
    /// ``notSubmitted(_:spentBlock:)``, so that closing meanwhile still ends it.
    mutating func nextJob(now: ContinuousClock.Instant) -> (next: (job: DeliveryJob, avoiding: Set<Endpoint>)?, actions: Actions) {
        var actions = Actions()
        let next = self.popReady(now: now, actions: &actions)
        return (next, actions)
    }

    private mutating func popReady(now: ContinuousClock.Instant, actions: inout Actions) -> (job: DeliveryJob, avoiding: Set<Endpoint>)? {
        while var job = self.jobs.popReady() {
            if now >= job.deadline {
                self.finish(job, .failure(self.expired(job)), actions: &actions)
                continue
            }
            if job.frame == nil {
                self.nextUniq &+= 1
                job.uniq = self.nextUniq
            }
            // A retry avoids the proxy that holds (or lost) the unacked original, while another is ready; the
            // router avoids failing proxies itself.
            let avoiding: Set<Endpoint> = job.lastProxy.map { [$0] } ?? []
            job.handingOver = true
            self.jobs.hold(job)
            self.releaseBacklogWaitersIfDue(&actions)
            return (job, avoiding)
        }
        // Expired jobs may have emptied the queue: the senders waiting for it go on.
        self.releaseBacklogWaitersIfDue(&actions)
        return nil
    }

    mutating func releaseBacklogWaitersIfDue(_ actions: inout Actions) {
        guard self.waiters.hasBacklogWaiters, self.backlog.releasesWaiters(ready: self.backlogReady) else { return }
        self.waiters.resumeBacklogWaiters(into: &actions.resumeSenders)
    }

    /// The dispatcher submitted `job` (encoded) to a connection to `proxy`. A job that ended meanwhile (its
    /// deadline, the close) fails now, as possibly sent: its bytes were handed to the connection.
    mutating func submitted(_ job: DeliveryJob, to proxy: Endpoint?, now: ContinuousClock.Instant, spentBlock: ByteBuffer?) -> Actions {
        var actions = Actions()
        self.backlog.stalled = false
        if let spentBlock { self.accumulator.recycle(spentBlock) }
        guard let held = self.jobs.pending(job.id) else { return actions }
        var job = job
        job.handingOver = false
        job.attempts += 1
        job.lastProxy = proxy
        job.sentAt = now
        if var error = held.endedWhileHandingOver {
            _ = self.jobs.takePending(job.id)
            job.mayHaveBeenDelivered = true
            error.persistence = .possiblySent
            error.attempts = job.attempts
            error.proxy = proxy
            // A connection took it after all: no "never got a connection" reason stands, only a real failure.
            error.lastFailure = job.lastError?.code
            self.finish(job, .failure(error), actions: &actions)
            actions.wakeDispatcher = true
            return actions
        }
        self.jobs.hold(job)
        return actions
    }

    /// The transport took `job` for `proxy` and gave up before writing a byte of it (HTTP: no connection could be
    /// made): an attempt that failed as not sent, retried as `outcome` says. A job that ended meanwhile (its
    /// deadline, the close) fails now with what ended it, as not sent: nothing reached a proxy.
    mutating func failedBeforeWriting(_ job: DeliveryJob, to proxy: Endpoint?, outcome: DeliveryOutcome, now: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        if self.endIfEndedWhileHandingOver(job, actions: &actions) { return actions }
        // Not ended: the job is held as submitted (no actions), then completed, in one event so that no tick sees
        // it submitted in between.
        _ = self.submitted(job, to: proxy, now: now, spentBlock: nil)
        return self.completed(jobID: job.id, outcome: outcome, now: now)
    }

    /// The job ended while the dispatcher handed it over and the dispatcher reports that it did not reach a
    /// connection: it fails with what ended it, as sent or not before.
    private mutating func endIfEndedWhileHandingOver(_ job: DeliveryJob, actions: inout Actions) -> Bool {
        guard let error = self.jobs.pending(job.id)?.endedWhileHandingOver else { return false }
        _ = self.jobs.takePending(job.id)
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
        guard self.jobs.takePending(job.id) != nil else { return actions }
        var job = job
        job.handingOver = false
        self.jobs.prepend(job)
        self.backlog.stalled = true
        self.waiters.resumeBacklogWaiters(into: &actions.resumeSenders)
        return actions
    }

    /// No proxy serves the job's group yet: it waits, apart from the queue (so that other groups go on), until
    /// ``routeReady(_:)`` or its deadline.
    mutating func awaitRoute(_ job: DeliveryJob) -> Actions {
        var actions = Actions()
        if self.endIfEndedWhileHandingOver(job, actions: &actions) { return actions }
        guard var job = self.jobs.takePending(job.id) else { return actions }
        job.handingOver = false
        if let routed = self.routes.park(job) {
            self.jobs.prepend(routed)
            actions.wakeDispatcher = true
        }
        return actions
    }

    /// Groups with jobs waiting for proxies.
    var groupsAwaitingRoute: [String] { self.routes.groups }

    /// Proxies for `group` are known now: its waiting jobs go back to the front of the queue, oldest first.
    mutating func routeReady(_ group: String) -> Actions {
        var actions = Actions()
        guard let jobs = self.routes.routeReady(group) else { return actions }
        self.jobs.prepend(contentsOf: jobs)
        actions.wakeDispatcher = true
        return actions
    }

    // MARK: Encoders

    /// The next sealed job to encode beside the dispatcher, with its request id given; `nil` when none waits or
    /// as many as the configuration allows are started. Reported with ``encoded(jobID:frame:)`` or
    /// ``encodingFailed(jobID:_:)``.
    mutating func nextEncoding() -> DeliveryJob? {
        guard self.encodes.isEnabled else { return nil }
        let uniq = self.nextUniq &+ 1
        guard let job = self.encodes.start(uniq: uniq) else { return nil }
        self.nextUniq = uniq
        return job
    }

    /// An encoder encoded job `jobID` into `frame`: its block goes back to the accumulator, and the jobs now
    /// encoded in seal order become ready. A job that ended meanwhile (everything failed) is forgotten.
    mutating func encoded(jobID: Int, frame: ByteBuffer) -> Actions {
        var actions = Actions()
        guard let (block, ready) = self.encodes.encoded(jobID, frame: frame) else { return actions }
        self.accumulator.recycle(block)
        for job in ready { self.jobs.append(job) }
        // Jobs are ready, or a place to start the next encoding is free: either is the dispatcher's to act on.
        actions.wakeDispatcher = true
        return actions
    }

    /// An encoder could not encode job `jobID`: it fails; the jobs sealed after it go on.
    mutating func encodingFailed(jobID: Int, _ detail: String) -> Actions {
        var actions = Actions()
        guard let (job, ready) = self.encodes.remove(jobID) else { return actions }
        for job in ready { self.jobs.append(job) }
        self.finish(job, .failure(job.error(.invalidArgument, "cannot encode the batch: \(detail)", retriable: false)), actions: &actions)
        self.releaseBacklogWaitersIfDue(&actions)
        actions.wakeDispatcher = true
        return actions
    }

    /// The job cannot be encoded: it fails.
    mutating func encodingFailed(_ job: DeliveryJob, _ detail: String) -> Actions {
        var actions = Actions()
        guard let job = self.jobs.takePending(job.id) else { return actions }
        self.finish(job, .failure(job.error(.invalidArgument, "cannot encode the batch: \(detail)", retriable: false)), actions: &actions)
        return actions
    }
}
