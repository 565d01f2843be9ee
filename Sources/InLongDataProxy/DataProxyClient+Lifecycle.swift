#if ManagerDiscovery
import AsyncHTTPClient
#endif
import AsyncAlgorithms
import InLongTransport
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Running: discovery, connections, the clock; flushing and closing.
extension DataProxyClient {
    // MARK: Run

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.runUntilClosed()
        } onGracefulShutdown: {
            self.close()
        }
    }

    /// ``run()`` without a graceful-shutdown handler, for an owner that closes the client itself (the agent,
    /// which stops reading first and then closes its clients).
    package func runUntilClosed() async throws {
        precondition(!self.started.exchange(true, ordering: .relaxed), "DataProxyClient.run() must be called once")
        if self.spoolFailed, let error = self.spoolError {
            self.endRun()
            throw error
        }
        if let error = self.transportConfigurationError() {
            self.endRun()
            throw error
        }
        do { try self.checkAuditAvailable() } catch {
            self.endRun()
            throw error
        }
        #if ManagerDiscovery
        let manager = self.configuration.manager
        let ownedHTTPClient = manager == nil || manager?.httpClient != nil
            ? nil
            : HTTPClient(eventLoopGroupProvider: .shared(self.eventLoopGroup), configuration: manager!.httpClientConfiguration)
        #else
        if self.configuration.manager != nil {
            self.endRun()
            throw DataProxyError(
                .invalidConfiguration,
                "a Manager is configured but this build has no Manager discovery: enable swift-inlong's package trait 'ManagerDiscovery'"
            )
        }
        #endif
        let router = self.router
        await withDiscardingTaskGroup { group in
            // From the start: records accepted before any proxy is known still reach their deadline.
            group.addTask { await self.runClock() }
            group.addTask { await Self.runPools(router) }
            group.addTask { await self.drainCompletions() }
            if let audit = self.audit { group.addTask { await audit.run() } }
            if let spool = self.spool {
                group.addTask { await self.replaySpool() }
                group.addTask { await self.drainSpill(spool) }
                if case .interval(let interval) = spool.configuration.sync {
                    group.addTask {
                        // An fsync can block for seconds on a busy disk: never on the cooperative pool.
                        for await _ in AsyncTimerSequence(interval: interval, clock: .continuous) {
                            try? await NIOThreadPool.singleton.runIfActive { spool.sync() }
                        }
                    }
                }
            }
            if let transport = self.httpTransport {
                transport.start(eventLoopGroup: self.eventLoopGroup)
            } else {
                router.setConfigured(self.configuration.proxies)
            }
            let endpoints = self.httpTransport?.proxies ?? router.endpoints
            self.withMachineState { $0.proxiesChanged(endpoints) }
            #if ManagerDiscovery
            if let manager, let httpClient = manager.httpClient ?? ownedHTTPClient {
                let discovery = ProxyDiscovery(configuration: manager, httpClient: httpClient, logger: self.logger)
                group.addTask { await self.discoveryLoop(discovery) }
            }
            #endif
            await self.dispatchLoop(group: &group)
            router.close()
            // Batches still in flight (the run was cancelled) are failed by the closing connections: their answers
            // still reach the machine, and then the reader stops.
            self.completions.close()
            // Every record ended: the last counts go before the reporter stops.
            await self.audit?.close()
            group.cancelAll()
        }
        await self.httpTransport?.shutdown()
        #if ManagerDiscovery
        try? await ownedHTTPClient?.shutdown()
        #endif
        self.endRun()
    }

    /// Whatever ended the run (every record ended, cancellation, or no proxy before the close), nothing more will
    /// be sent: every record still held ends now, every waiter resumes, every report reader finishes.
    private func endRun() {
        self.handInLanes(close: true)
        self.withMachine { ((), $0.cancelled(now: .now)) }
        let readers = self.modifyState { state in
            state.reports.finished = true
            return (state.reports.live, nil)
        }
        for reader in readers { reader.finish() }
        self.discoveryWake.finish()
        // After every record ended: segments whose records were all reported go, the rest stay for the next client.
        if let spool = self.spool { spool.close() }
    }

    /// Runs each cluster's pool as it appears, without its own graceful-shutdown handler: a graceful shutdown
    /// closes the client, which sends what it holds before it closes the pools; they must not drain at the same
    /// signal.
    static func runPools(_ router: ProxyRouter) async {
        await withDiscardingTaskGroup { pools in
            for await pool in router.newPools {
                pools.addTask { await pool.runUntilClosed() }
            }
        }
    }

    /// A pool over `endpoints`, with the configured connection settings, telling `readinessChanged` (the router)
    /// when its connections become ready or stop being ready. The router keeps the proxies' health.
    static func makePool(
        _ endpoints: [Endpoint],
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        readinessChanged: @escaping @Sendable (PersistentConnectionPool<DataProxyCodec>.ReadinessChange) -> Void
    ) -> PersistentConnectionPool<DataProxyCodec> {
        // Frames never exceed the configured size (the Manager's `maxPacketLength` only lowers it).
        let maxFrameSize = configuration.batching.maxFrameSize
        var transport = PersistentConnection<DataProxyCodec>.Configuration(endpoints: endpoints)
        let connection = configuration.connection
        transport.connectTimeout = connection.connectTimeout
        transport.requestTimeout = connection.requestTimeout
        transport.heartbeatInterval = connection.heartbeatInterval
        transport.readTimeout = connection.heartbeatInterval * 3
        transport.maxInFlight = connection.maxInFlight
        transport.maxConnectionAge = connection.maxConnectionAge
        transport.maxIdleTime = connection.maxIdleTime
        transport.backoff = connection.backoff
        transport.maxFrameLength = maxFrameSize
        transport.metricsFactory = configuration.metricsFactory
        return PersistentConnectionPool(
            codec: DataProxyCodec(maxFrameSize: maxFrameSize),
            endpoints: endpoints,
            configuration: transport,
            policy: connection.balanceByReportedLoad ? .leastLoaded : .leastInFlight,
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            readinessChanged: readinessChanged
        )
    }

    func applyFrameLimit(_ maxPacketLength: Int, to machine: inout Machine) {
        let frameSize = min(maxPacketLength, self.configuration.batching.maxFrameSize)
        machine.accumulator.limits.maxBytes = min(
            machine.accumulator.limits.maxBytes,
            Self.blockLimit(self.configuration.batching, frameSize: frameSize)
        )
    }

    /// Feeds the machine the time (linger, retry backoffs, delivery and close deadlines) on a repeating timer,
    /// and wakes discovery when its schedule's next step is due.
    func runClock() async {
        // Also the granularity of retry backoffs and deadlines, hence the 50 ms cap.
        let tick = max(min(self.configuration.batching.linger / 2, .milliseconds(50)), .milliseconds(1))
        for await now in AsyncTimerSequence(interval: tick, clock: .continuous) {
            self.handInLanes(dueAt: now)
            let discoveryDue = self.modifyState { state in
                let due = state.discovery.due.map { $0 <= now } ?? false
                if due { state.discovery.due = nil }
                return (due, state.machine.tick(now: now))
            }
            if discoveryDue { self.discoveryWake.yield() }
            if let spool = self.spool {
                let (bytes, segments) = spool.statistics
                self.observation.spoolObserved(bytes: bytes, segments: segments)
            }
        }
    }

    /// Sends every buffered record now and waits until all records accepted before the call are acked or
    /// failed, or until `deadline` (or the caller's cancellation). Returns whether they all ended.
    @discardableResult
    public func flush(deadline: ContinuousClock.Instant) async -> Bool {
        // Records in the lanes were accepted before the call: their batches are sealed with the others'.
        self.handInLanes()
        let ticket = WaitTicket()
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                // Records a previous client left in the spool count as accepted before the call.
                await self.spoolReplayed.wait()
                if Task.isCancelled { return false }
                return await withCheckedContinuation { continuation in
                    let result = self.withMachine { $0.flush(waiter: continuation, now: .now) }
                    switch result {
                    case .ended: self.resumeEndedFlush(continuation)
                    case .parked(let id): if !ticket.park(id) { self.cancelFlush(id) }
                    }
                }
            }
            group.addTask {
                try? await Task.sleep(until: deadline)
                // Timed out or cancelled: end the wait if it is still on.
                if let id = ticket.cancel() { self.cancelFlush(id) }
                return false
            }
            let result = await group.next() ?? false
            group.cancelAll()
            return result
        }
    }

    func cancelFlush(_ id: Int) {
        self.withMachineState { $0.cancelFlush(id) }?.resume(returning: false)
    }

    /// ``flush(deadline:)`` with a deadline `timeout` from now.
    @discardableResult
    public func flush(timeout: Duration = .seconds(30)) async -> Bool {
        await self.flush(deadline: .now + timeout)
    }

    /// Stops accepting records, sends what is buffered, waits up to `deadline` for acks, then reports every
    /// remaining record as failed; ``run()`` returns after that, and every ``deliveryReports()`` sequence
    /// finishes after the last report. Graceful shutdown of a `ServiceGroup` does the same with a 30-second
    /// deadline.
    public func close(deadline: Duration = .seconds(30)) {
        // The lanes first: records they took before the close are sent with the others, and none takes more.
        self.handInLanes(close: true)
        let now = ContinuousClock.now
        self.withMachine { ((), $0.closeRequested(now: now, deadline: now + deadline)) }
    }
}
