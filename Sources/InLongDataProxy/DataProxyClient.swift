import DequeModule
import Foundation
import InLongTransport
import InLongWire
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sends records to InLong DataProxy servers: batched per (group, stream) into type-7 messages, acked by `uniq`,
/// retried with backoff on another proxy until their delivery deadline, within a byte and record quota. Every
/// record accepted by a `send` ends in exactly one outcome, acked or failed, reported to the caller.
///
/// Run it as a `Service` (``run()`` owns discovery, connections and dispatch), or use
/// ``withDataProxyClient(configuration:eventLoopGroup:logger:closeDeadline:_:)`` in scripts:
/// ```swift
/// try await withDataProxyClient(configuration: .init(proxies: [Endpoint(host: "127.0.0.1", port: 46801)])) { client in
///     try await client.send("hello", group: "g", stream: "s")
///     await client.flush()
/// }
/// ```
/// Cancelling the task that runs ``run()`` closes the client with no grace: every record still held is reported
/// failed, every suspended caller resumes, and every ``deliveryReports()`` sequence finishes.
///
/// The client logs through the `Logger` it is given; by default one labelled `inlong.client` with swift-log's
/// bootstrapped handler (standard error at `info` when the application bootstrapped none). A proxy or Manager
/// that cannot be reached is said once at `warning`, naming its address and the cause; each retry after it at
/// `debug`. Pass `Logger(label: "inlong.client", factory: { _ in SwiftLogNoOpLogHandler() })` for silence.
public final class DataProxyClient: Service, Sendable {
    typealias Machine = DeliveryStateMachine<FlushWaiter>
    typealias FlushWaiter = CheckedContinuation<Bool, Never>

    /// Ready batches at which senders wait for the dispatcher (with ``Buffer/WhenFull/wait``); see
    /// ``DispatchBacklog``.
    static let maxBacklog = 16

