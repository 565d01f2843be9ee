import DequeModule

/// The rules of one ``Instance`` with no I/O, no clock and no lock: when to take budget and read, when to send
/// again what failed retriably, which reads are acked (in file order, once every record of theirs ended) and what
/// to wait for. The driver runs the ``Action`` that ``next(now:)`` returns and reports what came of it.
///
/// It never waits for budget alone: while it holds reads in flight it also wakes for their outcomes and for the
/// next resend, and settles them before it waits again. Only settling gives budget back, so an instance that waited
/// for budget alone while holding acked reads could wait for ever once every instance did the same.
struct InstanceStateMachine<Position, Delivery, Record> {
    struct Limits: Sendable {
        /// Bytes taken from the budget for one read.
        var readSize: Int
        /// Bytes read and not yet acked in this source.
        var maxUnackedBytes: Int
        var pollInterval: Duration
        var resendDelay: Duration
    }

    /// How the instance ended.
    enum End: Equatable {
        /// The source is exhausted and every record ended.
        case released
        /// Stopped (or the client closed): unacked positions stay uncommitted.
        case stopped
    }

    /// What wakes a wait.
    struct Wake {
        /// The first delivery still in flight: its outcome may settle a read.
        var outcome: (id: Int, delivery: Delivery)?
        /// When a resend is due or the source should be looked at again.
        var until: ContinuousClock.Instant?
    }

    enum Action {
        /// Take `bytes` of the budget, or stop waiting for it at `wake` (then ``budgetNotTaken()``, and ``next(now:)`` again).
        case acquire(bytes: Int, wake: Wake)
        /// Read up to `maxBytes` (the budget for them is held), send what came, and report ``read(_:now:)``.
        case read(maxBytes: Int)
        /// Send these records of read `entry` again, then report ``resent(entry:records:result:now:)``.
        case resend(entry: Int, records: [Record])
        /// Nothing to do until `wake`.
        case wait(Wake)
        /// Nothing is in flight and the source had nothing new: ask whether it is exhausted
        /// (``sourceExhausted()``), else wait until `until`.
        case idle(until: ContinuousClock.Instant)
        case finish(End)
    }

    /// What the driver does with the budget and the source after an event, in this order.
    struct Effects {
        /// Positions acked, in order: the source may commit them.
        var acked: [(position: Position, bytes: Int)] = []
        /// Bytes to give back to the budget.
        var release = 0
        /// Bytes to take from the budget without waiting (a read larger than what was taken for it).
        var overdraw = 0
    }

    /// One read on its way.
    private struct Entry {
        var id: Int
        var position: Position
        var bytes: Int
        var deliveries: [(id: Int, delivery: Delivery)]
        var resend: [Record] = []
        var resendAt: ContinuousClock.Instant?
        /// Records handed to the driver to send again, not reported back yet.
        var resending = false

        var isDone: Bool { self.deliveries.isEmpty && self.resend.isEmpty && !self.resending }
    }

    private enum Phase {
        case running
        /// No more reads or resends; what is in flight gets until `deadline`.
        case stopping(deadline: ContinuousClock.Instant?)
        case finished(End)
    }

    let limits: Limits
    private var phase = Phase.running
    private var entries = Deque<Entry>()
    private var nextEntryID = 0
    private var nextDeliveryID = 0
    /// Budget taken for the next read.
    private(set) var heldForRead = 0
    /// Bytes read and not yet acked.
    private(set) var unackedBytes = 0
    /// Reading waits until then: the source had nothing new, or failed.
    private var readAt: ContinuousClock.Instant?
    private var exhausted = false
    /// A wait for budget ended without it while nothing was in flight: look at the source before waiting again.
    private var lookAtSource = false

    init(limits: Limits) {
        self.limits = limits
    }

    /// Reads on their way, oldest first.
    var pendingReads: Int { self.entries.count }
    /// Budget this instance holds: for the next read and for every read not yet acked.
    var budgetHeld: Int { self.heldForRead + self.entries.reduce(0) { $0 + $1.bytes } }

