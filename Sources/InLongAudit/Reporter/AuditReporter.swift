import Foundation
import InLongTransport
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// Counts records per minute of their data time, group, stream and audit item, and sends the sums to InLong
/// Audit proxies once per ``Configuration/flushInterval``, as InLong's audit SDK does: over a persistent TCP
/// connection, length-prefixed `BaseCommand`s, each `AUDIT_REQUEST` answered by an `AUDIT_REPLY`.
///
/// ``add(_:group:stream:logTime:count:size:delay:)`` never waits for the network: it adds to a sum under a
/// short lock. Requests that fail are retried with backoff; while proxies stay away they wait in a bounded
/// backlog whose oldest request is dropped (and counted) when it is full.
///
/// Run it as a `Service`; ``close(deadline:)`` sends what was counted (for up to the deadline) and ends ``run()``.
public final class AuditReporter: Service, Sendable {
    struct State {
        var machine: AuditStateMachine
        var nextFlush: ContinuousClock.Instant
        /// Set by `close`: flush everything, send until idle or this instant.
        var closeBy: ContinuousClock.Instant?
        var proxies: [Endpoint]
        /// The proxies changed since the loop last looked.
        var proxiesChanged = false
        /// `run()` returned; and who waits for it to.
        var ended = false
        var endWaiters: [CheckedContinuation<Void, Never>] = []
    }

