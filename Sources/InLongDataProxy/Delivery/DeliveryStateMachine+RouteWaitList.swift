import DequeModule

extension DeliveryStateMachine {
    /// The jobs of groups with no proxy yet (discovered on first use), apart from the queue so that other groups
    /// go on, by group, oldest first; and the groups whose proxies are known.
    ///
    /// Invariants: no group holds an empty list; a routed group never holds a list (a job of one is handed back
    /// instead, since its route may have come between the dispatcher's look and the park); a group once routed
    /// stays routed; every job held has `awaitedRoute` set.
    struct RouteWaitList: Sendable {
        /// Jobs waiting for their group's proxies, by group, oldest first.
        private(set) var waiting: [String: Deque<DeliveryJob>] = [:]
        /// Groups whose proxies are known.
        private var routed: Set<String> = []

        var isEmpty: Bool { self.waiting.isEmpty }
        /// Jobs waiting, in every group.
        var count: Int { self.waiting.values.reduce(0) { $0 + $1.count } }
        /// Groups with jobs waiting.
        var groups: [String] { Array(self.waiting.keys) }

        /// Whether `group`'s proxies are known.
        func isRouted(_ group: String) -> Bool {
            self.routed.contains(group)
        }

        /// Parks `job` behind the others of its group, marked as having waited for a route; hands it back
        /// (unmarked) when its group is routed already.
        mutating func park(_ job: DeliveryJob) -> DeliveryJob? {
            let group = job.batch.key.group
            guard !self.routed.contains(group) else { return job }
            var job = job
            job.awaitedRoute = true
            self.waiting[group, default: []].append(job)
            return nil
        }

        /// `group`'s proxies are known now: it stays routed, and its waiting jobs are taken out, oldest first.
        mutating func routeReady(_ group: String) -> Deque<DeliveryJob>? {
            self.routed.insert(group)
            return self.waiting.removeValue(forKey: group)
        }

        /// Makes `jobs` (what was kept of its list) `group`'s waiting jobs; none drops the group.
        mutating func replace(_ group: String, with jobs: Deque<DeliveryJob>) {
            assert(!self.routed.contains(group), "a routed group holds no jobs")
            self.waiting[group] = jobs.isEmpty ? nil : jobs
        }

        /// Takes every waiting job out, group after group (oldest first within one), onto `jobs`; the groups
        /// routed stay so.
        mutating func removeAll(into jobs: inout [DeliveryJob]) {
            for waiting in self.waiting.values { jobs += waiting }
            self.waiting.removeAll()
        }
    }
}