    /// Deliveries in flight, for the driver to look at their outcomes.
    var deliveriesInFlight: [(id: Int, delivery: Delivery)] { self.entries.flatMap(\.deliveries) }

    /// What it still holds that did not end: records owed (to send again) and deliveries still in flight. At a stop
    /// a file's are read again from its committed offset; a source without offsets sets them aside.
    var unended: (owed: [Record], inFlight: [Delivery]) {
        (self.entries.flatMap(\.resend), self.entries.flatMap { $0.deliveries.map(\.delivery) })
    }

    mutating func next(now: ContinuousClock.Instant) -> Action {
        switch self.phase {
        case .finished(let end):
            return .finish(end)
        case .stopping(let deadline):
            guard let first = self.firstInFlight, deadline.map({ now < $0 }) ?? true else {
                self.phase = .finished(.stopped)
                return .finish(.stopped)
            }
            return .wait(Wake(outcome: first, until: deadline))
        case .running:
            break
        }
        if let index = self.entries.firstIndex(where: { !$0.resend.isEmpty && !$0.resending && $0.resendAt.map { $0 <= now } ?? true }) {
            let records = self.entries[index].resend
            self.entries[index].resend = []
            self.entries[index].resendAt = nil
            self.entries[index].resending = true
            return .resend(entry: self.entries[index].id, records: records)
        }
        if self.heldForRead > 0 { return .read(maxBytes: self.heldForRead) }
        if self.entries.isEmpty {
            if self.exhausted {
                self.phase = .finished(.released)
                return .finish(.released)
            }
            if self.lookAtSource {
                // Waited for budget with nothing in flight: the source may be done (a rotated file whose group is
                // stalled gives its slot back instead of holding it for the budget).
                self.lookAtSource = false
                return .idle(until: now)
            }
        }
        let wake = Wake(outcome: self.firstInFlight, until: self.earliest(self.nextResend, self.readAt))
        let mayRead = self.readAt.map { now >= $0 } ?? true
        if mayRead, self.unackedBytes < self.limits.maxUnackedBytes {
            self.readAt = nil
            // With nothing in flight no outcome wakes the wait: it gives up after a poll interval and looks at
            // the source.
            let until = wake.outcome == nil ? self.earliest(self.nextResend, now + self.limits.pollInterval) : self.nextResend
            return .acquire(bytes: self.limits.readSize, wake: Wake(outcome: wake.outcome, until: until))
        }
        if self.entries.isEmpty, let readAt = self.readAt {
            return .idle(until: readAt)
        }
        return .wait(wake)
    }

    /// The budget asked for by ``Action/acquire(bytes:wake:)`` was taken.
    mutating func acquired(_ bytes: Int) -> Effects {
        guard case .running = self.phase else { return Effects(release: bytes) }
        self.heldForRead += bytes
        return Effects()
    }

    /// What the source gave for ``Action/read(maxBytes:)``: nothing new (`nil`), or a read, the deliveries that
    /// carry its records (none when every record was set aside at once) and the records still owed (to be tried
    /// again after the resend delay).
    mutating func read(
        _ data: (position: Position, bytes: Int, deliveries: [Delivery], owed: [Record])?,
        now: ContinuousClock.Instant
    ) -> Effects {
        let held = self.heldForRead
        self.heldForRead = 0
        guard let data else {
            self.readAt = now + self.limits.pollInterval
            return Effects(release: held)
        }
        var effects = Effects()
        if data.bytes > held { effects.overdraw = data.bytes - held } else { effects.release = held - data.bytes }
        var entry = Entry(id: self.nextEntryID, position: data.position, bytes: data.bytes, deliveries: self.numbered(data.deliveries))
        if !data.owed.isEmpty {
            entry.resend = data.owed
            entry.resendAt = now + self.limits.resendDelay
        }
        self.entries.append(entry)
        self.nextEntryID += 1
        self.unackedBytes += data.bytes
        self.ackDone(&effects)
        return effects
    }

    /// The source failed to read: look again later.
    mutating func readFailed(now: ContinuousClock.Instant) -> Effects {
        let held = self.heldForRead
        self.heldForRead = 0
        self.readAt = now + self.limits.pollInterval * 10
        return Effects(release: held)
    }