    public let configuration: Configuration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    let state: Mutex<State>
    let started = Atomic(false)
    let wakeups: AsyncStream<Void>
    let wake: AsyncStream<Void>.Continuation
    let header: AuditHeaderMessage

    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "inlong.audit")
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        var machineConfiguration = AuditStateMachine.Configuration()
        machineConfiguration.maxEntriesPerRequest = max(1, configuration.maxEntriesPerRequest)
        machineConfiguration.maxPendingRequests = max(1, configuration.maxPendingRequests)
        machineConfiguration.retryBackoff = configuration.retryBackoff
        self.state = Mutex(State(
            machine: AuditStateMachine(configuration: machineConfiguration),
            nextFlush: .now + configuration.flushInterval,
            proxies: configuration.proxies,
            proxiesChanged: !configuration.proxies.isEmpty
        ))
        (self.wakeups, self.wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        var header = AuditHeaderMessage()
        header.ip = configuration.localIP
        header.dockerID = configuration.dockerID
        header.threadID = String(ProcessInfo.processInfo.processIdentifier)
        self.header = header
    }

    // MARK: Counting

    /// Adds `count` records of `size` bytes whose data time is `logTime` (milliseconds since the epoch) to their
    /// minute's sum; `delay` is their summed delay in milliseconds. Cheap and never waits: call it per batch.
    public func add(
        _ auditID: AuditID,
        group: String,
        stream: String,
        logTime: Int64,
        count: Int,
        size: Int,
        delay: Int64 = 0
    ) {
        guard count > 0 else { return }
        let key = AuditKey(logTime: logTime, group: group, stream: stream, auditID: auditID)
        let counts = AuditCounts(count: UInt64(count), size: UInt64(max(0, size)), delay: delay)
        self.state.withLock { $0.machine.add(key, counts) }
    }

    /// Sends what was counted now, without waiting for the interval.
    public func flush() {
        self.state.withLock { $0.nextFlush = .now }
        self.wake.yield()
    }

    /// Sends what was counted, for up to `deadline`, then ends ``run()``. What is still unsent then is counted
    /// as dropped.
    public func close(deadline: Duration = .seconds(5)) {
        self.state.withLock { state in
            if state.closeBy == nil { state.closeBy = .now + deadline }
            state.nextFlush = .now
        }
        self.wake.yield()
    }

    /// A snapshot of the counters.
    public func statistics() -> AuditReporterStatistics {
        self.state.withLock { state in
            var statistics = AuditReporterStatistics()
            let machine = state.machine
            statistics.acknowledgedRequests = machine.acknowledgedRequests
            statistics.acknowledgedRecords = machine.acknowledgedRecords
            statistics.failedAttempts = machine.failedAttempts
            statistics.droppedRequests = machine.droppedRequests
            statistics.droppedRecords = machine.droppedRecords
            statistics.pendingRequests = machine.waiting.count + machine.inFlight.count
            statistics.proxies = state.proxies
            return statistics
        }
    }

    // MARK: Running

    /// Sends until ``close(deadline:)``, a graceful shutdown (which closes with the default deadline) or
    /// cancellation (which sends nothing more).
    public func run() async throws {
        guard !self.configuration.proxies.isEmpty || self.configuration.manager != nil else {
            throw AuditError("an audit reporter needs audit proxies or a Manager")
        }
        await withGracefulShutdownHandler {
            await self.runUntilClosed()
        } onGracefulShutdown: {
            self.close()
        }
    }

    /// Returns once ``run()`` has returned.
    package func waitUntilEnded() async {
        await withCheckedContinuation { continuation in
            let ended = self.state.withLock { state -> Bool in
                if !state.ended { state.endWaiters.append(continuation) }
                return state.ended
            }
            if ended { continuation.resume() }
        }
    }

    /// ``run()`` without a graceful-shutdown handler, for an owner that closes the reporter itself (a client
    /// that counts its last acks before it closes the reporter).
    package func runUntilClosed() async {
        precondition(!self.started.exchange(true, ordering: .relaxed), "AuditReporter.run() must be called once")
        await self.sendUntilClosed()
        let waiters = self.state.withLock { state in
            state.ended = true
            defer { state.endWaiters = [] }
            return state.endWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func sendUntilClosed() async {
        await withDiscardingTaskGroup { group in
            // The clock: flushes, retries and the close deadline are looked at on each tick.
            let tick = min(self.configuration.flushInterval, .milliseconds(250))
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: tick)
                    self.wake.yield()
                }
            }
            if let manager = self.configuration.manager {
                group.addTask { await self.discover(from: manager) }
            }
            var pool: PersistentConnectionPool<AuditClientCodec>?
            for await _ in self.wakeups {
                let now = ContinuousClock.now
                let (sends, proxies, done) = self.state.withLock { state -> ([AuditStateMachine.Request], [Endpoint]?, Bool) in
                    // Closing, counts added since the last flush go at once rather than at the interval.
                    if now >= state.nextFlush || state.closeBy != nil {
                        state.machine.flush(wallMillis: Int64(Date().timeIntervalSince1970 * 1000))
                        state.nextFlush = now + self.configuration.flushInterval
                    }
                    let proxies = state.proxiesChanged ? state.proxies : nil
                    state.proxiesChanged = false
                    if let closeBy = state.closeBy, state.machine.isIdle || now >= closeBy {
                        state.machine.abandonAll()
                        return ([], proxies, true)
                    }
                    // Nothing leaves before a proxy is known.
                    return (state.proxies.isEmpty ? [] : state.machine.nextSends(now: now), proxies, false)
                }
                if done { break }
                if let proxies, !proxies.isEmpty {
                    if let pool {
                        _ = pool.updateEndpoints(proxies)
                    } else {
                        let made = self.makePool(proxies)
                        pool = made
                        group.addTask { try? await made.run() }
                    }
                }
                for request in sends { self.send(request, on: pool) }
            }
            pool?.close()
            group.cancelAll()
        }
    }

    private func makePool(_ proxies: [Endpoint]) -> PersistentConnectionPool<AuditClientCodec> {
        var connection = PersistentConnection<AuditClientCodec>.Configuration(endpoints: proxies)
        connection.requestTimeout = self.configuration.requestTimeout
        connection.maxFrameLength = AuditFraming.maxFrameLength
        return PersistentConnectionPool(
            codec: AuditClientCodec(),
            endpoints: proxies,
            configuration: connection,
            policy: .roundRobin,
            health: .init(threshold: 2),
            eventLoopGroup: self.eventLoopGroup,
            logger: self.logger
        )
    }

    private func send(_ request: AuditStateMachine.Request, on pool: PersistentConnectionPool<AuditClientCodec>?) {
        guard let pool else {
            self.answered(request.id, success: false)
            return
        }
        do {
            let (endpoint, response) = try pool.submit(AuditCommand(request, header: self.header), timeout: self.configuration.requestTimeout)
            response.whenComplete { result in
                let success: Bool
                switch result {
                case .success(let reply):
                    success = reply.auditReply.rspCode == .success
                    if !success {
                        self.logger.debug("audit proxy refused a request", metadata: ["inlong.audit.reply": "\(reply.auditReply.message)"])
                    }
                case .failure(let error):
                    success = false
                    self.logger.debug("audit request failed", metadata: ["inlong.error": "\(error)"])
                }
                pool.recordOutcome(endpoint, succeeded: success)
                self.answered(request.id, success: success)
            }
        } catch {
            self.answered(request.id, success: false)
        }
    }

    private func answered(_ id: UInt64, success: Bool) {
        self.state.withLock { $0.machine.answered(id, success: success, now: .now) }
        self.wake.yield()
    }

    /// Proxies the Manager named; kept when it names none.
    func proxiesDiscovered(_ proxies: [Endpoint]) {
        guard !proxies.isEmpty else { return }
        let changed = self.state.withLock { state -> Bool in
            guard Set(state.proxies) != Set(proxies) else { return false }
            state.proxies = proxies
            state.proxiesChanged = true
            return true
        }
        if changed {
            self.logger.info("audit proxies", metadata: ["inlong.audit.proxies": "\(proxies.map { "\($0.host):\($0.port)" }.joined(separator: ","))"])
            self.wake.yield()
        }
    }
}

/// An audit reporter or collector could not do what it was asked.
public struct AuditError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
