/// How far senders may run ahead of the dispatcher. Sealed batches wait for the dispatcher as raw record blocks,
/// their largest form: a sender faster than compression would fill the whole quota with them. So senders wait
/// once `limit` batches are ready, and go on when half are taken. While no connection can take a batch, the
/// dispatcher is stalled rather than behind: senders then buffer up to the quota, as in any outage.
struct DispatchBacklog {
    /// Ready batches at which senders wait; `Int.max` for none (the fail-fast buffer policy).
    let limit: Int
    /// Whether the dispatcher's last attempt found no connection ready.
    var stalled = false

    /// How many more batches senders may seal now.
    func room(ready: Int) -> Int {
        self.stalled ? .max : max(self.limit - ready, 0)
    }

    /// Whether waiting senders may go on.
    func releasesWaiters(ready: Int) -> Bool {
        self.stalled || ready <= self.limit / 2
    }
}
