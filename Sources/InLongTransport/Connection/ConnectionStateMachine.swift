public import DequeModule
public import NIOCore

/// The per-channel logic of a persistent connection: pending requests by key, the in-flight cap, writability,
/// request timeouts, heartbeats and dead-peer detection, draining and close. Pure: the channel handler feeds it
/// events with the current time and performs the returned actions. `Pending` is whatever the driver needs to
/// complete a request (a promise, in production).
///
/// A request's timeout runs from the moment its frame is written to the socket (``frameWritten(now:)``), not from
/// its submission: on a slow link a request may wait behind others for a long time and still be delivered. Waiting
/// is bounded separately by ``Configuration/queueTimeout``.
@usableFromInline
struct ConnectionStateMachine<Key: Hashable, Pending> {
    @usableFromInline
    struct Configuration: Sendable {
        /// Requests awaiting a response at once; more wait in the queue.
        @usableFromInline var maxInFlight: Int
        /// Requests (and sends) waiting for an in-flight slot or writability; more are rejected.
        @usableFromInline var maxQueued: Int
        /// A heartbeat is sent after this long without writing; `nil` disables heartbeats.
        @usableFromInline var heartbeatInterval: TimeAmount?
        /// The connection is declared dead after this long without reading a byte; `nil` disables the check.
        @usableFromInline var readTimeout: TimeAmount?
        /// The connection is closed (to be reopened) after this long without a request or send, heartbeats
        /// aside, when nothing is pending; `nil` keeps idle connections.
        @usableFromInline var maxIdleTime: TimeAmount? = nil
        /// A queued item not handed to the channel this long after its submission fails unwritten; frames the
        /// channel holds while the socket takes none of them for this long close the connection as unresponsive.
        /// `nil`: items wait until written, cancelled or the connection closes.
        @usableFromInline var queueTimeout: TimeAmount? = nil
        /// This many request timeouts in a row, with no response between, close the connection as unresponsive;
        /// `nil` never does.
        @usableFromInline var recycleAfterTimeouts: Int? = nil
    }

    @usableFromInline
    enum Item {
        case request(Key, Pending)
        case send(Pending)
    }

    @usableFromInline
    enum Action {
        case none
        /// Write these items, in order, then flush once.
        case write([Item])
        /// Write this item (a submission that starts at once: no array to allocate).
        case writeOne(Item)
        /// Fail the item with the error (it was never written).
        case reject(Item, TransportError)
        case succeed(Pending)
        /// A heartbeat reply arrived; the round-trip time is known when the heartbeat was sent by us.
        case heartbeatReplied(rtt: TimeAmount?)
        case unsolicited
        /// A response whose key matches no pending request (late, after a timeout, or bogus).
        case unmatchedResponse
        case fail(Pending, TransportError)
        /// Write a heartbeat, then schedule the idle check at the deadline.
        case sendHeartbeat(nextCheck: NIODeadline)
        case scheduleIdleCheck(NIODeadline)
        /// The request's frame was written: its timeout fires at the deadline (unless it completes first).
        case scheduleRequestTimeout(Key, NIODeadline)
        /// Fail these items with a request timeout (they waited in the queue too long and were never written),
        /// then schedule the idle check at the deadline.
        case expire([Item], nextCheck: NIODeadline)
        /// Close the channel; pending requests are failed by the later ``closed(error:)``.
        case close(TransportError)
    }

    @usableFromInline
    enum State {
        case active
        /// No new requests; close once the last in-flight request completes.
        case draining
        /// A close was asked for (the connection is unresponsive): no new requests, pending ones fail at close.
        case closing
        case closed
    }

    /// A request handed to the channel.
    @usableFromInline
    struct InFlight {
        @usableFromInline var pending: Pending
        @usableFromInline var timeout: TimeAmount?
        /// Tells this request from an earlier one with the same key whose frame may still be on its way.
        @usableFromInline var sequence: UInt64
        /// When it times out: set once its frame is written (``frameWritten(now:)``), if it has a timeout. Kept
        /// here, rather than in a table of the driver's, so that a request costs one table, not two.
        @usableFromInline var deadline: NIODeadline? = nil

