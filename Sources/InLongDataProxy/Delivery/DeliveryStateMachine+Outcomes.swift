import DequeModule
import InLongTransport
import InLongWire

/// How jobs end: a request's outcome (an ack, a retry after the job's backoff, a failure), and the time
/// (deadlines, due retries, the close deadline).
extension DeliveryStateMachine {
    // MARK: Outcomes

    /// A submitted request ended.
    mutating func completed(jobID: Int, outcome: DeliveryOutcome, now: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        // A job failed by the close deadline or cancellation is no longer pending: its late outcome is ignored.
        guard var job = self.jobs.takePending(jobID) else { return actions }
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
            rejected.serverResultCode = code
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
        if case .closing(let deadline) = self.phase, now >= deadline.instant {
            self.finish(job, .failure(self.shutDown(job)), actions: &actions)
            return
        }
        let delay = job.backoff.next()
        self.jobs.hold(job)
        self.retries.schedule(job.id, at: min(now + delay, job.deadline))
        actions.retrying((job.batch.key, job.attempts, error, delay))
    }

    /// What a job past its delivery deadline fails with.
    func expired(_ job: DeliveryJob) -> DataProxyError {
        if self.proxies.isEmpty || (job.awaitedRoute && job.attempts == 0) {
            return job.error(.noProxies, "no proxy was found within the delivery timeout", retriable: true)
        }
        var error = job.error(.deliveryTimeout, "not acked within the delivery timeout", retriable: true)
        if let last = job.lastError {
            error.detail += "; last failure: \(last.code): \(last.detail)"
            error.serverResultCode = last.serverResultCode
            error.underlying = last.underlying
            error.lastFailure = last.code
        }
        return error
    }

    /// What a job failed by the close fails with. `cancelled`: the run was cancelled, which also fails the connections; what they failed with then is no
    /// reason of the records', so no last failure is named.
    func shutDown(_ job: DeliveryJob, cancelled: Bool = false) -> DataProxyError {
        var error = job.error(.shutDown, "the client closed before an ack", retriable: true)
        guard !cancelled else { return error }
        if let last = job.lastError {
            error.detail += "; last failure: \(last.code): \(last.detail)"
            error.lastFailure = last.code
        } else if job.sentAt == nil {
            // Never handed to a connection: its group has no proxy, or no connection could take the jobs ahead of
            // it (the dispatcher stalled); otherwise it was only waiting its turn (a close with no grace).
            if self.proxies.isEmpty || (job.awaitedRoute && !self.routes.isRouted(job.batch.key.group)) {
                error.lastFailure = .noProxies
            } else if self.backlog.stalled {
                error.lastFailure = .notConnected
            }
        }
        return error
    }

    // MARK: Time

    /// Seals batches past their linger time, requeues retries that are due, fails what is past its deadline,
    /// and at the close deadline fails everything still held.
    mutating func tick(now: ContinuousClock.Instant) -> Actions {
        var actions = Actions()
        if case .closing(let deadline) = self.phase, now >= deadline.instant {
            return self.failEverything(now: now)
        }
        self.enqueue(self.accumulator.sealExpired(now: now), actions: &actions)
        if !self.retries.isEmpty {
            var requeued = false
            self.retries.removeDue(at: now, &self.jobs) { jobs, id in
                if jobs.requeue(id) { requeued = true }
            }
            if requeued { actions.wakeDispatcher = true }
        }
        // A request past its job's deadline is given up (a late ack is ignored): the deadline binds however long
        // the transport keeps it.
        if self.jobs.pendingCount > 0 {
            let expired = self.jobs.pendingExpired(at: now, except: self.retries.ids)
            for (id, job) in expired {
                var job = job
                if job.handingOver {
                    // Whether it reaches a connection is not known yet: it ends when the dispatcher reports.
                    if job.endedWhileHandingOver == nil {
                        self.jobs.endWhileHandingOver(id, with: self.expired(job))
                    }
                    continue
                }
                _ = self.jobs.takePending(id)
                if job.sentAt != nil { job.mayHaveBeenDelivered = true }
                self.finish(job, .failure(self.expired(job)), actions: &actions)
            }
        }
        // Jobs of groups without proxies end at their deadline too.
        if !self.routes.isEmpty {
            for (group, jobs) in self.routes.waiting where jobs.contains(where: { now >= $0.deadline }) {
                var kept = Deque<DeliveryJob>()
                for job in jobs {
                    if now >= job.deadline {
                        self.finish(job, .failure(self.expired(job)), actions: &actions)
                    } else {
                        kept.append(job)
                    }
                }
                self.routes.replace(group, with: kept)
            }
        }
        // Jobs nobody can send (no proxy known yet, or the dispatcher stalled) still end at their deadline.
        if let oldest = self.jobs.ready.first, now >= oldest.deadline {
            var kept = Deque<DeliveryJob>()
            while let job = self.jobs.popReady() {
                if now >= job.deadline {
                    self.finish(job, .failure(self.expired(job)), actions: &actions)
                } else {
                    kept.append(job)
                }
            }
            self.jobs.restoreReady(kept)
            self.waiters.resumeBacklogWaiters(into: &actions.resumeSenders)
        }
        return actions
    }
}