    /// After ``Action/idle(until:)``: nothing more will come from the source.
    mutating func sourceExhausted() {
        self.exhausted = true
    }

    /// A delivery ended; `resend` are its records that failed retriably (the others were acked or set aside).
    mutating func ended(delivery id: Int, resend: [Record], now: ContinuousClock.Instant) -> Effects {
        var effects = Effects()
        guard let index = self.entries.firstIndex(where: { $0.deliveries.contains { $0.id == id } }) else { return effects }
        self.entries[index].deliveries.removeAll { $0.id == id }
        if !resend.isEmpty {
            self.entries[index].resend += resend
            self.entries[index].resendAt = now + self.limits.resendDelay
        }
        self.ackDone(&effects)
        return effects
    }

    /// The records of ``Action/resend(entry:records:)`` went out with these deliveries, and these are still owed;
    /// `nil` when nothing could be sent (the client closed): they stay owed, and the read is never acked.
    mutating func resent(entry id: Int, records: [Record], result: (deliveries: [Delivery], owed: [Record])?, now: ContinuousClock.Instant) -> Effects {
        var effects = Effects()
        guard let index = self.entries.firstIndex(where: { $0.id == id }) else { return effects }
        self.entries[index].resending = false
        guard let result else {
            self.entries[index].resend = records + self.entries[index].resend
            self.stop(deadline: nil)
            return effects
        }
        self.entries[index].deliveries += self.numbered(result.deliveries)
        if !result.owed.isEmpty {
            self.entries[index].resend += result.owed
            self.entries[index].resendAt = now + self.limits.resendDelay
        }
        self.ackDone(&effects)
        return effects
    }

    /// A wait for budget ended without it.
    mutating func budgetNotTaken() {
        if self.entries.isEmpty { self.lookAtSource = true }
    }

    /// No more reads or resends; what is in flight gets until `deadline` (`nil`: until it ends). A later stop
    /// with a deadline sets one where there was none.
    mutating func stop(deadline: ContinuousClock.Instant?) {
        switch self.phase {
        case .running, .stopping(deadline: nil):
            self.phase = .stopping(deadline: deadline)
        case .stopping, .finished:
            break
        }
    }

    /// The client closed: nothing more can be sent. What is in flight still ends (the close sends it, or fails
    /// it at its deadline), so its outcomes are still taken.
    mutating func sinkClosed() -> Effects {
        let held = self.heldForRead
        self.heldForRead = 0
        self.stop(deadline: nil)
        return Effects(release: held)
    }

    /// The instance ends: the budget it still holds goes back (unacked positions stay uncommitted).
    mutating func finished() -> Effects {
        let effects = Effects(release: self.budgetHeld)
        self.heldForRead = 0
        self.entries.removeAll()
        self.unackedBytes = 0
        return effects
    }

    // MARK: Helpers

    private var firstInFlight: (id: Int, delivery: Delivery)? {
        for entry in self.entries {
            if let first = entry.deliveries.first { return first }
        }
        return nil
    }

    private var nextResend: ContinuousClock.Instant? {
        self.entries.lazy.compactMap(\.resendAt).min()
    }

    private func earliest(_ a: ContinuousClock.Instant?, _ b: ContinuousClock.Instant?) -> ContinuousClock.Instant? {
        switch (a, b) {
        case (nil, let b): b
        case (let a, nil): a
        case (let a?, let b?): min(a, b)
        }
    }

    private mutating func numbered(_ deliveries: [Delivery]) -> [(id: Int, delivery: Delivery)] {
        deliveries.map { delivery in
            defer { self.nextDeliveryID += 1 }
            return (self.nextDeliveryID, delivery)
        }
    }

    /// Acks reads at the front whose records all ended.
    private mutating func ackDone(_ effects: inout Effects) {
        while let first = self.entries.first, first.isDone {
            self.entries.removeFirst()
            self.unackedBytes -= first.bytes
            effects.acked.append((first.position, first.bytes))
            effects.release += first.bytes
        }
    }
}