        @inlinable
        init(pending: Pending, timeout: TimeAmount?, sequence: UInt64) {
            self.pending = pending
            self.timeout = timeout
            self.sequence = sequence
        }
    }

    /// An item waiting for an in-flight slot or for writability.
    @usableFromInline
    struct Queued {
        @usableFromInline var item: Item
        @usableFromInline var timeout: TimeAmount?
        @usableFromInline var submittedAt: NIODeadline

        @inlinable
        init(item: Item, timeout: TimeAmount?, submittedAt: NIODeadline) {
            self.item = item
            self.timeout = timeout
            self.submittedAt = submittedAt
        }
    }

    /// An item handed to the channel whose write has not completed; `key` is `nil` for a send.
    @usableFromInline
    struct Unwritten {
        @usableFromInline var key: Key?
        @usableFromInline var sequence: UInt64

        @inlinable
        init(key: Key?, sequence: UInt64) {
            self.key = key
            self.sequence = sequence
        }
    }

    @usableFromInline let configuration: Configuration
    @usableFromInline var state: State = .active
    @usableFromInline var inFlight: [Key: InFlight] = [:]
    @usableFromInline var queue: Deque<Queued> = []
    /// The keys of queued requests, so a duplicate is found without scanning the queue.
    @usableFromInline var queuedKeys: Set<Key> = []
    @usableFromInline var isWritable = true
    @usableFromInline var lastRead: NIODeadline
    @usableFromInline var lastWrite: NIODeadline
    /// The last write of the application's (a heartbeat is not one).
    @usableFromInline var lastUse: NIODeadline
    @usableFromInline var heartbeatSentAt: NIODeadline?
    /// Items handed to the channel, in order, until their writes complete (writes complete in order).
    @usableFromInline var unwritten: Deque<Unwritten> = []
    @usableFromInline var nextSequence: UInt64 = 0
    /// The last time the socket took a frame, or the first frame began to wait for it when none was waiting.
    @usableFromInline var writeProgressAt: NIODeadline
    /// Request timeouts since the last response.
    @usableFromInline var consecutiveTimeouts = 0
    /// Draining also waits for the handlers of the peer's requests under way, so that their answers are written.
    @usableFromInline var awaitingInboundHandlers = false

    @inlinable
    init(configuration: Configuration, now: NIODeadline) {
        self.configuration = configuration
        self.lastRead = now
        self.lastWrite = now
        self.lastUse = now
        self.writeProgressAt = now
    }

    @inlinable var queuedCount: Int { self.queue.count }
    @inlinable
    var isDraining: Bool { if case .draining = self.state { true } else { false } }

    // MARK: Outbound

    /// A request was submitted; `timeout` (none if `nil`) will run from when its frame is written.
    @inlinable
    mutating func requestSubmitted(key: Key, pending: Pending, timeout: TimeAmount? = nil, now: NIODeadline) -> Action {
        self.submit(.request(key, pending), timeout: timeout, now: now)
    }

    @inlinable
    mutating func sendSubmitted(pending: Pending, now: NIODeadline) -> Action {
        self.submit(.send(pending), timeout: nil, now: now)
    }

    @inlinable
    mutating func submit(_ item: Item, timeout: TimeAmount?, now: NIODeadline) -> Action {
        switch self.state {
        case .draining, .closing, .closed:
            return .reject(item, TransportError(.notConnected))
        case .active:
            break
        }
        if case .request(let key, _) = item, self.inFlight[key] != nil || self.queuedKeys.contains(key) {
            return .reject(item, TransportError(.duplicateKey))
        }
        if self.queue.isEmpty, self.isWritable, self.canStart(item) {
            self.start(item, timeout: timeout, now: now)
            return .writeOne(item)
        }
        guard self.queue.count < self.configuration.maxQueued else {
            return .reject(item, TransportError(.tooManyRequests))
        }
        self.queue.append(Queued(item: item, timeout: timeout, submittedAt: now))
        if case .request(let key, _) = item { self.queuedKeys.insert(key) }
        return .none
    }

