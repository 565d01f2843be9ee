import DequeModule
import NIOCore

/// The per-channel logic of a persistent connection: pending requests by key, the in-flight cap, writability,
/// heartbeats and dead-peer detection, draining and close. Pure: the channel handler feeds it events with the
/// current time and performs the returned actions. `Pending` is whatever the driver needs to complete a request
/// (a promise, in production).
struct ConnectionStateMachine<Key: Hashable, Pending> {
    struct Configuration {
        /// Requests awaiting a response at once; more wait in the queue.
        var maxInFlight: Int
        /// Requests (and sends) waiting for an in-flight slot or writability; more are rejected.
        var maxQueued: Int
        /// A heartbeat is sent after this long without writing; `nil` disables heartbeats.
        var heartbeatInterval: TimeAmount?
        /// The connection is declared dead after this long without reading a byte; `nil` disables the check.
        var readTimeout: TimeAmount?
        /// The connection is closed (to be reopened) after this long without a request or send, heartbeats
        /// aside, when nothing is pending; `nil` keeps idle connections.
        var maxIdleTime: TimeAmount? = nil
    }

    enum Item {
        case request(Key, Pending)
        case send(Pending)
    }

    enum Action {
        case none
        /// Write these items, in order, then flush once.
        case write([Item])
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
        /// Close the channel; pending requests are failed by the later ``closed(error:)``.
        case close(TransportError)
    }

    private enum State {
        case active
        /// No new requests; close once the last in-flight request completes.
        case draining
        case closed
    }

    private let configuration: Configuration
    private var state: State = .active
    private(set) var inFlight: [Key: Pending] = [:]
    private var queue: Deque<Item> = []
    /// The keys of queued requests, so a duplicate is found without scanning the queue.
    private var queuedKeys: Set<Key> = []
    private var isWritable = true
    private var lastRead: NIODeadline
    private var lastWrite: NIODeadline
    /// The last write of the application's (a heartbeat is not one).
    private var lastUse: NIODeadline
    private var heartbeatSentAt: NIODeadline?

    init(configuration: Configuration, now: NIODeadline) {
        self.configuration = configuration
        self.lastRead = now
        self.lastWrite = now
        self.lastUse = now
    }

    var queuedCount: Int { self.queue.count }
    var isDraining: Bool { if case .draining = self.state { true } else { false } }

    // MARK: Outbound

    mutating func requestSubmitted(key: Key, pending: Pending, now: NIODeadline) -> Action {
        self.submit(.request(key, pending), now: now)
    }

    mutating func sendSubmitted(pending: Pending, now: NIODeadline) -> Action {
        self.submit(.send(pending), now: now)
    }

    private mutating func submit(_ item: Item, now: NIODeadline) -> Action {
        switch self.state {
        case .draining, .closed:
            return .reject(item, TransportError(.notConnected))
        case .active:
            break
        }
        if case .request(let key, _) = item, self.inFlight[key] != nil || self.queuedKeys.contains(key) {
            return .reject(item, TransportError(.duplicateKey))
        }
        if self.queue.isEmpty, self.isWritable, self.canStart(item) {
            self.start(item, now: now)
            return .write([item])
        }
        guard self.queue.count < self.configuration.maxQueued else {
            return .reject(item, TransportError(.tooManyRequests))
        }
        self.queue.append(item)
        if case .request(let key, _) = item { self.queuedKeys.insert(key) }
        return .none
    }

    private func canStart(_ item: Item) -> Bool {
        switch item {
        case .request: self.inFlight.count < self.configuration.maxInFlight
        case .send: true
        }
    }

    private mutating func start(_ item: Item, now: NIODeadline) {
        if case .request(let key, let pending) = item { self.inFlight[key] = pending }
        self.lastWrite = now
        self.lastUse = now
    }

    /// Moves queued items to the wire while slots and writability allow, keeping their order.
    private mutating func dequeueStartable(now: NIODeadline) -> [Item] {
        var started: [Item] = []
        while self.isWritable, let first = self.queue.first, self.canStart(first) {
            self.queue.removeFirst()
            if case .request(let key, _) = first { self.queuedKeys.remove(key) }
            self.start(first, now: now)
            started.append(first)
        }
        return started
    }

    mutating func writabilityChanged(isWritable: Bool, now: NIODeadline) -> Action {
        self.isWritable = isWritable
        guard isWritable, case .active = self.state else { return .none }
        let items = self.dequeueStartable(now: now)
        return items.isEmpty ? .none : .write(items)
    }

    /// A heartbeat was written by the driver.
    mutating func heartbeatWritten(now: NIODeadline) {
        self.lastWrite = now
        self.heartbeatSentAt = now
    }

    // MARK: Inbound

