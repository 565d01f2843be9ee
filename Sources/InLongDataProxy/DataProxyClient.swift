import AsyncHTTPClient
import DequeModule
import Foundation
public import InLongTransport
import CoreMetrics
import InLongWire
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// Sends records to InLong DataProxy servers: batched per (group, stream) into type-7 messages, acked by `uniq`,
/// retried on another proxy on retriable errors, within a byte and record quota. Every record accepted by a
/// `send` ends in exactly one outcome, acked or failed, reported to the caller.
///
/// Run it as a `Service` (``run()`` owns discovery, connections and dispatch), or use
/// ``withDataProxyClient(configuration:eventLoopGroup:logger:_:)`` in scripts:
/// ```swift
/// try await withDataProxyClient(configuration: .init(proxies: [Endpoint(host: "127.0.0.1", port: 46801)])) { client in
///     try await client.send("hello", group: "g", stream: "s")
///     try await client.flush()
/// }
/// ```
public final class DataProxyClient: Service, Sendable {
    private enum Phase: Sendable {
        case created, running, closing, closed
    }

    /// A batch on its way: sealed, maybe encoded, maybe attempted.
    private struct Job: Sendable {
        var id: Int
        var batch: SealedBatch
        let metrics: ClientCounters.StreamMetrics
        var frame: ByteBuffer?
        var uniq: UInt32 = 0
        var attempts = 0
        var lastProxy: Endpoint?
        var firstSentAt: ContinuousClock.Instant?
        var lastError: DataProxyError?
        var mayHaveBeenDelivered = false
    }

    private struct State {
        var phase = Phase.created
        var accumulator: BatchAccumulator
        var ready = Deque<Job>()
        /// Jobs in flight or waiting to retry, by id.
        var pending: [Int: Job] = [:]
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
        /// Senders waiting for the dispatcher to work the ready queue down.
        var backlogWaiters: [CheckedContinuation<Void, Never>] = []
        var backlog: DispatchBacklog
        var nextJobID = 0
        var nextUniq: UInt32 = 0
        var pool: ConnectionPool<DataProxyCodec>?
        var reportSinks: [Int: AsyncStream<DeliveryReport>.Continuation] = [:]
        var nextSinkID = 0
        var shutdownDeadline: ContinuousClock.Instant?
        var health: ProxyHealth
        /// Ids of jobs not yet ended, oldest first, and those among them that ended out of order.
        var liveJobs = Deque<Int>()
        var endedOutOfOrder = Set<Int>()
        /// `flush` callers waiting until every job below their target id ended, by flush id.
        var flushWaiters: [Int: (target: Int, continuation: CheckedContinuation<Bool, Never>)] = [:]
        var nextFlushID = 0
        /// Jobs (in `pending`) waiting out a retry backoff, with when they are due; the linger tick requeues them.
        var retries: [(due: ContinuousClock.Instant, id: Int)] = []

        /// The senders waiting for the dispatcher, for resuming once the lock is released.
        mutating func takeBacklogWaiters() -> [CheckedContinuation<Void, Never>] {
            defer { self.backlogWaiters = [] }
            return self.backlogWaiters
        }
    }

    /// Ready batches at which senders wait for the dispatcher (with ``Buffer/WhenFull/wait``); see
    /// ``DispatchBacklog``.
    static let maxBacklog = 16

    public let configuration: Configuration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state: Mutex<State>
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let counters: ClientCounters
    private let failureHandler: (@Sendable (DeliveryReport) -> Void)?