    @inlinable
    func canStart(_ item: Item) -> Bool {
        switch item {
        case .request: self.inFlight.count < self.configuration.maxInFlight
        case .send: true
        }
    }

    /// Hands the item to the channel: the driver writes it, and reports its write with ``frameWritten(now:)``.
    @inlinable
    mutating func start(_ item: Item, timeout: TimeAmount?, now: NIODeadline) {
        let sequence = self.nextSequence
        self.nextSequence &+= 1
        if self.unwritten.isEmpty { self.writeProgressAt = now }
        switch item {
        case .request(let key, let pending):
            self.inFlight[key] = InFlight(pending: pending, timeout: timeout, sequence: sequence)
            self.unwritten.append(Unwritten(key: key, sequence: sequence))
        case .send:
            self.unwritten.append(Unwritten(key: nil, sequence: sequence))
        }
        self.lastWrite = now
        self.lastUse = now
    }

    /// Moves queued items to the wire while slots and writability allow, keeping their order.
    @inlinable
    mutating func dequeueStartable(now: NIODeadline) -> [Item] {
        var started: [Item] = []
        while self.isWritable, let first = self.queue.first, self.canStart(first.item) {
            self.queue.removeFirst()
            if case .request(let key, _) = first.item { self.queuedKeys.remove(key) }
            self.start(first.item, timeout: first.timeout, now: now)
            started.append(first.item)
        }
        return started
    }

    /// The oldest item handed to the channel has been written to the socket: a request's timeout starts now.
    @inlinable
    mutating func frameWritten(now: NIODeadline) -> Action {
        guard let frame = self.unwritten.popFirst() else { return .none }
        self.writeProgressAt = now
        // One lookup: the entry is updated through its index.
        guard let key = frame.key, let index = self.inFlight.index(forKey: key) else { return .none }
        let entry = self.inFlight.values[index]
        guard entry.sequence == frame.sequence, let timeout = entry.timeout else { return .none }
        let deadline = now + timeout
        self.inFlight.values[index].deadline = deadline
        return .scheduleRequestTimeout(key, deadline)
    }

    /// The requests whose deadlines have passed at `now`, earliest deadline first (the driver times them out
    /// with ``requestTimedOut(key:now:)``).
    @inlinable
    func requestsPastDeadline(now: NIODeadline) -> [Key] {
        var expired: [(key: Key, deadline: NIODeadline)] = []
        for (key, entry) in self.inFlight {
            if let deadline = entry.deadline, deadline <= now { expired.append((key, deadline)) }
        }
        return expired.sorted { $0.deadline < $1.deadline }.map(\.key)
    }

    /// The earliest deadline of a request in flight, for the driver's timer.
    @inlinable
    var earliestRequestDeadline: NIODeadline? {
        self.inFlight.values.lazy.compactMap(\.deadline).min()
    }

    @inlinable
    mutating func writabilityChanged(isWritable: Bool, now: NIODeadline) -> Action {
        self.isWritable = isWritable
        guard isWritable, case .active = self.state else { return .none }
        let items = self.dequeueStartable(now: now)
        return items.isEmpty ? .none : .write(items)
    }

    /// A heartbeat was written by the driver.
    @inlinable
    mutating func heartbeatWritten(now: NIODeadline) {
        self.lastWrite = now
        self.heartbeatSentAt = now
    }

    // MARK: Inbound

    @inlinable
    mutating func bytesRead(now: NIODeadline) {
        self.lastRead = now
    }

    /// A response for `key` arrived. Returns the completion plus any queued items that can now start.
    ///
    /// Any response, even a late one that matches nothing, shows the peer answers requests: the count of
    /// consecutive timeouts starts over. Heartbeat replies do not: a peer that answers heartbeats while requests
    /// go unanswered (a stuck request path behind a live socket) stays suspect.
    @inlinable
    mutating func responseReceived(key: Key, now: NIODeadline) -> (Action, Action) {
        self.consecutiveTimeouts = 0
        guard let entry = self.inFlight.removeValue(forKey: key) else { return (.unmatchedResponse, .none) }
        return (.succeed(entry.pending), self.afterSlotFreed(now: now))
    }