    mutating func bytesRead(now: NIODeadline) {
        self.lastRead = now
    }

    /// A response for `key` arrived. Returns the completion plus any queued items that can now start.
    mutating func responseReceived(key: Key, now: NIODeadline) -> (Action, Action) {
        guard let pending = self.inFlight.removeValue(forKey: key) else { return (.unmatchedResponse, .none) }
        return (.succeed(pending), self.afterSlotFreed(now: now))
    }

    mutating func heartbeatReplyReceived(now: NIODeadline) -> Action {
        defer { self.heartbeatSentAt = nil }
        return .heartbeatReplied(rtt: self.heartbeatSentAt.map { now - $0 })
    }

    private mutating func afterSlotFreed(now: NIODeadline) -> Action {
        switch self.state {
        case .active:
            let items = self.dequeueStartable(now: now)
            return items.isEmpty ? .none : .write(items)
        case .draining:
            return self.inFlight.isEmpty ? .close(TransportError(.shutDown)) : .none
        case .closed:
            return .none
        }
    }

    // MARK: Timers

    /// The request's timeout fired: fail it whether it is in flight (may have been delivered) or still queued.
    mutating func requestTimedOut(key: Key, now: NIODeadline) -> (Action, Action) {
        self.removeRequest(key: key, error: TransportError(.requestTimeout), now: now)
    }

    /// The awaiting task was cancelled.
    mutating func requestCancelled(key: Key, now: NIODeadline) -> (Action, Action) {
        self.removeRequest(key: key, error: TransportError(.cancelled), now: now)
    }

    private mutating func removeRequest(key: Key, error: TransportError, now: NIODeadline) -> (Action, Action) {
        if let pending = self.inFlight.removeValue(forKey: key) {
            return (.fail(pending, error.delivered(true)), self.afterSlotFreed(now: now))
        }
        if self.queuedKeys.remove(key) != nil, let index = self.queue.firstIndex(where: { $0.key == key }),
            case .request(_, let pending) = self.queue.remove(at: index)
        {
            return (.fail(pending, error.delivered(false)), .none)
        }
        return (.none, .none)
    }

    /// The idle timer fired: declare the peer dead, send a heartbeat, or wait until the next deadline.
    mutating func idleCheck(now: NIODeadline) -> Action {
        guard case .closed = self.state else {
            if let readTimeout = self.configuration.readTimeout, now - self.lastRead >= readTimeout {
                return .close(TransportError(.heartbeatTimeout))
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
        return .none
    }

    /// When the idle timer should fire next.
    func nextIdleCheck(now: NIODeadline) -> Action {
        let configuration = self.configuration
        guard configuration.readTimeout != nil || configuration.heartbeatInterval != nil || configuration.maxIdleTime != nil else {
            return .none
        }
        return .scheduleIdleCheck(self.nextIdleDeadline(assumingWriteAt: self.lastWrite, now: now))
    }

    private func nextIdleDeadline(assumingWriteAt write: NIODeadline, now: NIODeadline) -> NIODeadline {
        var deadline = NIODeadline.distantFuture
        if let readTimeout = self.configuration.readTimeout { deadline = min(deadline, self.lastRead + readTimeout) }
        if let interval = self.configuration.heartbeatInterval { deadline = min(deadline, write + interval) }
        if let maxIdleTime = self.configuration.maxIdleTime {
            // Past due while requests are pending: look again a full period later, not in a tight loop.
            let due = self.lastUse + maxIdleTime
            deadline = min(deadline, due > now ? due : now + maxIdleTime)
        }
        return deadline
    }

    // MARK: Lifecycle

    /// Stop taking requests; close once in-flight requests complete. Queued items that never started fail now.
    mutating func drainRequested() -> ([Item], Action) {
        guard case .active = self.state else { return ([], .none) }
        self.state = .draining
        let unstarted = Array(self.queue)
        self.queue.removeAll()
        self.queuedKeys.removeAll()
        return (unstarted, self.inFlight.isEmpty ? .close(TransportError(.shutDown)) : .none)
    }

    /// The channel closed: everything still pending fails. In-flight requests may have been delivered.
    mutating func closed() -> (inFlight: [Pending], queued: [Item]) {
        self.state = .closed
        let inFlight = Array(self.inFlight.values)
        let queued = Array(self.queue)
        self.inFlight.removeAll()
        self.queue.removeAll()
        self.queuedKeys.removeAll()
        return (inFlight, queued)
    }
}

extension ConnectionStateMachine.Item {
    var key: Key? {
        if case .request(let key, _) = self { key } else { nil }
    }

    var pending: Pending {
        switch self {
        case .request(_, let pending), .send(let pending): pending
        }
    }
}
