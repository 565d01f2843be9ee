import DequeModule

extension DeliveryStateMachine {
    /// The jobs the dispatcher works through: those ready for it, oldest first (a job put back goes first), and
    /// those pending, by id: handed to the dispatcher, submitted, or waiting out a retry backoff.
    ///
    /// Invariants: a job is ready or pending, never both, and at most once; a pending job is filed under its own
    /// id. Jobs of groups without proxies wait elsewhere (``RouteWaitList``).
    struct JobQueue: Sendable {
        /// Jobs waiting for the dispatcher, oldest first.
        private(set) var ready = Deque<DeliveryJob>()
        /// Jobs handed to the dispatcher, submitted, or waiting out a retry backoff, by id.
        private(set) var pending: [Int: DeliveryJob] = [:]
        /// No pending job's deadline is before this: the time's checks look at the jobs only once it passed.
        private var earliestDeadline: FixedInstant?

        var readyCount: Int { self.ready.count }
        var pendingCount: Int { self.pending.count }
        /// Jobs ready or pending.
        var count: Int { self.ready.count + self.pending.count }
        var isEmpty: Bool { self.ready.isEmpty && self.pending.isEmpty }

        // MARK: Ready

        /// Queues a job behind those ready.
        mutating func append(_ job: DeliveryJob) {
            self.ready.append(job)
        }

        /// Puts a job back in front of those ready.
        mutating func prepend(_ job: DeliveryJob) {
            self.ready.prepend(job)
        }

        /// Puts jobs back in front of those ready, in their order.
        mutating func prepend(contentsOf jobs: Deque<DeliveryJob>) {
            for job in jobs.reversed() { self.ready.prepend(job) }
        }

        /// Takes the oldest ready job.
        mutating func popReady() -> DeliveryJob? {
            self.ready.popFirst()
        }

        /// Makes `jobs` the ready jobs; every ready job was taken out before.
        mutating func restoreReady(_ jobs: Deque<DeliveryJob>) {
            assert(self.ready.isEmpty, "ready jobs would be lost")
            self.ready = jobs
        }

        // MARK: Pending

        /// The pending job `id`.
        func pending(_ id: Int) -> DeliveryJob? {
            self.pending[id]
        }

        /// Files `job` as pending under its id, replacing what was filed there.
        mutating func hold(_ job: DeliveryJob) {
            if self.earliestDeadline.map({ job.deadlineInstant < $0 }) ?? true { self.earliestDeadline = job.deadlineInstant }
            self.pending[job.id] = job
        }

        /// Takes the pending job `id` out.
        mutating func takePending(_ id: Int) -> DeliveryJob? {
            self.pending.removeValue(forKey: id)
        }

        /// Notes on the pending job `id` that it ended, with `error`, while the dispatcher hands it over.
        mutating func endWhileHandingOver(_ id: Int, with error: DataProxyError) {
            self.pending[id]?.endedWhileHandingOver = error
        }

        /// Moves the pending job `id` behind those ready (its retry is due); `false` when it is not pending.
        mutating func requeue(_ id: Int) -> Bool {
            guard let job = self.pending.removeValue(forKey: id) else { return false }
            self.ready.append(job)
            return true
        }

        /// The pending jobs past their deadline at `now`, but those in `retrying`.
        mutating func pendingExpired(at now: ContinuousClock.Instant, except retrying: Set<Int>) -> [Int: DeliveryJob] {
            // Called at every tick: the jobs (copied by a scan) are looked at only once the earliest deadline passed.
            guard let earliest = self.earliestDeadline, now >= earliest.instant else { return [:] }
            var expired: [Int: DeliveryJob] = [:]
            var next: FixedInstant?
            for id in self.pending.keys {
                let deadline = self.pending[id]!.deadlineInstant
                if now >= deadline.instant, !retrying.contains(id) { expired[id] = self.pending[id] }
                // Expired jobs count too, until they are taken out (those handed over stay until the dispatcher
                // reports, those waiting to retry until the retry).
                if next.map({ deadline < $0 }) ?? true { next = deadline }
            }
            self.earliestDeadline = next
            return expired
        }

        /// Drops every job, but keeps `pending` as the pending ones.
        mutating func removeAll(keepingPending pending: [Int: DeliveryJob]) {
            self.ready.removeAll()
            self.pending = pending
            self.earliestDeadline = pending.values.map(\.deadlineInstant).min()
        }
    }
}