    /// Batches compressed at once beside the dispatcher: one per core, up to 4.
    static let encoders = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 4))

    public let configuration: Configuration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    /// Every delivery decision, the report sequences and what discovery last said, behind the client's one lock
    /// (see ``modifyState(_:)``).
    let state: Mutex<State>
    /// Per-task batches of single records, appended outside the client's lock; none with a spool (its records
    /// are written to disk in id order under the lock).
    let lanes: AppendLanes?
    /// The records' ids, taken by the machine and by the lanes.
    let recordIDs = RecordIDSource()
    /// Where each group's batches go, with the ready connections.
    let router: ProxyRouter
    /// The HTTP transport, when ``Configuration/transport`` is ``Transport/http``: it replaces the router's pools.
    let httpTransport: HTTPBatchTransport?
    let started = Atomic(false)
    /// The dispatcher's wake-ups: a batch sealed, a retry due, a connection ready, a route found, the close.
    let wakeups: AsyncStream<Void>
    let wake: AsyncStream<Void>.Continuation
    /// Discovery's wake-ups: a group met without proxies, or the schedule's next step due.
    let discoveryWakeups: AsyncStream<Void>
    let discoveryWake: AsyncStream<Void>.Continuation
    let observation: ClientObservation
    /// Answers to submitted batches, from the event loops to ``drainCompletions()``.
    let completions = CompletionQueue<Completion>()
    /// The spool, when configured and opened (and locked) at init.
    let spool: Spool?
    /// Why the configured spool could not be opened: every send and `run()` fail with it. Checked through
    /// `spoolFailed` on the per-record path (reading the error itself would copy it).
    let spoolError: DataProxyError?
    let spoolFailed: Bool
    /// Open unless the spool holds records a previous client left and they were not appended again yet.
    let spoolReplayed: SpoolReplayGate
    /// Per-minute counts to InLong Audit, when configured.
    let audit: ClientAudit?
    /// The first group and stream a send found valid (``areValidNames(group:stream:)``), retained until deinit.
    /// An atomic rather than `AtomicLazyReference`, whose `load()` is an unspecialized generic call.
    let firstValidNames = Atomic<Unmanaged<ValidNames>?>(nil)

    /// A group and stream found valid.
    final class ValidNames: Sendable {
        let group: String
        let stream: String

        init(group: String, stream: String) {
            self.group = group
            self.stream = stream
        }
    }

    /// What the client's lock guards.
    struct State {
        var machine: Machine
        var reports = ReportStreams()
        var discovery = DiscoveryStatus()
        /// Runs of ended jobs' actions (counts, audit, spool, reports) under way outside the lock: the dispatcher
        /// stops only once none is, so that the audit's last counts, the spool and the report streams close after
        /// every record's outcome reached them.
        var endingRuns = 0
        /// Flushes whose records all ended while another thread's ending run was still under way: resumed when the
        /// last such run is over, so that a flush that returns sees every ended record counted and reported.
        var flushesAfterEndings: [(waiter: FlushWaiter, allEnded: Bool)] = []

        /// Whether the client closed, every record ended and every ending was told.
        var isFinished: Bool { self.endingRuns == 0 && self.machine.isFinished }
    }

    /// What discovery last said, for statistics and logs, and when its schedule is next due.
    struct DiscoveryStatus {
        /// The last discovery failure of a group without proxies.
        var error: String?
        /// The last failure said per group, so that a Manager that stays down is said once at warning.
        var failures: [String: String] = [:]
        /// When the discovery schedule's next step is due (the clock wakes discovery then). Held with a fixed
        /// layout, as the client's whole state is then (see ``FixedInstant``).
        var dueAt: FixedInstant?
        var due: ContinuousClock.Instant? {
            get { self.dueAt?.instant }
            set { self.dueAt = newValue.map(FixedInstant.init) }
        }
    }

    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "inlong.client")
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.observation = ClientObservation(delegate: ClientObservation.delegate(for: configuration))
        let opened = configuration.spool.map { spool in Result { () throws(DataProxyError) in try Spool(configuration: spool) } }
        self.spool = try? opened?.get()
        if case .failure(let error)? = opened { self.spoolError = error } else { self.spoolError = nil }
        self.spoolFailed = self.spoolError != nil
        let leftovers = self.spool?.leftovers.isEmpty == false
        self.spoolReplayed = SpoolReplayGate(open: !leftovers)
        self.audit = ClientAudit(configuration.audit, logger: logger)
        let limits = BatchAccumulator.Limits(
            maxRecords: max(1, min(configuration.batching.maxRecords, Int(UInt16.max))),
            maxBytes: Self.blockLimit(configuration.batching, frameSize: configuration.batching.maxFrameSize),
            linger: configuration.batching.linger,
            quotaBytes: configuration.buffer.maxBytes,
            quotaRecords: configuration.buffer.maxRecords
        )
        let machineConfiguration = Machine.Configuration(
            deliveryTimeout: configuration.retry.deliveryTimeout,
            maxAttempts: configuration.retry.maxAttempts,
            retryBackoff: configuration.retry.backoff,
            backlogLimit: configuration.buffer.whenFull == .wait ? Self.maxBacklog : .max,
            // Over HTTP each attempt encodes its own form: nothing to encode ahead.
            encoders: configuration.transport == .http ? 0 : Self.encoders
        )
        self.state = Mutex(State(machine: Machine(configuration: machineConfiguration, limits: limits, recordIDs: self.recordIDs)))
        self.lanes = configuration.spool == nil ? AppendLanes(count: AppendLanes.defaultCount) : nil
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let (discoveryWakeups, discoveryWake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (self.wakeups, self.wake) = (wakeups, wake)
        (self.discoveryWakeups, self.discoveryWake) = (discoveryWakeups, discoveryWake)
        let connection = configuration.connection
        self.router = ProxyRouter(
            subsetSize: connection.maxProxies,
            seed: connection.subsetSeed ?? UInt64.random(in: .min ... .max),
            policy: connection.balanceByReportedLoad ? .leastLoaded : .leastInFlight,
            health: .init(threshold: connection.ejectAfterFailures, basePause: connection.avoidPause),
            logger: logger,
            connectionReady: { wake.yield() },
            groupMet: { discoveryWake.yield() },
            makePool: { endpoints, readinessChanged in
                DataProxyClient.makePool(endpoints, configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, readinessChanged: readinessChanged)
            }
        )
        self.httpTransport = configuration.transport == .http ? HTTPBatchTransport(configuration: configuration) : nil
        if !configuration.unsupportedKeys.isEmpty {
            logger.warning(
                "configuration keys not supported",
                metadata: ["inlong.keys": "\(configuration.unsupportedKeys.joined(separator: ","))"]
            )
        }
    }

    deinit {
        self.firstValidNames.load(ordering: .acquiring)?.release()
    }

    /// The record-block limit: the configured batch size, but never a frame larger than `frameSize` (header,
    /// attributes and slack reserved, as the Java SDK reserves 256 bytes).
    static func blockLimit(_ batching: Batching, frameSize: Int) -> Int {
        max(min(batching.maxBytes, frameSize - InLongBinaryMessage.fixedLength - 512), 64)
    }

    // MARK: The lock

    /// The client's one lock site: locks, changes the state, tells the quota gauge inside the lock (its reports
    /// must keep their order, as async-http-client runs such actions), unlocks, then runs the other actions.
    /// `nil` actions (the per-record path) cost nothing to build or to run. Inlined, since the per-record path
    /// otherwise copies what its closure captures; a hot async caller calls it through a synchronous function
    /// (``appendUnderLock(_:attributes:key:observer:)``), as an async frame allocates its temporaries per call.
    @inline(__always)
    func modifyState<Value>(_ body: (inout State) -> (Value, Machine.Actions?)) -> Value {
        let (value, deferred) = self.modifyStateDeferringActions(body)
        if let deferred { self.runDeferred(deferred) }
        return value
    }

    /// Actions of a turn under the lock, run later: a lane's turns run under the lane's lock as well, and what
    /// their actions run (resumed callers, reports) must not run under it.
    struct DeferredActions {
        fileprivate var actions: Machine.Actions
        fileprivate var readers: [ReportSubscription]
    }

    /// ``modifyState(_:)``'s turn under the lock, with its actions returned to be run by ``runDeferred(_:)``.
    @inline(__always)
    func modifyStateDeferringActions<Value>(_ body: (inout State) -> (Value, Machine.Actions?)) -> (Value, DeferredActions?) {
        self.state.withLock { state -> (Value, DeferredActions?) in
            let (value, actions) = body(&state)
            guard let actions else { return (value, nil) }
            if let held = actions.heldBytes { self.observation.heldBytesChanged(held) }
            guard !actions.finish.isEmpty else { return (value, DeferredActions(actions: actions, readers: [])) }
            state.endingRuns += 1
            // The readers the ended jobs' reports go to, as the machine counted them for the holds.
            return (value, DeferredActions(actions: actions, readers: state.reports.live))
        }
    }

    /// Runs a turn's actions outside the lock.
    @inline(__always)
    func runDeferred(_ deferred: DeferredActions) {
        let actions = deferred.actions
        guard !actions.isEmpty else { return }
        self.run(actions, readers: deferred.readers)
        if !actions.finish.isEmpty || !actions.resumeFlushes.isEmpty {
            self.endingRunDone(ended: !actions.finish.isEmpty, flushes: actions.resumeFlushes)
        }
    }

    /// Calls the machine and runs the actions it returns.
    @inline(__always)
    func withMachine<Value>(_ body: (inout Machine) -> (Value, Machine.Actions)) -> Value {
        self.modifyState { state in
            let (value, actions) = body(&state.machine)
            return (value, actions)
        }
    }

    /// Calls the machine for a read, or an event that asks for no action.
    @inline(__always)
    func withMachineState<Value>(_ body: (inout Machine) -> Value) -> Value {
        self.modifyState { (body(&$0.machine), nil) }
    }

    /// An ending run is over (`ended`), or a run resumes `flushes`: flushes are resumed once no ending run is
    /// under way; the last run after the close wakes the dispatcher, which may now stop.
    private func endingRunDone(ended: Bool, flushes: [(waiter: FlushWaiter, allEnded: Bool)]) {
        let (resumed, wake) = self.state.withLock { state -> ([(waiter: FlushWaiter, allEnded: Bool)], Bool) in
            if ended { state.endingRuns -= 1 }
            guard state.endingRuns == 0 else {
                state.flushesAfterEndings += flushes
                return ([], false)
            }
            defer { state.flushesAfterEndings = [] }
            return (state.flushesAfterEndings + flushes, ended && state.isFinished)
        }
        if wake { self.wake.yield() }
        for (waiter, allEnded) in resumed { waiter.resume(returning: allEnded) }
    }

    /// A flush whose records all ended: resumed now, or once the ending runs under way are over.
    func resumeEndedFlush(_ waiter: FlushWaiter) {
        let now = self.state.withLock { state in
            guard state.endingRuns > 0 else { return true }
            state.flushesAfterEndings.append((waiter, true))
            return false
        }
        if now { waiter.resume(returning: true) }
    }

    // MARK: Actions

    /// Runs what the machine decided, outside its lock (the quota gauge was told under it).
    private func run(_ actions: Machine.Actions, readers: [ReportSubscription]) {
        if actions.wakeDispatcher { self.wake.yield() }
        for sealed in actions.sealed {
            self.observation.batchQueued(sealed.key, records: sealed.records, bytes: sealed.bytes)
            self.audit?.sealed(group: sealed.key.group, stream: sealed.key.stream, dataTime: sealed.dataTime, records: sealed.records, bytes: sealed.bytes - sealed.records * BatchAccumulator.recordOverhead)
        }
        for (job, result, reportHolds) in actions.finish { self.finish(job, result, reportHolds: reportHolds, readers: readers) }
        for waiter in actions.resumeSenders { waiter.resume(returning: true) }
        for retried in actions.retried {
            self.observation.batchRetried(retried.key, attempt: retried.attempts + 1, error: retried.error)
            self.logger.debug(
                "retrying a batch",
                metadata: ["inlong.attempt": "\(retried.attempts)", "inlong.error": "\(retried.error)", "inlong.delay": "\(retried.delay)"]
            )
        }
        // Flushes are resumed by `endingRunDone`, once every ended record was counted and reported.
    }

    /// Counts, tells the observers of, and reports a job that ended. Its quota was released, or is held until
    /// the report readers took the report (`reportHolds`).
    private func finish(_ job: DeliveryJob, _ result: Result<DataProxyAck, DataProxyError>, reportHolds: Bool, readers: [ReportSubscription]) {
        let batch = job.batch
        let outcome: DeliveryReport.Outcome
        switch result {
        case .success(let ack):
            self.observation.batchAcked(batch.key, records: batch.recordCount, bytes: batch.chargedBytes, latency: ack.latency)
            outcome = .acked(ack)
        case .failure(let error):
            self.observation.batchFailed(batch.key, records: batch.recordCount, bytes: batch.chargedBytes, error: error)
            self.logger.debug("records failed", metadata: ["inlong.records": "\(batch.recordCount)", "inlong.error": "\(error)"])
            outcome = .failed(error)
        }
        for observer in batch.observers { observer.ended(result) }
        self.audit?.ended(
            group: batch.key.group, stream: batch.key.stream, dataTime: batch.dataTime, records: batch.recordCount,
            bytes: batch.chargedBytes - batch.recordCount * BatchAccumulator.recordOverhead, acked: result.failureCode == nil
        )
        // Records failed by the close stay in the spool: the next client on it sends them.
        if let spool = self.spool, result.failureCode != .shutDown {
            spool.ended(batch.ids)
        }
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
}

