import DequeModule

/// A request taken by a worker, with the connection it came from. (Not nested in the machine: a worker type that
/// mentions it, as a continuation returning one does, would then refer to itself.)
struct HandlerPoolJob<Connection, Request> {
    var connection: Connection
    var request: Request
}

extension HandlerPoolJob: Sendable where Connection: Sendable, Request: Sendable {}

/// Who runs the inbound requests of a set of connections: a fixed number of workers (the pool's width), at most
/// `perConnectionLimit` of them on one connection's requests at once, up to `queueLimit` requests waiting. A
/// request that can neither start nor wait is parked with its connection, which stops reading until the queue
/// has room again: a peer is slowed down, never dropped.
///
/// Pure: the driver (``InboundHandlerPool``) calls it under a lock and performs the returned ``Effects`` after
/// unlocking. `Connection` identifies a connection (and lets the driver reach it); `Worker` is how a waiting
/// worker is resumed (a continuation in production, a plain value in tests).
struct HandlerPoolStateMachine<Connection: Hashable, Request, Worker> {
    struct Configuration {
        /// Requests waiting for a worker, across every connection.
        var queueLimit: Int
        /// Requests of one connection being handled at once.
        var perConnectionLimit: Int
    }

    typealias Job = HandlerPoolJob<Connection, Request>

    /// What the driver does after a transition, in this order.
    struct Effects {
        /// The worker that asked (``workerReady(_:finished:)``) takes this job: apart from `start`, so that a busy
        /// pool, moving from job to job, allocates no array.
        var own: (worker: Worker, job: Job)?
        /// Hand each job to its worker.
        var start: [(worker: Worker, job: Job)] = []
        /// Resume these workers with nothing: the pool stopped.
        var exit: [Worker] = []
        /// These connections may read again (their parked request went into the queue).
        var resumeReading: [Connection] = []
        /// The pool is stopping, or these connections are draining, and they have no request under way: close them.
        var close: [Connection] = []
    }

    enum Received {
        /// Hand the job to the worker (after unlocking).
        case start(Worker, Job)
        /// It waits for a worker.
        case queued
        /// It is parked: the connection stops reading until ``Effects/resumeReading`` names it.
        case pauseReading
        /// Not handled: the pool is stopping, or the connection was never opened or is closed.
        case refused
    }

    private struct ConnectionState {
        var running = 0
        var waiting: Deque<Request> = []
        /// The one request taken beyond the queue; the connection reads nothing more while it is here.
        var parked: Request?
        /// Whether it is listed in `runnable`.
        var isRunnable = false
        /// Closing gracefully: takes no new request, and is reported in ``Effects/close`` once none is under way.
        var isDraining = false
    }

    private let configuration: Configuration
    private var connections: [Connection: ConnectionState] = [:]
    /// Connections with waiting requests and a free slot, taken in turn so one busy peer cannot starve others.
    private var runnable: Deque<Connection> = []
    /// Connections with a parked request, in the order they paused.
    private var paused: Deque<Connection> = []
    private var idleWorkers: [Worker] = []
    private(set) var queuedCount = 0
    private(set) var isStopping = false

    init(configuration: Configuration) {
        self.configuration = Configuration(
            queueLimit: max(configuration.queueLimit, 0),
            perConnectionLimit: max(configuration.perConnectionLimit, 1)
        )
    }

    var pausedCount: Int { self.paused.count }
    var idleWorkerCount: Int { self.idleWorkers.count }
    func running(on connection: Connection) -> Int { self.connections[connection]?.running ?? 0 }

    // MARK: Connections

    /// A connection opened; `false` once stopping (the driver closes it).
    mutating func connectionOpened(_ connection: Connection) -> Bool {
        guard !self.isStopping else { return false }
        self.connections[connection] = ConnectionState()
        return true
    }

    /// The connection closed: its waiting and parked requests can no longer be answered and are dropped; those
    /// under way finish (their answers fail). The room freed may let parked connections read again.
    mutating func connectionClosed(_ connection: Connection) -> Effects {
        guard let state = self.connections.removeValue(forKey: connection) else { return Effects() }
        self.queuedCount -= state.waiting.count
        if state.isRunnable { self.runnable.removeAll { $0 == connection } }
        if state.parked != nil { self.paused.removeAll { $0 == connection } }
        var effects = Effects()
        self.refill(&effects)
        return effects
    }

    /// The connection closes gracefully: its requests not started yet are dropped (a parked one too, so it reads
    /// again, for the responses it awaits) and it takes no new one; those under way finish. It is named in
    /// ``Effects/close`` once none is under way: at once, or when its last handler ends.
    mutating func connectionDraining(_ connection: Connection) -> Effects {
        guard var state = self.connections[connection] else { return Effects() }
        var effects = Effects()
        state.isDraining = true
        self.queuedCount -= state.waiting.count
        state.waiting.removeAll()
        if state.isRunnable {
            state.isRunnable = false
            self.runnable.removeAll { $0 == connection }
        }
        if state.parked != nil {
            state.parked = nil
            self.paused.removeAll { $0 == connection }
            effects.resumeReading.append(connection)
        }
        self.connections[connection] = state
        if state.running == 0 { effects.close.append(connection) }
        self.refill(&effects)
        return effects
    }