    @inlinable
    mutating func heartbeatReplyReceived(now: NIODeadline) -> Action {
        defer { self.heartbeatSentAt = nil }
        return .heartbeatReplied(rtt: self.heartbeatSentAt.map { now - $0 })
    }

    @inlinable
    mutating func afterSlotFreed(now: NIODeadline) -> Action {
        switch self.state {
        case .active:
            let items = self.dequeueStartable(now: now)
            return items.isEmpty ? .none : .write(items)
        case .draining:
            return self.drainedAction()
        case .closing, .closed:
            return .none
        }
    }

    /// While draining: close once nothing is in flight and no inbound handler is under way.
    @inlinable
    func drainedAction() -> Action {
        self.inFlight.isEmpty && !self.awaitingInboundHandlers ? .close(TransportError(.shutDown)) : .none
    }

    // MARK: Timers

    /// The request's timeout fired (it was written, so it may have been delivered). Enough of these in a row
    /// close the connection as unresponsive, for the driver to open a fresh one.
    @inlinable
    mutating func requestTimedOut(key: Key, now: NIODeadline) -> (Action, Action) {
        guard let entry = self.inFlight.removeValue(forKey: key) else { return (.none, .none) }
        let failure = Action.fail(entry.pending, TransportError(.requestTimeout, mayHaveBeenDelivered: true))
        self.consecutiveTimeouts += 1
        if let limit = self.configuration.recycleAfterTimeouts, self.consecutiveTimeouts >= limit {
            switch self.state {
            case .active, .draining:
                self.state = .closing
                return (failure, .close(TransportError(.unresponsive)))
            case .closing, .closed:
                break
            }
        }
        return (failure, self.afterSlotFreed(now: now))
    }

    /// The awaiting task was cancelled. `isTheRequest` tells the task's request from a later one that took its key
    /// (the cancellation can arrive after its request ended).
    @inlinable
    mutating func requestCancelled(key: Key, now: NIODeadline, isTheRequest: (Pending) -> Bool = { _ in true }) -> (Action, Action) {
        let error = TransportError(.cancelled)
        if let entry = self.inFlight[key], isTheRequest(entry.pending) {
            self.inFlight[key] = nil
            return (.fail(entry.pending, error.delivered(true)), self.afterSlotFreed(now: now))
        }
        if self.queuedKeys.contains(key), let index = self.queue.firstIndex(where: { $0.item.key == key }),
            case .request(_, let pending) = self.queue[index].item, isTheRequest(pending)
        {
            self.queuedKeys.remove(key)
            self.queue.remove(at: index)
            return (.fail(pending, error.delivered(false)), .none)
        }
        return (.none, .none)
    }

    /// The idle timer fired: declare the peer dead or the socket stuck, fail items that waited too long in the
    /// queue, send a heartbeat, or wait until the next deadline.
    @inlinable
    mutating func idleCheck(now: NIODeadline) -> Action {
        switch self.state {
        case .closing, .closed:
            return .none
        case .active, .draining:
            if let readTimeout = self.configuration.readTimeout, now - self.lastRead >= readTimeout {
                return .close(TransportError(.heartbeatTimeout))
            }
            if let queueTimeout = self.configuration.queueTimeout {
                // Frames wait in the channel and the socket took none for that long: the peer reads nothing.
                if !self.unwritten.isEmpty, now - self.writeProgressAt >= queueTimeout {
                    self.state = .closing
                    return .close(TransportError(.unresponsive))
                }
                // The queue is in submission order, so the expired items are at its front.
                var expired: [Item] = []
                while let first = self.queue.first, now - first.submittedAt >= queueTimeout {
                    self.queue.removeFirst()
                    if case .request(let key, _) = first.item { self.queuedKeys.remove(key) }
                    expired.append(first.item)
                }
                if !expired.isEmpty {
                    return .expire(expired, nextCheck: self.nextIdleDeadline(assumingWriteAt: self.lastWrite, now: now))
                }
            }
            if let maxIdleTime = self.configuration.maxIdleTime, case .active = self.state, now - self.lastUse >= maxIdleTime,
                self.inFlight.isEmpty, self.queue.isEmpty
            {
                // Requests submitted from now on are refused unwritten rather than written to a closing channel.
                self.state = .draining
                return .close(TransportError(.idleTimeout))
            }
            if let interval = self.configuration.heartbeatInterval, now - self.lastWrite >= interval {
                return .sendHeartbeat(nextCheck: self.nextIdleDeadline(assumingWriteAt: now, now: now))
            }
            return self.nextIdleCheck(now: now)
        }
    }