/// Where a parked caller's id meets its cancellation, whichever comes first: one atomic, since either side may
/// come first and neither waits for the other.
final class WaitTicket: Sendable {
    private static let idle = 0
    private static let cancelled = -1
    /// `idle`, `cancelled`, or the parked id plus one.
    private let state = Atomic(WaitTicket.idle)

    /// Records the id; `false` when cancelled already (the caller then cancels the wait itself).
    func park(_ id: Int) -> Bool {
        self.state.compareExchange(expected: Self.idle, desired: id + 1, ordering: .acquiringAndReleasing).exchanged
    }

    /// Marks the wait cancelled; the id to cancel when it was parked.
    func cancel() -> Int? {
        let old = self.state.exchange(Self.cancelled, ordering: .acquiringAndReleasing)
        return old > 0 ? old - 1 : nil
    }
}

/// Runs a client for the duration of `body`, then closes it (waiting up to `closeDeadline` for acks).
public func withDataProxyClient<Result: Sendable>(
    configuration: DataProxyClient.Configuration,
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    logger: Logger = Logger(label: "inlong.client"),
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

/// The wall clock in whole seconds. Read with `clock_gettime`: Foundation's `Date` costs several times as much,
/// once per record on the per-record path.
func wallClockSeconds() -> UInt32 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt32(truncatingIfNeeded: now.tv_sec)
}

extension Result where Failure == DataProxyError {
    var failureCode: DataProxyError.Code? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}