    // MARK: Requests

    /// A request arrived on `connection`. A connection must not deliver one while it is paused.
    mutating func requestReceived(_ request: Request, on connection: Connection) -> Received {
        // Taken out while it changes and put back on every path, so that its queue is not copied on write.
        guard !self.isStopping, var state = self.connections.removeValue(forKey: connection) else { return .refused }
        defer { self.connections[connection] = state }
        guard !state.isDraining else { return .refused }
        precondition(state.parked == nil, "a paused connection delivered a request")
        if state.running < self.configuration.perConnectionLimit, state.waiting.isEmpty,
            let worker = self.idleWorkers.popLast()
        {
            state.running += 1
            return .start(worker, Job(connection: connection, request: request))
        }
        if self.queuedCount < self.configuration.queueLimit {
            state.waiting.append(request)
            self.queuedCount += 1
            if !state.isRunnable, state.running < self.configuration.perConnectionLimit {
                state.isRunnable = true
                self.runnable.append(connection)
            }
            return .queued
        }
        state.parked = request
        self.paused.append(connection)
        return .pauseReading
    }

    /// A worker is free for the next job, having finished one on `finished` (if any). Its own next step is
    /// among the effects: a job in ``Effects/start``, ``Effects/exit`` when stopping, or nothing (it waits).
    mutating func workerReady(_ worker: Worker, finished: Connection?) -> Effects {
        var effects = Effects()
        if let finished, var state = self.connections[finished] {
            state.running -= 1
            self.connections[finished] = state
            self.markRunnableIfStartable(finished)
            if self.isStopping || state.isDraining, state.running == 0 { effects.close.append(finished) }
        }
        guard !self.isStopping else {
            effects.exit.append(worker)
            return effects
        }
        // The worker asking takes the next job itself, so a busy pool moves from job to job without suspending.
        if let job = self.takeRunnable() {
            effects.own = (worker, job)
        } else {
            self.idleWorkers.append(worker)
        }
        self.refill(&effects)
        return effects
    }

    /// Stop: requests not started are dropped (no new request is handled), idle workers exit, and connections
    /// with nothing under way close; the others close as their last handler ends.
    mutating func stop() -> Effects {
        guard !self.isStopping else { return Effects() }
        self.isStopping = true
        var effects = Effects()
        effects.exit = self.idleWorkers
        self.idleWorkers.removeAll()
        self.runnable.removeAll()
        self.paused.removeAll()
        self.queuedCount = 0
        for (connection, var state) in self.connections {
            state.waiting.removeAll()
            state.parked = nil
            state.isRunnable = false
            self.connections[connection] = state
            if state.running == 0 { effects.close.append(connection) }
        }
        return effects
    }

    // MARK: Scheduling

    private mutating func markRunnableIfStartable(_ connection: Connection) {
        guard var state = self.connections[connection], !state.isRunnable, !state.waiting.isEmpty,
            state.running < self.configuration.perConnectionLimit
        else { return }
        state.isRunnable = true
        self.connections[connection] = state
        self.runnable.append(connection)
    }

    /// The next waiting request of the first runnable connection; the connection goes to the back of the line.
    private mutating func takeRunnable() -> Job? {
        guard let connection = self.runnable.popFirst() else { return nil }
        // Taken out while it changes, so that its queue is not copied on write.
        var state = self.connections.removeValue(forKey: connection)!
        let request = state.waiting.removeFirst()
        self.queuedCount -= 1
        state.running += 1
        state.isRunnable = false
        if !state.waiting.isEmpty, state.running < self.configuration.perConnectionLimit {
            state.isRunnable = true
            self.runnable.append(connection)
        }
        self.connections[connection] = state
        return Job(connection: connection, request: request)
    }

    /// Gives idle workers what can start, and moves parked requests into the room the queue has (their
    /// connections read again); with no room in the queue, a parked request may start straight from its
    /// connection on an idle worker.
    private mutating func refill(_ effects: inout Effects) {
        while true {
            while !self.idleWorkers.isEmpty, let job = self.takeRunnable() {
                effects.start.append((self.idleWorkers.removeLast(), job))
            }
            if self.queuedCount < self.configuration.queueLimit, let connection = self.paused.popFirst() {
                var state = self.connections[connection]!
                state.waiting.append(state.parked.take()!)
                self.queuedCount += 1
                self.connections[connection] = state
                self.markRunnableIfStartable(connection)
                effects.resumeReading.append(connection)
                continue
            }
            if !self.idleWorkers.isEmpty,
                let index = self.paused.firstIndex(where: {
                    self.connections[$0]!.running < self.configuration.perConnectionLimit
                })
            {
                let connection = self.paused.remove(at: index)
                var state = self.connections[connection]!
                let request = state.parked.take()!
                state.running += 1
                self.connections[connection] = state
                effects.start.append((self.idleWorkers.removeLast(), Job(connection: connection, request: request)))
                effects.resumeReading.append(connection)
                continue
            }
            return
        }
    }
}
