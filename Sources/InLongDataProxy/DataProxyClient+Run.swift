import AsyncHTTPClient
public import InLongTransport
import CoreMetrics
import InLongWire
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

extension DataProxyClient {
    // MARK: Reports and statistics

    /// Delivery reports, one per batch, as batches end: each names exactly the records it covers, and every
    /// record accepted is in exactly one. Each call makes a new sequence that sees the reports of batches ending
    /// after the call. No report is dropped: while sequences are open, a batch's quota is held until each took
    /// its report, so a reader that falls behind slows acceptance (see ``DeliveryReports``); a client with no
    /// sequence open holds nothing for reports. Every sequence finishes after the client's last report (after
    /// ``close(deadline:)`` or cancellation of ``run()``).
    public func deliveryReports() -> DeliveryReports {
        let (stream, continuation) = AsyncStream.makeStream(of: DeliveryReport.self)
        let subscription = self.reports.withLock { reports -> ReportSubscription? in
            guard !reports.finished else { return nil }
            defer { reports.nextID += 1 }
            let subscription = ReportSubscription(id: reports.nextID, continuation: continuation) { [weak self] id in
                self?.reportReaderEnded(id)
            }
            reports.subscriptions[reports.nextID] = WeakSubscription(subscription: subscription)
            let readers = reports.subscriptions.count
            // Under the reports lock, so that counts reach the machine in order.
            self.machine.withLock { $0.reportReadersChanged(readers) }
            return subscription
        }
        guard let subscription else {
            continuation.finish()
            return DeliveryReports(stream: stream, subscription: nil)
        }
        continuation.onTermination = { [weak subscription] _ in subscription?.end() }
        return DeliveryReports(stream: stream, subscription: subscription)
    }

    private func reportReaderEnded(_ id: Int) {
        self.reports.withLock { reports in
            guard reports.subscriptions.removeValue(forKey: id) != nil else { return }
            let readers = reports.subscriptions.count
            self.machine.withLock { $0.reportReadersChanged(readers) }
        }
    }

    /// A snapshot of the counters.
    public func statistics() -> DataProxyClientStatistics {
        var statistics = DataProxyClientStatistics()
        statistics.accepted = self.counters.accepted.load(ordering: .relaxed)
        statistics.sent = self.counters.sent.load(ordering: .relaxed)
        statistics.acked = self.counters.acked.load(ordering: .relaxed)
        statistics.failed = self.counters.failed.load(ordering: .relaxed)
        statistics.retries = self.counters.retries.load(ordering: .relaxed)
        statistics.tooLarge = self.counters.tooLarge.load(ordering: .relaxed)
        statistics.bufferFull = self.counters.bufferFull.load(ordering: .relaxed)
        statistics.batchesSent = self.counters.batchesSent.load(ordering: .relaxed)
        statistics.bytesSent = self.counters.bytesSent.load(ordering: .relaxed)
        statistics.failures = self.counters.failures.withLock { $0 }
        let histogram = self.counters.latency.withLock { $0 }
        statistics.ackLatencyP50 = histogram.value(at: 0.5)
        statistics.ackLatencyP99 = histogram.value(at: 0.99)
        self.machine.withLock { machine in
            statistics.heldBytes = machine.accumulator.heldBytes - machine.reportHeldBytes
            statistics.heldRecords = machine.accumulator.heldRecords - machine.reportHeldRecords
            statistics.reportHeldRecords = machine.reportHeldRecords
            statistics.inFlightBatches = machine.jobCount
            statistics.avoidedProxies = machine.health.avoided(now: .now)
        }
        for connection in self.pool.withLock({ $0 })?.connections ?? [] {
            if let load = connection.reportedLoad { statistics.proxyLoads[connection.configuration.endpoints[0]] = load }
        }
        return statistics
    }

    /// The proxies in use.
    public var proxies: [Endpoint] { self.machine.withLock { $0.proxies } }

    // MARK: Actions

