import DequeModule

/// Group commit for a sink that acks only what is on disk: writers append under the sink's lock and take a
/// ticket (the file's length after their write); one fsync at a time covers every write before it started, and
/// resumes every writer whose ticket it covers. Writers arriving while a sync runs wait for the next one, which
/// covers all of them: one fsync per group, not per message. Pure: the sink runs the syncs it is told to.
struct GroupCommit<Waiter> {
    /// Bytes written so far: the ticket of the last write.
    private(set) var written: UInt64 = 0
    /// Bytes known durable.
    private(set) var synced: UInt64 = 0
    /// The length the sync under way covers, `nil` when none runs.
    private(set) var syncing: UInt64?
    /// Writers waiting for their ticket to be synced, tickets ascending.
    private var waiters = Deque<(ticket: UInt64, waiter: Waiter)>()

    /// What the sink must do next.
    struct Actions {
        /// Writers whose bytes are durable (or whose sync failed, with `failure`).
        var resume: [Waiter] = []
        /// Start an fsync covering this many bytes.
        var startSync: UInt64?
    }

    var waitingCount: Int { self.waiters.count }

    /// A write of `bytes` was appended to the file; its ticket.
    mutating func wrote(_ bytes: Int) -> UInt64 {
        self.written += UInt64(bytes)
        return self.written
    }

    /// A writer waits for `ticket` to be durable: resumed at once when it is, otherwise when a sync covers it,
    /// starting one if none runs.
    mutating func wait(for ticket: UInt64, _ waiter: Waiter) -> Actions {
        precondition(ticket <= self.written, "a ticket comes from a write")
        guard ticket > self.synced else { return Actions(resume: [waiter]) }
        self.waiters.append((ticket, waiter))
        return Actions(startSync: self.startSyncIfIdle())
    }

    /// The sync started with ``Actions/startSync`` ended. On success every writer it covers is resumed; on
    /// failure they are resumed too (the sink answers them with the error: nothing they wrote is known durable),
    /// and `synced` does not move. Then the next sync starts if writers still wait.
    mutating func syncEnded(succeeded: Bool) -> Actions {
        guard let target = self.syncing else { preconditionFailure("no sync under way") }
        self.syncing = nil
        if succeeded { self.synced = max(self.synced, target) }
        var actions = Actions()
        while let first = self.waiters.first, first.ticket <= target {
            actions.resume.append(self.waiters.removeFirst().waiter)
        }
        actions.startSync = self.startSyncIfIdle()
        return actions
    }

    private mutating func startSyncIfIdle() -> UInt64? {
        guard self.syncing == nil, !self.waiters.isEmpty else { return nil }
        self.syncing = self.written
        return self.written
    }
}

extension GroupCommit: Sendable where Waiter: Sendable {}
extension GroupCommit.Actions: Sendable where Waiter: Sendable {}