    /// - Parameters:
    ///   - onFailure: Called, off the caller's task, with every failed batch (optional).
    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "inlong.client", factory: { _ in SwiftLogNoOpLogHandler() }),
        onFailure: (@Sendable (DeliveryReport) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.failureHandler = onFailure
        self.counters = ClientCounters(factory: configuration.metricsFactory ?? MetricsSystem.factory)
        let limits = BatchAccumulator.Limits(
            maxRecords: max(1, min(configuration.batching.maxRecords, Int(UInt16.max))),
            maxBytes: Self.blockLimit(configuration.batching, frameSize: configuration.batching.maxFrameSize),
            linger: configuration.batching.linger,
            quotaBytes: configuration.buffer.maxBytes,
            quotaRecords: configuration.buffer.maxRecords
        )
        self.state = Mutex(
            State(
                accumulator: BatchAccumulator(limits: limits),
                backlog: DispatchBacklog(limit: configuration.buffer.whenFull == .wait ? Self.maxBacklog : .max),
                health: ProxyHealth(
                    threshold: configuration.connection.ejectAfterFailures,
                    basePause: configuration.connection.avoidPause
                )
            )
        )
        (self.wakeups, self.wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        if !configuration.unsupportedKeys.isEmpty {
            logger.warning(
                "configuration keys not supported",
                metadata: ["inlong.keys": "\(configuration.unsupportedKeys.joined(separator: ","))"]
            )
        }
    }

    /// The record-block limit: the configured batch size, but never a frame larger than `frameSize` (header,
    /// attributes and slack reserved, as the Java SDK reserves 256 bytes).
    private static func blockLimit(_ batching: Batching, frameSize: Int) -> Int {
        max(min(batching.maxBytes, frameSize - InLongBinaryMessage.fixedLength - 512), 64)
    }

    // MARK: Sending

    /// Accepts one record into the buffer; returns once it is accepted (not acked). Suspends while the buffer
    /// is full, or throws ``DataProxyError/Code/bufferFull`` with the fail-fast policy.
    public func send(
        _ body: ByteBuffer,
        group: String,
        stream: String,
        dataTime: Int64? = nil,
        attributes: [(String, String)] = []
    ) async throws {
        let (key, recordAttributes) = try self.validate(body, group: group, stream: stream, dataTime: dataTime, attributes: attributes)
        while true {
            switch self.tryAppend(body, attributes: recordAttributes, key: key, waiter: nil) {
            case .accepted: return
            case .full: try await self.waitForRoom(bytes: body.readableBytes, key: key)
            case .backlogged: await self.waitForDispatcher()
            case .tooLarge(let limit): throw self.tooLarge(body, limit: limit, key: key)
            case .closed: throw DataProxyError(.shutDown, "the client is closed", group: group, stream: stream)
            }
        }
    }

    /// Accepts one text record; see ``send(_:group:stream:dataTime:attributes:)``.
    public func send(
        _ text: String,
        group: String,
        stream: String,
        dataTime: Int64? = nil,
        attributes: [(String, String)] = []
    ) async throws {
        try await self.send(ByteBuffer(string: text), group: group, stream: stream, dataTime: dataTime, attributes: attributes)
    }

    /// Accepts many records with one lock per run of records that fit the buffer.
    public func send(contentsOf records: some Sequence<DataProxyRecord>, group: String, stream: String) async throws {
        var prepared: [(ByteBuffer, BatchKey, String?)] = []
        prepared.reserveCapacity(records.underestimatedCount)
        let limit = self.blockLimit
        for record in records {
            let (key, attributes) = try self.validate(
                record.body,
                group: group,
                stream: stream,
                dataTime: record.dataTime,
                attributes: record.attributes
            )
            if BatchAccumulator.blockBytes(bodyLength: record.body.readableBytes, attributesLength: attributes?.utf8.count) > limit {
                throw self.tooLarge(record.body, limit: limit, key: key)
            }
            prepared.append((record.body, key, attributes))
        }
        try await self.appendAll(prepared)
    }

    /// Accepts many records given as their bodies: one validation of the group and stream, one lock per run of
    /// records that fit the buffer, no per-record lookups.
    public func send(contentsOf bodies: some Collection<ByteBuffer>, group: String, stream: String) async throws {
        guard let first = bodies.first else { return }
        let (key, _) = try self.validate(first, group: group, stream: stream, dataTime: nil, attributes: [])
        let limit = self.blockLimit
        let records = Array(bodies)
        for body in records {
            if body.readableBytes == 0 {
                _ = try self.validate(body, group: group, stream: stream, dataTime: nil, attributes: [])
            }
            if BatchAccumulator.blockBytes(bodyLength: body.readableBytes, attributesLength: nil) > limit {
                throw self.tooLarge(body, limit: limit, key: key)
            }
        }
        var index = 0
        while index < records.count {
            let (appended, closed, sealed, backlogged) = self.state.withLock { state -> (Int, Bool, Bool, Bool) in
                guard state.phase == .created || state.phase == .running else { return (0, true, false, false) }
                let room = self.backlogRoom(state)
                guard room > 0 else { return (0, false, false, true) }
                let (appended, sealed) = state.accumulator.appendRun(
                    records[index...],
                    key: key,
                    now: .now,
                    wallSeconds: wallClockSeconds(),
                    maxSealed: room
                )
                self.enqueue(sealed, into: &state)
                return (appended, false, !sealed.isEmpty, sealed.count >= room)
            }
            if closed {
                throw DataProxyError(.shutDown, "the client is closed; \(index) of \(records.count) records were accepted", group: group, stream: stream)
            }
            self.counters.accepted.add(appended, ordering: .relaxed)
            if sealed { self.wake.yield() }
            index += appended
            guard index < records.count else { break }
            try await self.waitToAppend(backlogged: backlogged, bytes: records[index].readableBytes, key: key)
        }
    }

    /// Sends one record and waits for its ack; throws ``DataProxyError`` when it fails.
    public func sendAndWait(
        _ body: ByteBuffer,
        group: String,
        stream: String,
        dataTime: Int64? = nil,
        attributes: [(String, String)] = []
    ) async throws -> DataProxyAck {
        let (key, recordAttributes) = try self.validate(body, group: group, stream: stream, dataTime: dataTime, attributes: attributes)
        struct Full: Error {}
        struct Backlogged: Error {}
        while true {
            do {
                return try await withCheckedThrowingContinuation { continuation in
                    switch self.tryAppend(body, attributes: recordAttributes, key: key, waiter: continuation) {
                    case .accepted: break
                    case .full: continuation.resume(throwing: Full())
                    case .backlogged: continuation.resume(throwing: Backlogged())
                    case .tooLarge(let limit): continuation.resume(throwing: self.tooLarge(body, limit: limit, key: key))
                    case .closed:
                        continuation.resume(throwing: DataProxyError(.shutDown, "the client is closed", group: group, stream: stream))
                    }
                }
            } catch is Full {
                try await self.waitForRoom(bytes: body.readableBytes, key: key)
            } catch is Backlogged {
                await self.waitForDispatcher()
            }
        }
    }

    /// Sends every buffered record now and waits until all records accepted before the call are acked or
    /// failed, or until `deadline` (or the caller's cancellation). Returns whether they all ended.
    @discardableResult
    public func flush(deadline: ContinuousClock.Instant) async -> Bool {
        let id = self.state.withLock { state in
            defer { state.nextFlushID += 1 }
            return state.nextFlushID
        }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let (ended, sealed) = self.state.withLock { state -> (Bool, Bool) in
                        let batches = state.accumulator.sealAll()
                        self.enqueue(batches, into: &state)
                        let target = state.nextJobID
                        guard let oldest = state.liveJobs.first, oldest < target else { return (true, !batches.isEmpty) }
                        state.flushWaiters[id] = (target, continuation)
                        return (false, !batches.isEmpty)
                    }
                    if sealed { self.wake.yield() }
                    if ended { continuation.resume(returning: true) }
                }
            }
            group.addTask {
                try? await Task.sleep(until: deadline)
                // Timed out or cancelled: end the wait if it is still on.
                self.state.withLock { $0.flushWaiters.removeValue(forKey: id) }?.continuation.resume(returning: false)
                return false
            }
            let result = await group.next() ?? false
            group.cancelAll()
            return result
        }
    }

    /// ``flush(deadline:)`` with a deadline `timeout` from now.
    @discardableResult
    public func flush(timeout: Duration = .seconds(30)) async -> Bool {
        await self.flush(deadline: .now + timeout)
    }

    /// Delivery reports, one per batch, as batches end. Each call makes a new sequence; a reader that falls more
    /// than ``Configuration/reportBufferSize`` behind loses the oldest (counted in statistics).
    public func deliveryReports() -> AsyncStream<DeliveryReport> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: DeliveryReport.self,
            bufferingPolicy: .bufferingNewest(max(self.configuration.reportBufferSize, 1))
        )
        let id = self.state.withLock { state in
            defer { state.nextSinkID += 1 }
            state.reportSinks[state.nextSinkID] = continuation
            return state.nextSinkID
        }
        continuation.onTermination = { _ in
            _ = self.state.withLock { $0.reportSinks.removeValue(forKey: id) }
        }
        return stream
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
        statistics.reportsDropped = self.counters.reportsDropped.load(ordering: .relaxed)
        statistics.failures = self.counters.failures.withLock { $0 }
        let histogram = self.counters.latency.withLock { $0 }
        statistics.ackLatencyP50 = histogram.value(at: 0.5)
        statistics.ackLatencyP99 = histogram.value(at: 0.99)
        let pool = self.state.withLock { state in
            statistics.heldBytes = state.accumulator.heldBytes
            statistics.heldRecords = state.accumulator.heldRecords
            statistics.inFlightBatches = state.pending.count + state.ready.count
            statistics.avoidedProxies = state.health.avoided(now: .now)
            return state.pool
        }
        for connection in pool?.connections ?? [] {
            if let load = connection.reportedLoad { statistics.proxyLoads[connection.configuration.endpoints[0]] = load }
        }
        return statistics
    }

    /// The proxies in use.
    public var proxies: [Endpoint] { self.state.withLock { $0.pool?.endpoints ?? [] } }

    /// Stops accepting records, sends what is buffered, waits up to `deadline` for acks, then reports every
    /// remaining record as failed; ``run()`` returns after that. Graceful shutdown of a `ServiceGroup` does the
    /// same with a 30-second deadline.
    public func close(deadline: Duration = .seconds(30)) {
        let resume = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard state.phase == .created || state.phase == .running else { return [] }
            state.phase = .closing
            state.shutdownDeadline = .now + deadline
            self.enqueue(state.accumulator.sealAll(), into: &state)
            defer { state.roomWaiters = [] }
            return state.roomWaiters + state.takeBacklogWaiters()
        }
        for waiter in resume { waiter.resume() }
        self.wake.yield()
    }

    // MARK: Append

    private enum TryAppend {
        case accepted, full, closed
        /// The dispatcher is behind: wait for it before appending.
        case backlogged
        /// The record does not fit a frame of the current limit.
        case tooLarge(limit: Int)
    }

    /// The record-block limit now (the Manager may lower it).
    private var blockLimit: Int { self.state.withLock { $0.accumulator.limits.maxBytes } }

    private func tooLarge(_ body: ByteBuffer, limit: Int, key: BatchKey) -> DataProxyError {
        self.counters.tooLarge.add(1, ordering: .relaxed)
        self.counters.streamMetrics(group: key.group, stream: key.stream).tooLarge.increment()
        return DataProxyError(
            .messageTooLarge,
            "a record of \(body.readableBytes) bytes does not fit a frame (at most \(limit - 4) bytes)",
            group: key.group,
            stream: key.stream
        )
    }

    private func validate(
        _ body: ByteBuffer,
        group: String,
        stream: String,
        dataTime: Int64?,
        attributes: [(String, String)]
    ) throws -> (BatchKey, String?) {
        guard body.readableBytes > 0, !group.isEmpty, InLongAttributes.isValidComponent(group),
            InLongAttributes.isValidComponent(stream)
        else {
            throw DataProxyError(.invalidArgument, "records, groups and streams must be non-empty and free of '&' and '='", group: group, stream: stream)
        }
        var recordAttributes: String?
        if dataTime != nil || !attributes.isEmpty {
            var text = dataTime.map { "dt=\($0)" } ?? ""
            for (key, value) in attributes {
                guard !key.isEmpty, InLongAttributes.isValidComponent(key), InLongAttributes.isValidComponent(value) else {
                    throw DataProxyError(.invalidArgument, "attribute \(key)=\(value) contains '&' or '='", group: group, stream: stream)
                }
                if !text.isEmpty { text += "&" }
                text += key + "=" + value
            }
            recordAttributes = text
        }
        return (BatchKey(group: group, stream: stream, perRecordAttributes: recordAttributes != nil), recordAttributes)
    }

    private func tryAppend(_ body: ByteBuffer, attributes: String?, key: BatchKey, waiter: AckWaiter?) -> TryAppend {
        let recordBytes = BatchAccumulator.blockBytes(bodyLength: body.readableBytes, attributesLength: attributes?.utf8.count)
        let (result, sealed) = self.state.withLock { state -> (TryAppend, Bool) in
            guard state.phase == .created || state.phase == .running else { return (.closed, false) }
            // Checked under the lock the append takes anyway: the limit can change with the Manager's answer.
            guard recordBytes <= state.accumulator.limits.maxBytes else {
                return (.tooLarge(limit: state.accumulator.limits.maxBytes), false)
            }
            guard self.backlogRoom(state) > 0 else { return (.backlogged, false) }
            switch state.accumulator.append(
                body,
                attributes: attributes,
                key: key,
                now: .now,
                wallSeconds: wallClockSeconds(),
                waiter: waiter
            ) {
            case .accepted:
                return (.accepted, false)
            case .acceptedAndSealed(let batch):
                self.enqueue([batch], into: &state)
                return (.accepted, true)
            case .full:
                return (.full, false)
            }
        }
        if case .accepted = result { self.counters.accepted.add(1, ordering: .relaxed) }
        if sealed { self.wake.yield() }
        return result
    }

    private func appendAll(_ records: [(ByteBuffer, BatchKey, String?)]) async throws {
        var index = 0
        while index < records.count {
            let (appended, closed, sealed, backlogged) = self.state.withLock { state -> (Int, Bool, Bool, Bool) in
                guard state.phase == .created || state.phase == .running else { return (0, true, false, false) }
                var appended = 0
                var sealed: [SealedBatch] = []
                let now = ContinuousClock.now
                let seconds = wallClockSeconds()
                let room = self.backlogRoom(state)
                loop: while index + appended < records.count {
                    if sealed.count >= room { break }
                    let (body, key, attributes) = records[index + appended]
                    switch state.accumulator.append(body, attributes: attributes, key: key, now: now, wallSeconds: seconds, waiter: nil) {
                    case .accepted: appended += 1
                    case .acceptedAndSealed(let batch):
                        appended += 1
                        sealed.append(batch)
                    case .full: break loop
                    }
                }
                self.enqueue(sealed, into: &state)
                return (appended, false, !sealed.isEmpty, sealed.count >= room)
            }
            if closed { throw DataProxyError(.shutDown, "the client is closed; \(index) of \(records.count) records were accepted") }
            self.counters.accepted.add(appended, ordering: .relaxed)
            if sealed { self.wake.yield() }
            index += appended
            guard index < records.count else { break }
            try await self.waitToAppend(backlogged: backlogged, bytes: records[index].0.readableBytes, key: records[index].1)
        }
    }

    private func waitForRoom(bytes: Int, key: BatchKey) async throws {
        self.counters.bufferFull.add(1, ordering: .relaxed)
        self.counters.streamMetrics(group: key.group, stream: key.stream).bufferFull.increment()
        if self.configuration.buffer.whenFull == .fail {
            throw DataProxyError(
                .bufferFull,
                "the buffer holds its maximum of records or bytes",
                isRetriable: true,
                group: key.group,
                stream: key.stream
            )
        }
        await withCheckedContinuation { continuation in
            let ready = self.state.withLock { state -> Bool in
                if state.phase == .closing || state.phase == .closed { return true }
                if state.accumulator.hasRoom(forBytes: bytes + BatchAccumulator.recordOverhead) { return true }
                state.roomWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Waits out what stopped a run of appends: the dispatcher's backlog, or the quota.
    private func waitToAppend(backlogged: Bool, bytes: Int, key: BatchKey) async throws {
        if backlogged {
            await self.waitForDispatcher()
        } else {
            try await self.waitForRoom(bytes: bytes, key: key)
        }
    }

    /// How many more batches senders may seal before the dispatcher catches up. Called with the lock held.
    private func backlogRoom(_ state: State) -> Int {
        state.backlog.room(ready: state.ready.count)
    }

    /// Waits until the dispatcher has worked the ready queue down (or is stalled, or the client closes).
    private func waitForDispatcher() async {
        await withCheckedContinuation { continuation in
            let ready = self.state.withLock { state -> Bool in
                if state.phase == .closing || state.phase == .closed || state.backlog.releasesWaiters(ready: state.ready.count) {
                    return true
                }
                state.backlogWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Turns sealed batches into jobs at the back of the ready queue. Called with the lock held.
    private func enqueue(_ batches: [SealedBatch], into state: inout State) {
        guard !batches.isEmpty else { return }
        for batch in batches {
            let metrics = self.counters.streamMetrics(group: batch.key.group, stream: batch.key.stream)
            state.ready.append(Job(id: state.nextJobID, batch: batch, metrics: metrics))
            state.liveJobs.append(state.nextJobID)
            state.nextJobID += 1
            metrics.accepted.increment(by: batch.recordCount)
            metrics.queued(bytes: batch.chargedBytes)
        }
        self.counters.heldBytesGauge.record(state.accumulator.heldBytes)
    }

    // MARK: Run

    public func run() async throws {
        let started = self.state.withLock { state -> Bool in
            guard state.phase == .created || state.phase == .closing, state.pool == nil else { return false }
            if state.phase == .created { state.phase = .running }
            return true
        }
        precondition(started, "DataProxyClient.run() must be called once")
        let httpClient = self.configuration.manager == nil ? nil : HTTPClient(eventLoopGroupProvider: .shared(self.eventLoopGroup))
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                var discovery: ProxyDiscovery?
                if let manager = self.configuration.manager, let httpClient {
                    discovery = ProxyDiscovery(configuration: manager, httpClient: httpClient, logger: self.logger)
                }
                guard let pool = await self.makePool(discovery: discovery) else {
                    // Nothing will be sent: refuse new records before failing the held ones.
                    self.state.withLock { state in if state.phase == .running { state.phase = .closing } }
                    self.failEverything()
                    return
                }
                group.addTask { try? await pool.run() }
                if let discovery {
                    group.addTask { await self.refreshLoop(discovery, pool: pool) }
                }
                group.addTask { await self.lingerLoop() }
                await self.dispatchLoop(pool: pool, group: &group)
                pool.close()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.close()
        }
        try? await httpClient?.shutdown()
        self.state.withLock { $0.phase = .closed }
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
            if self.isClosing { return nil }
            try? await Task.sleep(for: backoff.next())
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
        self.state.withLock { state in
            state.pool = pool
            if let maxPacketLength { self.applyFrameLimit(maxPacketLength, to: &state) }
        }
        return pool
    }

    private func applyFrameLimit(_ maxPacketLength: Int, to state: inout State) {
        let limit = Self.blockLimit(self.configuration.batching, frameSize: min(maxPacketLength, self.configuration.batching.maxFrameSize))
        state.accumulator.limits.maxBytes = limit
    }

    private var isClosing: Bool {
        self.state.withLock { $0.phase == .closing || $0.phase == .closed }
    }

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
                self.state.withLock { $0.health.retain(endpoints) }
            }
            if let length = list.maxPacketLength { self.state.withLock { self.applyFrameLimit(length, to: &$0) } }
        }
    }

    private func lingerLoop() async {
        let linger = self.configuration.batching.linger
        // Also the granularity of retry backoffs, hence the 50 ms cap.
        let tick = max(min(linger / 2, .milliseconds(50)), .milliseconds(1))
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: tick)
            } catch {
                return
            }
            let ready = self.state.withLock { state -> Bool in
                let now = ContinuousClock.now
                let batches = state.accumulator.sealExpired(now: now)
                self.enqueue(batches, into: &state)
                var requeued = false
                if !state.retries.isEmpty {
                    state.retries.removeAll { retry in
                        guard retry.due <= now else { return false }
                        if let job = state.pending.removeValue(forKey: retry.id) {
                            state.ready.append(job)
                            requeued = true
                        }
                        return true
                    }
                }
                return !batches.isEmpty || requeued
            }
            if ready { self.wake.yield() }
        }
    }

    /// Submits ready jobs in order, from one task, so that batches of a stream go out in the order they were
    /// sealed; acks are awaited in child tasks.
    private func dispatchLoop(pool: ConnectionPool<DataProxyCodec>, group: inout DiscardingTaskGroup) async {
        var deadlineTimer = false
        // Compression output, reused by every batch: only the exact-size frame is allocated per batch.
        var scratch = ByteBuffer()
        for await _ in self.wakeups {
            let (deadline, done) = self.state.withLock { state -> (ContinuousClock.Instant?, Bool) in
                let done = state.phase == .closing && state.pending.isEmpty && state.ready.isEmpty
                    && state.accumulator.heldRecords == 0
                return (state.shutdownDeadline, done)
            }
            if done { return }
            if let deadline, !deadlineTimer {
                deadlineTimer = true
                group.addTask {
                    try? await Task.sleep(until: deadline)
                    self.failEverything()
                }
            }
            // Popped one by one, so that the queue's length tells senders how far behind this loop is.
            while let job = self.nextJob() {
                guard let job = self.dispatch(job, pool: pool, scratch: &scratch, group: &group) else { continue }
                // No connection ready (starting, or every proxy down): keep this job in order at the front of the
                // queue, and look again shortly, without spending an attempt. Senders buffer meanwhile.
                let waiters = self.state.withLock { state in
                    state.ready.prepend(job)
                    state.backlog.stalled = true
                    return state.takeBacklogWaiters()
                }
                for waiter in waiters { waiter.resume() }
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(20))
                    self.wake.yield()
                }
                break
            }
            if let deadline, ContinuousClock.now >= deadline {
                self.failEverything()
                return
            }
        }
    }

    /// The oldest ready job; lets waiting senders go on once the queue is worked down.
    private func nextJob() -> Job? {
        let (job, waiters) = self.state.withLock { state -> (Job?, [CheckedContinuation<Void, Never>]) in
            let job = state.ready.popFirst()
            guard !state.backlogWaiters.isEmpty, state.backlog.releasesWaiters(ready: state.ready.count) else { return (job, []) }
            return (job, state.takeBacklogWaiters())
        }
        for waiter in waiters { waiter.resume() }
        return job
    }

    /// Sends one job; returns it back, encoded, when no connection is ready.
    private func dispatch(
        _ job: consuming Job,
        pool: ConnectionPool<DataProxyCodec>,
        scratch: inout ByteBuffer,
        group: inout DiscardingTaskGroup
    ) -> Job? {
        var job = job
        let now = ContinuousClock.now
        if now - job.batch.createdAt >= self.configuration.retry.deliveryTimeout {
            self.finish(job, .failure(self.error(.deliveryTimeout, "not acked within the delivery timeout", job: job, retriable: true)))
            return nil
        }
        var avoided = self.state.withLock { state in
            if job.frame == nil {
                state.nextUniq &+= 1
                job.uniq = state.nextUniq
            }
            return state.health.avoided(now: now)
        }
        if let last = job.lastProxy { avoided.insert(last) }
        // The frame holds the records once encoded (a failure report decodes them from it): the block goes back
        // to the accumulator, so memory holds what is on its way rather than twice that.
        var spentBlock: ByteBuffer?
        if job.frame == nil {
            do {
                job.frame = try self.encode(job, scratch: &scratch)
                spentBlock = job.batch.block
                job.batch.block = ByteBuffer()
            } catch {
                self.finish(job, .failure(self.error(.invalidArgument, "cannot encode the batch: \(error)", job: job, retriable: false)))
                return nil
            }
        }
        let future: EventLoopFuture<InLongResponse>
        let connection: PersistentConnection<DataProxyCodec>
        do {
            (connection, future) = try pool.submit(.data(uniq: job.uniq, frame: job.frame!), avoiding: avoided)
        } catch {
            if let spentBlock { self.state.withLock { $0.accumulator.recycle(spentBlock) } }
            return job
        }
        job.attempts += 1
        job.lastProxy = connection.configuration.endpoints.first
        let sentAt = ContinuousClock.now
        if job.firstSentAt == nil { job.firstSentAt = sentAt }
        self.state.withLock { state in
            state.pending[job.id] = job
            state.backlog.stalled = false
            if let spentBlock { state.accumulator.recycle(spentBlock) }
        }
        self.counters.sent.add(job.batch.recordCount, ordering: .relaxed)
        job.metrics.sent.increment(by: job.batch.recordCount)
        job.metrics.inFlight(1)
        self.counters.batchesSent.add(1, ordering: .relaxed)
        self.counters.bytesSent.add(job.frame!.readableBytes, ordering: .relaxed)
        let sentJob = job
        group.addTask {
            let result: Result<InLongResponse, any Error>
            do {
                result = .success(try await future.get())
            } catch {
                result = .failure(error)
            }
            self.completed(sentJob, result: result, sentAt: sentAt)
        }
        return nil
    }

    private func encode(_ job: Job, scratch: inout ByteBuffer) throws -> ByteBuffer {
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
            attributes: "groupId=\(key.group)&streamId=\(key.stream)"
        )
        var frame = ByteBufferAllocator().buffer(capacity: message.frameLength)
        try message.encode(into: &frame)
        return frame
    }

    private func completed(_ job: Job, result: Result<InLongResponse, any Error>, sentAt: ContinuousClock.Instant) {
        job.metrics.inFlight(-1)
        // What the outcome says of the proxy: a fatal errCode is about the records, not the proxy.
        let healthy: Bool? = switch result {
        case .success(.binaryAck(let ack)) where ack.result.isDelivered: true
        case .success(.binaryAck(let ack)): ack.result.errorCode.disposition == .retriable ? false : nil
        case .success, .failure: false
        }
        // A job failed by the shutdown deadline is no longer pending: its late outcome is ignored.
        guard let job = self.state.withLock({ state -> Job? in
            guard let job = state.pending.removeValue(forKey: job.id) else { return nil }
            if healthy == true, let proxy = job.lastProxy { state.health.succeeded(proxy) }
            return job
        }) else { return }
        if healthy == false, let proxy = job.lastProxy { self.recordFailure(of: proxy) }
        let proxy = job.lastProxy ?? Endpoint(host: "?", port: 0)
        switch result {
        case .success(.binaryAck(let ack)):
            let outcome = ack.result
            if outcome.isDelivered {
                let latency = ContinuousClock.now - sentAt
                self.finish(job, .success(DataProxyAck(proxy: proxy, proxyIP: outcome.proxyIP, latency: latency, attempts: job.attempts)))
                return
            }
            var error = self.error(.serverRejected, "the proxy answered errCode \(outcome.errorCode)", job: job, retriable: outcome.errorCode.disposition == .retriable)
            error.serverErrorCode = outcome.errorCode
            error.serverErrorMessage = outcome.errorMessage
            error.persistence = .notSent
            self.retryOrFail(job, error)
        case .success(let other):
            self.retryOrFail(job, self.error(.connectionFailed, "unexpected reply \(other)", job: job, retriable: true))
        case .failure(let failure):
            var error = self.error(.connectionFailed, "\(failure)", job: job, retriable: true)
            let transport = failure as? TransportError
            error.underlying = transport
            var job = job
            if transport?.mayHaveBeenDelivered ?? true {
                job.mayHaveBeenDelivered = true
            } else {
                // Refused before a byte was written (a connection closing or not ready): not an attempt, so a
                // connection cycling fast cannot use up a record's attempts; the delivery deadline still binds.
                job.attempts -= 1
            }
            error.persistence = job.mayHaveBeenDelivered ? .possiblySent : .notSent
            self.retryOrFail(job, error)
        }
    }

    /// Counts a failed batch against `proxy`, which is avoided for a while after too many in a row.
    private func recordFailure(of proxy: Endpoint) {
        let usable = self.state.withLock { $0.pool }?.endpoints ?? []
        let pause = self.state.withLock { $0.health.failed(proxy, now: .now, usable: usable) }
        if let pause {
            self.logger.warning("avoiding a failing proxy", metadata: ["inlong.proxy": "\(proxy)", "inlong.pause": "\(pause)"])
        }
    }

    private func retryOrFail(_ job: Job, _ error: DataProxyError) {
        var job = job
        job.lastError = error
        guard error.isRetriable, job.attempts < self.configuration.retry.maxAttempts, !self.pastShutdownDeadline else {
            self.finish(job, .failure(error))
            return
        }
        self.counters.retries.add(1, ordering: .relaxed)
        job.metrics.retried.increment()
        var backoff = self.configuration.retry.backoff.makeIterator()
        var delay = backoff.next()
        for _ in 1..<max(job.attempts, 1) { delay = backoff.next() }
        self.logger.debug(
            "retrying a batch",
            metadata: ["inlong.attempt": "\(job.attempts)", "inlong.error": "\(error)", "inlong.delay": "\(delay)"]
        )
        self.state.withLock { state in
            state.pending[job.id] = job
            state.retries.append((.now + delay, job.id))
        }
    }

    private var pastShutdownDeadline: Bool {
        self.state.withLock { state in state.shutdownDeadline.map { ContinuousClock.now >= $0 } ?? false }
    }

    private func error(_ code: DataProxyError.Code, _ detail: String, job: Job, retriable: Bool) -> DataProxyError {
        DataProxyError(
            code,
            detail,
            isRetriable: retriable,
            persistence: job.mayHaveBeenDelivered ? .possiblySent : .notSent,
            group: job.batch.key.group,
            stream: job.batch.key.stream,
            attempts: job.attempts,
            proxy: job.lastProxy
        )
    }

    /// Ends a job: releases its quota, resumes its waiters, reports it. Exactly once per job.
    private func finish(_ job: Job, _ result: Result<DataProxyAck, DataProxyError>) {
        let batch = job.batch
        let (waiters, sinks, done, held, flushed) = self.state.withLock { state in
            state.accumulator.release(bytes: batch.chargedBytes, records: batch.recordCount)
            if job.id >= 0 {
                if state.liveJobs.first == job.id {
                    state.liveJobs.removeFirst()
                    while let oldest = state.liveJobs.first, state.endedOutOfOrder.remove(oldest) != nil {
                        state.liveJobs.removeFirst()
                    }
                } else {
                    state.endedOutOfOrder.insert(job.id)
                }
            }
            var flushed: [CheckedContinuation<Bool, Never>] = []
            if !state.flushWaiters.isEmpty {
                let oldestLive = state.liveJobs.first ?? state.nextJobID
                for (id, waiter) in state.flushWaiters where waiter.target <= oldestLive {
                    flushed.append(waiter.continuation)
                    state.flushWaiters[id] = nil
                }
            }
            defer { state.roomWaiters = [] }
            let done = state.phase == .closing && state.accumulator.heldRecords == 0
            return (state.roomWaiters, Array(state.reportSinks.values), done, state.accumulator.heldBytes, flushed)
        }
        self.counters.heldBytesGauge.record(held)
        for waiter in waiters { waiter.resume() }
        let metrics = job.metrics
        metrics.queued(bytes: -batch.chargedBytes)
        let report: DeliveryReport
        switch result {
        case .success(let ack):
            self.counters.acked.add(batch.recordCount, ordering: .relaxed)
            self.counters.latency.withLock { $0.record(ack.latency) }
            metrics.acked.increment(by: batch.recordCount)
            metrics.ackLatency.recordNanoseconds(TimeAmount(ack.latency).nanoseconds)
            for waiter in batch.waiters { waiter.resume(returning: ack) }
            report = DeliveryReport(group: batch.key.group, stream: batch.key.stream, recordCount: batch.recordCount, outcome: .acked(ack), failedRecords: [])
        case .failure(let error):
            self.counters.recordFailure(error.code.description, metrics: metrics, records: batch.recordCount)
            for waiter in batch.waiters { waiter.resume(throwing: error) }
            let bodies: [ByteBuffer]
            if let frame = job.frame {
                bodies = (try? InLongBinaryMessage(frame: frame).records())?.map(\.data) ?? []
            } else {
                let extendedField: InLongExtendedField = batch.key.perRecordAttributes ? .perRecordAttributes : []
                bodies = (try? InLongRecordBlock.decode(batch.block, extendedField: extendedField))?.map(\.data) ?? []
            }
            report = DeliveryReport(group: batch.key.group, stream: batch.key.stream, recordCount: batch.recordCount, outcome: .failed(error), failedRecords: bodies)
            self.logger.debug("records failed", metadata: ["inlong.records": "\(batch.recordCount)", "inlong.error": "\(error)"])
            self.failureHandler?(report)
        }
        for sink in sinks {
            if case .dropped = sink.yield(report) { self.counters.reportsDropped.add(1, ordering: .relaxed) }
        }
        // Last, so that a flush that returns sees these records counted.
        for waiter in flushed { waiter.resume(returning: true) }
        if done { self.wake.yield() }
    }

    /// At the shutdown deadline (or when no proxy can be found), every record still held fails.
    private func failEverything() {
        let (jobs, open, waiters) = self.state.withLock { state -> ([Job], [SealedBatch], [CheckedContinuation<Void, Never>]) in
            let jobs = Array(state.ready) + Array(state.pending.values)
            state.ready.removeAll()
            state.pending.removeAll()
            return (jobs, state.accumulator.sealAll(), state.takeBacklogWaiters())
        }
        for waiter in waiters { waiter.resume() }
        var all = jobs
        for batch in open {
            let metrics = self.counters.streamMetrics(group: batch.key.group, stream: batch.key.stream)
            metrics.queued(bytes: batch.chargedBytes)
            all.append(Job(id: -1, batch: batch, metrics: metrics))
        }
        for job in all.sorted(by: { $0.batch.createdAt < $1.batch.createdAt }) {
            self.finish(job, .failure(self.error(.shutDown, "the client closed before an ack", job: job, retriable: true)))
        }
        self.wake.yield()
    }
}

/// Runs a client for the duration of `body`, then closes it (waiting up to `closeDeadline` for acks).
public func withDataProxyClient<Result: Sendable>(
    configuration: DataProxyClient.Configuration,
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    logger: Logger = Logger(label: "inlong.client", factory: { _ in SwiftLogNoOpLogHandler() }),
    closeDeadline: Duration = .seconds(30),
    _ body: (DataProxyClient) async throws -> Result
) async throws -> Result {
    let client = DataProxyClient(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await client.run() }
        do {
            let result = try await body(client)
            client.close(deadline: closeDeadline)
            try await group.waitForAll()
            return result
        } catch {
            client.close(deadline: closeDeadline)
            try? await group.waitForAll()
            throw error
        }
    }
}

private func wallClockSeconds() -> UInt32 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt32(truncatingIfNeeded: now.tv_sec)
}