    /// Runs what the machine decided, outside its lock.
    func run(_ actions: Machine.Actions) {
        if actions.wakeDispatcher { self.wake.yield() }
        for sealed in actions.sealed {
            let metrics = self.counters.streamMetrics(group: sealed.key.group, stream: sealed.key.stream)
            metrics.accepted.increment(by: sealed.records)
            metrics.queued(bytes: sealed.bytes)
        }
        if let held = actions.heldBytes { self.counters.heldBytesGauge.record(held) }
        for (job, result, reportHolds) in actions.finish { self.finish(job, result, reportHolds: reportHolds) }
        for waiter in actions.resumeSenders { waiter.resume(returning: true) }
        if let avoided = actions.avoided {
            self.logger.warning("avoiding a failing proxy", metadata: ["inlong.proxy": "\(avoided.proxy)", "inlong.pause": "\(avoided.pause)"])
        }
        if let retried = actions.retried {
            self.counters.retries.add(1, ordering: .relaxed)
            self.counters.streamMetrics(group: retried.key.group, stream: retried.key.stream).retried.increment()
            self.logger.debug(
                "retrying a batch",
                metadata: ["inlong.attempt": "\(retried.attempts)", "inlong.error": "\(retried.error)", "inlong.delay": "\(retried.delay)"]
            )
        }
        // Last, so that a flush that returns sees the ended records counted.
        for (waiter, allEnded) in actions.resumeFlushes { waiter.resume(returning: allEnded) }
    }

    /// Counts, tells the observers of, and reports a job that ended. Its quota was released, or is held until
    /// the report readers took the report (`reportHolds`).
    private func finish(_ job: DeliveryJob, _ result: Result<DataProxyAck, DataProxyError>, reportHolds: Bool) {
        let batch = job.batch
        let metrics = self.counters.streamMetrics(group: batch.key.group, stream: batch.key.stream)
        metrics.queued(bytes: -batch.chargedBytes)
        let outcome: DeliveryReport.Outcome
        switch result {
        case .success(let ack):
            self.counters.acked.add(batch.recordCount, ordering: .relaxed)
            self.counters.latency.withLock { $0.record(ack.latency) }
            metrics.acked.increment(by: batch.recordCount)
            metrics.ackLatency.recordNanoseconds(TimeAmount(ack.latency).nanoseconds)
            outcome = .acked(ack)
        case .failure(let error):
            self.counters.recordFailure(error.code.description, metrics: metrics, records: batch.recordCount)
            self.logger.debug("records failed", metadata: ["inlong.records": "\(batch.recordCount)", "inlong.error": "\(error)"])
            outcome = .failed(error)
        }
        for observer in batch.observers { observer.ended(result) }
        let readers = self.reports.withLock { $0.live }
        let hold = reportHolds
            ? ReportHold(bytes: batch.chargedBytes, records: batch.recordCount, readers: readers.count) { [weak self] hold in
                self?.withMachine { ((), $0.reportsTaken(bytes: hold.bytes, records: hold.records)) }
            }
            : nil
        guard !readers.isEmpty else { return }
        var payload: DeliveryReport.Payload?
        if case .failure = result {
            payload = job.frame.map { .frame($0) } ?? .block(batch.block, perRecordAttributes: batch.key.perRecordAttributes)
        }
        let report = DeliveryReport(group: batch.key.group, stream: batch.key.stream, records: batch.ids, outcome: outcome, payload: payload)
        for reader in readers where !reader.deliver(report, hold: hold) {
            hold?.taken()
        }
    }

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
    private func makePool(discovery: ProxyDiscovery?) async -> ConnectionPool<DataProxyCodec>? {
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
        self.machine.withLock { machine in
            machine.proxiesChanged(inUse)
            if let maxPacketLength { self.applyFrameLimit(maxPacketLength, to: &machine) }
        }
        return pool
    }

    private func applyFrameLimit(_ maxPacketLength: Int, to machine: inout Machine) {
        let frameSize = min(maxPacketLength, self.configuration.batching.maxFrameSize)
        machine.accumulator.limits.maxBytes = Self.blockLimit(self.configuration.batching, frameSize: frameSize)
    }

    private var isClosing: Bool { self.machine.withLock { !$0.isAccepting } }

