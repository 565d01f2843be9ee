import AsyncHTTPClient
import InLongTransport
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Running: discovery, connections, the clock; flushing and closing.
extension DataProxyClient {
    // MARK: Run

    public func run() async throws {
        precondition(!self.started.exchange(true, ordering: .relaxed), "DataProxyClient.run() must be called once")
        let manager = self.configuration.manager
        let ownedHTTPClient = manager == nil || manager?.httpClient != nil
            ? nil
            : HTTPClient(eventLoopGroupProvider: .shared(self.eventLoopGroup), configuration: manager!.httpClientConfiguration)
        let connection = self.configuration.connection
        let router = ProxyRouter(subsetSize: connection.maxProxies, seed: connection.subsetSeed ?? UInt64.random(in: .min ... .max)) {
            self.makePool($0)
        }
        self.router.withLock { $0 = router }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                // From the start: records accepted before any proxy is known still reach their deadline.
                group.addTask { await self.tickLoop() }
                group.addTask { await Self.runPools(router) }
                router.setConfigured(self.configuration.proxies)
                let endpoints = router.endpoints
                self.withMachineState { $0.proxiesChanged(endpoints) }
                if let manager, let httpClient = manager.httpClient ?? ownedHTTPClient {
                    let discovery = ProxyDiscovery(configuration: manager, httpClient: httpClient, logger: self.logger)
                    group.addTask { await self.discoveryLoop(discovery, router: router) }
                }
                await self.dispatchLoop(router: router, group: &group)
                router.close()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.close()
        }
        // Whatever ended the run (every record ended, cancellation, or no proxy before the close), nothing
        // more will be sent: every record still held ends now, every waiter resumes.
        self.withMachine { ((), $0.cancelled(now: .now)) }
        try? await ownedHTTPClient?.shutdown()
        let readers = self.reports.withLock { reports in
            reports.finished = true
            return reports.live
        }
        for reader in readers { reader.finish() }
    }

    /// Runs each cluster's pool as it appears, outside the graceful-shutdown context: a graceful shutdown closes
    /// the client, which sends what it holds before it closes the pools; they must not drain at the same signal.
    static func runPools(_ router: ProxyRouter) async {
        await withDiscardingTaskGroup { pools in
            for await pool in router.newPools {
                let connections = Task.detached { try? await pool.run() }
                pools.addTask {
                    await withTaskCancellationHandler {
                        await connections.value
                    } onCancel: {
                        connections.cancel()
                    }
                }
            }
        }
    }

    /// A pool over `endpoints`, with the configured connection settings.
    func makePool(_ endpoints: [Endpoint]) -> ConnectionPool<DataProxyCodec> {
        // Frames never exceed the configured size (the Manager's `maxPacketLength` only lowers it).
        let maxFrameSize = self.configuration.batching.maxFrameSize
        var transport = PersistentConnection<DataProxyCodec>.Configuration(endpoints: endpoints)
        let connection = self.configuration.connection
        transport.connectTimeout = connection.connectTimeout
        transport.requestTimeout = connection.requestTimeout
        transport.heartbeatInterval = connection.heartbeatInterval
        transport.readTimeout = connection.heartbeatInterval * 3
        transport.maxInFlight = connection.maxInFlight
        transport.maxConnectionAge = connection.maxConnectionAge
        transport.maxIdleTime = connection.maxIdleTime
        transport.backoff = connection.backoff
        transport.maxFrameLength = maxFrameSize
        transport.metricsFactory = self.configuration.metricsFactory
        return ConnectionPool(
            codec: DataProxyCodec(maxFrameSize: maxFrameSize),
            endpoints: endpoints,
            configuration: transport,
            policy: connection.balanceByReportedLoad ? .leastLoaded : .leastInFlight,
            health: .init(threshold: connection.ejectAfterFailures, basePause: connection.avoidPause),
            eventLoopGroup: self.eventLoopGroup,
            logger: self.logger
        )
    }

    func applyFrameLimit(_ maxPacketLength: Int, to machine: inout Machine) {
        let frameSize = min(maxPacketLength, self.configuration.batching.maxFrameSize)
        machine.accumulator.limits.maxBytes = min(
            machine.accumulator.limits.maxBytes,
            Self.blockLimit(self.configuration.batching, frameSize: frameSize)
        )
    }

    /// Runs the ``DiscoverySchedule``: asks the Manager for the configured groups, then for groups as they are
    /// first used, refreshes every group it knows, and gives the slots of avoided proxies to spares.
    func discoveryLoop(_ discovery: ProxyDiscovery, router: ProxyRouter) async {
        var schedule = DiscoverySchedule(
            groups: discovery.configuration.groups,
            refreshInterval: discovery.configuration.refreshInterval,
            now: .now
        )
        while !Task.isCancelled {
            // Groups met by the dispatcher with no proxies of their own.
            schedule.met(router.unroutedGroups, now: .now)
            switch schedule.next(now: .now) {
            case .discover(let group, let useCache):
                let found = await self.discover(group, discovery: discovery, router: router, useCache: useCache)
                schedule.discovered(group, found: found, now: .now)
            case .replaceFailingProxies:
                // A proxy the Manager still lists but the pool avoids gives its slot to a spare.
                if router.replaceFailingProxies() {
                    self.logger.notice("failing proxies replaced by spares", metadata: ["inlong.proxies": "\(router.endpoints)"])
                    let endpoints = router.endpoints
                    self.withMachineState { $0.proxiesChanged(endpoints) }
                }
            case .wait(let until):
                // The dispatcher's new groups are looked for at least every 50 ms.
                try? await Task.sleep(until: min(until, .now + .milliseconds(50)))
            }
        }
    }

    /// Asks for one group's proxies and routes the group to them; `false` when none was found (a group that
    /// had proxies keeps them).
    private func discover(_ group: String, discovery: ProxyDiscovery, router: ProxyRouter, useCache: Bool) async -> Bool {
        let noProxies = { (error: any Error) in
            "the Manager \(discovery.configuration.url) gave no proxy for \(group): \(error)"
        }
        // Told at the first failed attempt, not after the last: an operator waits for it.
        let attemptFailed = { (error: any Error) in
            if !router.isRouted(group) { self.discoveryError.withLock { $0 = noProxies(error) } }
        }
        switch await discovery.discover(group: group, useCache: useCache, attemptFailed: attemptFailed) {
        case .success(let list):
            if router.apply(list, for: group) {
                self.logger.info("proxies updated", metadata: ["inlong.group": "\(group)", "inlong.proxies": "\(list.endpoints)"])
            }
            let endpoints = router.endpoints
            self.withMachineState { machine in
                machine.proxiesChanged(endpoints)
                if let length = list.maxPacketLength { self.applyFrameLimit(length, to: &machine) }
            }
            self.withMachine { ((), $0.routeReady(group)) }
            self.discoveryError.withLock { $0 = nil }
            self.discoveryFailures.withLock { $0[group] = nil }
            return true
        case .failure(let error) where error is CancellationError:
            // The client is closing: what the Manager said last still stands.
            return false
        case .failure(let error):
            let message = router.isRouted(group) ? "proxy refresh failed; keeping the group's proxies" : "no proxy found yet"
            // Said once at warning while the same failure goes on; each retry after it at debug.
            let repeated = self.discoveryFailures.withLock { failures in
                defer { failures[group] = "\(message): \(error)" }
                return failures[group] == "\(message): \(error)"
            }
            if !router.isRouted(group) { self.discoveryError.withLock { $0 = noProxies(error) } }
            self.logger.log(
                level: repeated ? .debug : .warning,
                "\(message)",
                metadata: ["inlong.group": "\(group)", "inlong.manager": "\(discovery.configuration.url)", "inlong.error": "\(error)"]
            )
            return false
        }
    }

    /// Feeds the machine the time: linger, retry backoffs, delivery and close deadlines.
    func tickLoop() async {
        // Also the granularity of retry backoffs and deadlines, hence the 50 ms cap.
        let tick = max(min(self.configuration.batching.linger / 2, .milliseconds(50)), .milliseconds(1))
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: tick)
            } catch {
                return
            }
            self.withMachine { ((), $0.tick(now: .now)) }
        }
    }


    /// Sends every buffered record now and waits until all records accepted before the call are acked or
    /// failed, or until `deadline` (or the caller's cancellation). Returns whether they all ended.
    @discardableResult
    public func flush(deadline: ContinuousClock.Instant) async -> Bool {
        let ticket = WaitTicket()
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let result = self.withMachine { $0.flush(waiter: continuation, now: .now) }
                    switch result {
                    case .ended: continuation.resume(returning: true)
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
        let now = ContinuousClock.now
        self.withMachine { ((), $0.closeRequested(now: now, deadline: now + deadline)) }
    }
}
