extension DeliveryStateMachine {
    /// The jobs waiting out a retry backoff, with when each is due, in the order their retries were scheduled.
    /// The jobs themselves stay pending (``JobQueue``): this says only which and when.
    ///
    /// Invariants: entries keep the order they were scheduled in; taking the due ones out visits exactly those due
    /// by then, in that order, and leaves the others in it.
    struct RetrySchedule: Sendable {
        private(set) var entries: [(due: ContinuousClock.Instant, id: Int)] = []

        var isEmpty: Bool { self.entries.isEmpty }
        var count: Int { self.entries.count }

        /// Whether a retry of job `id` is scheduled.
        func contains(_ id: Int) -> Bool {
            self.entries.contains { $0.id == id }
        }

        /// The ids of the jobs waiting out a backoff.
        var ids: Set<Int> { Set(self.entries.map(\.id)) }

        /// Schedules a retry of job `id` at `due`, after those scheduled before.
        mutating func schedule(_ id: Int, at due: ContinuousClock.Instant) {
            self.entries.append((due, id))
        }

        /// Takes out every retry due at `now` and hands its job's id, in the order scheduled, to `body` with
        /// `context` (what the retry acts on, passed here so that the caller's state is not captured).
        mutating func removeDue<Context>(
            at now: ContinuousClock.Instant,
            _ context: inout Context,
            _ body: (inout Context, Int) -> Void
        ) {
            guard !self.entries.isEmpty else { return }
            self.entries.removeAll { retry in
                guard retry.due <= now else { return false }
                body(&context, retry.id)
                return true
            }
        }

        /// Drops every scheduled retry (their jobs ended).
        mutating func removeAll() {
            self.entries.removeAll()
        }
    }
}