    private func refreshLoop(_ discovery: ProxyDiscovery, pool: ConnectionPool<DataProxyCodec>) async {
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
                self.machine.withLock { $0.proxiesChanged(endpoints) }
            }
            if let length = list.maxPacketLength { self.machine.withLock { self.applyFrameLimit(length, to: &$0) } }
        }
    }

    /// Feeds the machine the time: linger, retry backoffs, delivery and close deadlines.
    private func tickLoop() async {
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

    /// Submits ready jobs in order, from one task, so that batches of a stream go out in the order they were
    /// sealed; acks are awaited in child tasks. Returns once the client closed and every record ended, or when
    /// cancelled.
    private func dispatchLoop(pool: ConnectionPool<DataProxyCodec>, group: inout DiscardingTaskGroup) async {
        // Compression output, reused by every batch: only the exact-size frame is allocated per batch.
        var scratch = ByteBuffer()
        for await _ in self.wakeups {
            if self.machine.withLock({ $0.isFinished }) { return }
            // Popped one by one, so that the queue's length tells senders how far behind this loop is.
            while let next = self.withMachine({ $0.nextJob(now: .now) }) {
                guard self.dispatch(next.job, avoiding: next.avoiding, pool: pool, scratch: &scratch, group: &group) else {
                    // No connection ready (starting, or every proxy down): look again shortly.
                    group.addTask {
                        try? await Task.sleep(for: .milliseconds(20))
                        self.wake.yield()
                    }
                    break
                }
            }
        }
    }

    /// Encodes and submits one job; `false` when no connection could take it (it is back in the queue).
    private func dispatch(
        _ job: DeliveryJob,
        avoiding: Set<Endpoint>,
        pool: ConnectionPool<DataProxyCodec>,
        scratch: inout ByteBuffer,
        group: inout DiscardingTaskGroup
    ) -> Bool {
        var job = job
        // The frame holds the records once encoded (a failure report decodes them from it): the block goes back
        // to the accumulator, so memory holds what is on its way rather than twice that.
        var spentBlock: ByteBuffer?
        if job.frame == nil {
            do {
                job.frame = try self.encode(job, scratch: &scratch)
                spentBlock = job.batch.block
                job.batch.block = ByteBuffer()
            } catch {
                self.withMachine { ((), $0.encodingFailed(job, "\(error)")) }
                return true
            }
        }
        let frame = job.frame!
        let connection: PersistentConnection<DataProxyCodec>
        let future: EventLoopFuture<InLongResponse>
        do {
            (connection, future) = try pool.submit(.data(uniq: job.uniq, frame: frame), avoiding: avoiding)
        } catch {
            self.withMachine { ((), $0.notSubmitted(job, spentBlock: spentBlock)) }
            return false
        }
        let id = job.id
        let records = job.batch.recordCount
        let metrics = self.counters.streamMetrics(group: job.batch.key.group, stream: job.batch.key.stream)
        self.machine.withLock { $0.submitted(job, to: connection.configuration.endpoints.first, now: .now, spentBlock: spentBlock) }
        self.counters.sent.add(records, ordering: .relaxed)
        metrics.sent.increment(by: records)
        metrics.inFlight(1)
        self.counters.batchesSent.add(1, ordering: .relaxed)
        self.counters.bytesSent.add(frame.readableBytes, ordering: .relaxed)
        group.addTask {
            let outcome = await Self.outcome(of: future)
            metrics.inFlight(-1)
            self.withMachine { ((), $0.completed(jobID: id, outcome: outcome, now: .now)) }
        }
        return true
    }

    private static func outcome(of future: EventLoopFuture<InLongResponse>) async -> DeliveryOutcome {
        do {
            switch try await future.get() {
            case .binaryAck(let ack) where ack.result.isDelivered: return .acked(proxyIP: ack.result.proxyIP)
            case .binaryAck(let ack): return .rejected(ack.result.errorCode, message: ack.result.errorMessage)
            case let other: return .unexpectedReply("\(other)")
            }
        } catch let error as TransportError {
            return .transportFailed(error)
        } catch {
            return .transportFailed(TransportError(.connectionClosed, mayHaveBeenDelivered: true, underlying: error))
        }
    }

    private func encode(_ job: DeliveryJob, scratch: inout ByteBuffer) throws -> ByteBuffer {
        let key = job.batch.key
        var extendedField = InLongExtendedField.default.union(self.configuration.batching.extendedField)
        if key.perRecordAttributes { extendedField.insert(.perRecordAttributes) }
        var block = job.batch.block
        var flags: UInt8 = 0
        if let threshold = self.configuration.batching.compressionThreshold, block.readableBytes > threshold {
            scratch.clear()
            scratch.writeSnappyCompressed(block)
            if scratch.readableBytes < block.readableBytes {
                block = scratch
                flags = InLongWireConstants.snappyFlag
            }
        }
        let message = InLongBinaryMessage(
            typeFlags: flags,
            extendedField: extendedField,
            dataTime: job.batch.dataTime,
            count: UInt16(job.batch.recordCount),
            uniq: job.uniq,
            body: block,
            attributes: "groupId=\(key.group)&streamId=\(key.stream)" + (key.messageAttributes.isEmpty ? "" : "&" + key.messageAttributes)
        )
        var frame = ByteBufferAllocator().buffer(capacity: message.frameLength)
        try message.encode(into: &frame)
        return frame
    }
}