    /// When the idle timer should fire next.
    @inlinable
    func nextIdleCheck(now: NIODeadline) -> Action {
        let configuration = self.configuration
        guard
            configuration.readTimeout != nil || configuration.heartbeatInterval != nil
                || configuration.maxIdleTime != nil || configuration.queueTimeout != nil
        else {
            return .none
        }
        return .scheduleIdleCheck(self.nextIdleDeadline(assumingWriteAt: self.lastWrite, now: now))
    }

    @inlinable
    func nextIdleDeadline(assumingWriteAt write: NIODeadline, now: NIODeadline) -> NIODeadline {
        var deadline = NIODeadline.distantFuture
        if let readTimeout = self.configuration.readTimeout { deadline = min(deadline, self.lastRead + readTimeout) }
        if let interval = self.configuration.heartbeatInterval { deadline = min(deadline, write + interval) }
        if let maxIdleTime = self.configuration.maxIdleTime {
            // Past due while requests are pending: look again a full period later, not in a tight loop.
            let due = self.lastUse + maxIdleTime
            deadline = min(deadline, due > now ? due : now + maxIdleTime)
        }
        if let queueTimeout = self.configuration.queueTimeout {
            // At least once a period, so that an item that begins to wait after this check is seen in time (its
            // own deadline is later than the next check's, which then schedules it exactly).
            deadline = min(deadline, now + queueTimeout)
            if !self.unwritten.isEmpty { deadline = min(deadline, self.writeProgressAt + queueTimeout) }
            if let first = self.queue.first { deadline = min(deadline, first.submittedAt + queueTimeout) }
        }
        return deadline
    }

    // MARK: Lifecycle

    /// Stop taking requests; close once in-flight requests complete and, with `awaitingInboundHandlers`, once
    /// ``inboundHandlersFinished()`` reports that the peer's requests under way are answered. Queued items that
    /// never started fail now.
    @inlinable
    mutating func drainRequested(awaitingInboundHandlers: Bool = false) -> ([Item], Action) {
        guard case .active = self.state else { return ([], .none) }
        self.state = .draining
        self.awaitingInboundHandlers = awaitingInboundHandlers
        let unstarted = self.queue.map(\.item)
        self.queue.removeAll()
        self.queuedKeys.removeAll()
        return (unstarted, self.drainedAction())
    }

    /// The handlers of the peer's requests have all ended (their answers are handed to the channel).
    @inlinable
    mutating func inboundHandlersFinished() -> Action {
        guard case .draining = self.state, self.awaitingInboundHandlers else { return .none }
        self.awaitingInboundHandlers = false
        return self.drainedAction()
    }

    /// The channel closed: everything still pending fails. In-flight requests may have been delivered.
    @inlinable
    mutating func closed() -> (inFlight: [Pending], queued: [Item]) {
        self.state = .closed
        let inFlight = self.inFlight.values.map(\.pending)
        let queued = self.queue.map(\.item)
        self.inFlight.removeAll()
        self.queue.removeAll()
        self.queuedKeys.removeAll()
        self.unwritten.removeAll()
        return (inFlight, queued)
    }
}

extension ConnectionStateMachine.Item {
    @inlinable
    var key: Key? {
        if case .request(let key, _) = self { key } else { nil }
    }

    @inlinable
    var pending: Pending {
        switch self {
        case .request(_, let pending), .send(let pending): pending
        }
    }
}
