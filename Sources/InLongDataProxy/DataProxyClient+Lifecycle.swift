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
        let httpClient = self.configuration.manager == nil ? nil : HTTPClient(eventLoopGroupProvider: .shared(self.eventLoopGroup))
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                // From the start: records accepted before any proxy is known still reach their deadline.
                group.addTask { await self.tickLoop() }
                var discovery: ProxyDiscovery?
                if let manager = self.configuration.manager, let httpClient {
                    discovery = ProxyDiscovery(configuration: manager, httpClient: httpClient, logger: self.logger)
                }
                guard let pool = await self.makePool(discovery: discovery) else {
                    group.cancelAll()
                    return
                }
                // Outside the graceful-shutdown context: a graceful shutdown closes the client, which sends what
                // it holds before it closes the pool; the pool must not drain and close at the same signal.
                let connections = Task.detached { try? await pool.run() }
                group.addTask {
                    await withTaskCancellationHandler {
                        await connections.value
                    } onCancel: {
                        connections.cancel()
                    }
                }
                if let discovery {
                    group.addTask { await self.refreshLoop(discovery, pool: pool) }
                }
                await self.dispatchLoop(pool: pool, group: &group)
                pool.close()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.close()
        }
        // Whatever ended the run (every record ended, cancellation, or no proxy before the close), nothing
        // more will be sent: every record still held ends now, every waiter resumes.
        self.withMachine { ((), $0.cancelled(now: .now)) }
        try? await httpClient?.shutdown()
        let readers = self.reports.withLock { reports in
            reports.finished = true
            return reports.live
        }
        for reader in readers { reader.finish() }
    }

    /// Finds the first proxies: static ones, else the Manager (or its cache), retried until found or closed.
    func makePool(discovery: ProxyDiscovery?) async -> ConnectionPool<DataProxyCodec>? {
        var endpoints = self.configuration.proxies
        var maxPacketLength: Int?
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(10)).makeIterator()
        var useCache = true
        while let discovery, endpoints.isEmpty || self.configuration.proxies.isEmpty {
            let (list, error) = await discovery.discover(useCache: useCache)
            useCache = true
            if let list {
                endpoints = list.endpoints
                maxPacketLength = list.maxPacketLength
                break
            }
            self.logger.warning("no proxy found yet", metadata: ["inlong.error": "\(String(describing: error))"])
            // In slices, so that a close ends the wait.
            let until = ContinuousClock.now + backoff.next()
            while ContinuousClock.now < until {
                if self.isClosing || Task.isCancelled { return nil }
                try? await Task.sleep(for: min(until - .now, .milliseconds(50)))
            }
            if self.isClosing || Task.isCancelled { return nil }
        }
        guard !endpoints.isEmpty else { return nil }
        let codec = DataProxyCodec(maxFrameSize: 1 << 20)
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
        transport.maxFrameLength = 1 << 20
        let pool = ConnectionPool(
            codec: codec,
            endpoints: Array(endpoints.prefix(max(connection.maxProxies, 1))),
            configuration: transport,
            policy: connection.balanceByReportedLoad ? .leastLoaded : .leastInFlight,
            eventLoopGroup: self.eventLoopGroup,
            logger: self.logger
        )
        self.pool.withLock { $0 = pool }
        let inUse = pool.endpoints
        self.withMachineState { machine in
            machine.proxiesChanged(inUse)
            if let maxPacketLength { self.applyFrameLimit(maxPacketLength, to: &machine) }
        }
        return pool
    }

    func applyFrameLimit(_ maxPacketLength: Int, to machine: inout Machine) {
        let frameSize = min(maxPacketLength, self.configuration.batching.maxFrameSize)
        machine.accumulator.limits.maxBytes = Self.blockLimit(self.configuration.batching, frameSize: frameSize)
    }

    var isClosing: Bool { self.withMachineState { !$0.isAccepting } }

    func refreshLoop(_ discovery: ProxyDiscovery, pool: ConnectionPool<DataProxyCodec>) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: discovery.configuration.refreshInterval)
            } catch {
                return
            }
            let (list, error) = await discovery.discover(useCache: false)
            guard let list else {
                self.logger.warning("proxy refresh failed; keeping the current proxies", metadata: ["inlong.error": "\(String(describing: error))"])
                continue
            }
            if pool.updateEndpoints(Array(list.endpoints.prefix(max(self.configuration.connection.maxProxies, 1)))) {
                self.logger.info("proxies updated", metadata: ["inlong.proxies": "\(list.endpoints)"])
                let endpoints = pool.endpoints
                self.withMachineState { $0.proxiesChanged(endpoints) }
            }
            if let length = list.maxPacketLength { self.withMachineState { self.applyFrameLimit(length, to: &$0) } }
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
