import AsyncAlgorithms
import Foundation
public import InLongDataProxy
public import InLongTransport
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The InLong Agent: collects lines from files into InLong through a `DataProxyClient` and remembers, per
/// file, how far its lines are acked, so that a crash, a restart, a rotation or a proxy outage never loses a
/// line (at-least-once: a restart sends again at most what was read and not yet acked).
///
/// Source → Instance → DataProxy Sink, in InLong Agent's words: every file matching a source's paths gets an
/// instance reading its lines; each read is sent with one receipt; a file's committed
/// offset is the end of its longest acked prefix, written atomically to the checkpoint every
/// ``AgentConfiguration/checkpointInterval`` and at shutdown.
///
/// Run it as a `Service`: a graceful shutdown stops reading, waits up to
/// ``AgentConfiguration/shutdownTimeout`` for acks, writes the checkpoint and returns. Cancelling ``run()``
/// stops at once; the checkpoint written is still exact.
public final class Agent: Service, Sendable {
    public let configuration: AgentConfiguration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    /// Files and checkpoints; the lines and bytes are counted per group, in ``Lane/counters``.
    let counters = AgentCounters()
    /// `nil` when no metrics backend is configured or bootstrapped. Looked up again when the agent runs: a command
    /// may bootstrap its metrics backend after making the agent.
    private let metricsInUse: Mutex<AgentMetrics?>
    var metrics: AgentMetrics? { self.metricsInUse.withLock { $0 } }
    let control = AgentControl()
    private let state: Mutex<State>
    private let nextWaiterID = Atomic(0)

    /// Everything that changes while the agent runs, behind one lock: the file set's machine, and the lanes.
    struct State {
        var machine: AgentStateMachine<CheckedContinuation<Void, Never>>
        /// One lane per group, while ``run()`` runs and after (for the last statistics).
        var lanes: [String: Lane] = [:]
        var clientsRunning = false
        var recovery: CheckpointRecovery?
        /// The sources run for the tasks, and each one's stop control (see `Agent+Tasks.swift`).
        var tasks = TaskReconciler()
        var sourceControls: [Int: AgentControl] = [:]
        /// The network listeners, once bound (see `Agent+Listeners.swift`).
        var listeners: [ListenerServer] = []
        /// Each source's own counts, by metrics name (see `Agent+Sources.swift`).
        var sources: [String: SourceCounting] = [:]
        /// Each rate-limited source's limiter, with the limit it was made for, by metrics name.
        var rateLimiters: [String: (AgentConfiguration.RateLimit, SourceRateLimiter)] = [:]
    }

    /// What one group's files go through: its own client (so that a cluster that is down holds only this group's
    /// share of memory, and `send` for another group never waits behind it), its own share of the read-ahead
    /// budget, and its counts.
    struct Lane: Sendable {
        let group: String
        let client: DataProxyClient
        let budget: ByteBudget
        let counters: AgentCounters
    }

    public init(
        configuration: AgentConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger.disabled
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.metricsInUse = Mutex(metricsFactoryInUse(configuration.client.metricsFactory).map { AgentMetrics(factory: $0) })
        self.state = Mutex(State(machine: AgentStateMachine(maxOpenFiles: configuration.maxOpenFiles, stallAfter: configuration.stallAfter)))
    }

    /// The one lock site: runs `event` on the state, then resumes the waiters it returns (after the lock, as they
    /// run on).
    func modifyStateAndRunActions<Result: Sendable>(_ event: (inout State) -> (Result, [CheckedContinuation<Void, Never>])) -> Result {
        let (result, resume) = self.state.withLock { event(&$0) }
        for waiter in resume { waiter.resume() }
        return result
    }

    /// Stops reading; what was read gets until ``AgentConfiguration/shutdownTimeout`` to be acked.
    public func stop() {
        self.control.stop(deadline: .now + self.configuration.shutdownTimeout)
        self.stopSources()
    }

    /// A checkpoint file that could not be read at start: it is moved aside, not deleted, and files are read from
    /// their start.
    public struct CheckpointRecovery: Sendable, Hashable {
        /// Where the unreadable file was moved (`checkpoint.json.corrupt-<time>`).
        public var setAsidePath: String
        /// Why it could not be read: corrupt, or written by a newer version.
        public var reason: String
    }

    /// The checkpoint file that was unreadable at start and set aside, if any.
    public var checkpointRecovery: CheckpointRecovery? { self.modifyStateAndRunActions { ($0.recovery, []) } }

    /// The groups of the sources, each sent through its own client.
    public var groups: [String] { Array(Set(self.configuration.sources.map(\.group) + self.configuration.listeners.map(\.group))).sorted() }

    /// The statistics of the client sending `group`'s lines (proxies reached, why others cannot be, acks and
    /// failures), or `nil` when the agent does not run.
    public func clientStatistics(group: String) -> DataProxyClientStatistics? {
        let lane = self.modifyStateAndRunActions { ($0.clientsRunning ? $0.lanes[group] : nil, []) }
        return lane?.client.statistics()
    }

    /// Returns once the agent caught up: it scanned, and every file found is read to its end (a last line without
    /// its newline counts as read) and acked, and no file waiting for a slot has bytes past its checkpoint; or once
    /// its run ended, or the task is cancelled. `inlong agent --once` stops it then.
    package func waitUntilCaughtUp() async {
        let id = self.nextWaiterID.wrappingAdd(1, ordering: .relaxed).oldValue
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // Cancelled before it queued: the handler found nothing, so it returns here. Both look under the
                // lock, so one of them resumes it.
                self.modifyStateAndRunActions { state in
                    ((), state.machine.waitUntilCaughtUp(id: id, continuation, cancelled: Task.isCancelled))
                }
            }
        } onCancel: {
            self.modifyStateAndRunActions { ((), $0.machine.cancelWait(id: id)) }
        }
    }

    public func statistics() -> AgentStatistics {
        var statistics = AgentStatistics()
        statistics.filesOpened = self.counters.filesOpened.load(ordering: .relaxed)
        statistics.filesReleased = self.counters.filesReleased.load(ordering: .relaxed)
        statistics.filesClosedInactive = self.counters.filesClosedInactive.load(ordering: .relaxed)
        statistics.readErrors = self.counters.readErrors.load(ordering: .relaxed)
        statistics.checkpointsWritten = self.counters.checkpointsWritten.load(ordering: .relaxed)
        let (lanes, stalled) = self.modifyStateAndRunActions { state in
            state.machine.fill(&statistics)
            return ((state.lanes, state.machine.stalled), [])
        }
        let now = ContinuousClock.now
        for lane in lanes.values.sorted(by: { $0.group < $1.group }) {
            let counters = lane.counters
            var group = AgentGroupStatistics(group: lane.group)
            group.linesRead = counters.linesRead.load(ordering: .relaxed)
            let acked = counters.linesAcked.load(ordering: .relaxed)
            let deadLettered = counters.deadLettered.load(ordering: .relaxed)
            group.linesEnded = acked + deadLettered
            let bytesRead = counters.bytesRead.load(ordering: .relaxed)
            let bytesAcked = counters.bytesAcked.load(ordering: .relaxed)
            group.bytesWaiting = max(0, bytesRead - bytesAcked)
            if let since = stalled[lane.group] {
                group.stalledFor = now - since
                group.proxyProblem = self.clientStatistics(group: lane.group).flatMap(Self.proxyProblem)
            }
            statistics.groups.append(group)
            statistics.linesRead += group.linesRead
            statistics.bytesRead += bytesRead
            statistics.linesAcked += acked
            statistics.bytesAcked += bytesAcked
            statistics.deadLettered += deadLettered
            statistics.deadLetterFailures += counters.deadLetterFailures.load(ordering: .relaxed)
            statistics.resent += counters.resent.load(ordering: .relaxed)
            statistics.readErrors += counters.readErrors.load(ordering: .relaxed)
        }
        statistics.sources = self.sourceStatistics()
        return statistics
    }

    /// Why a client's proxies take nothing: none reachable (with each one's error, or discovery's), or those
    /// reached do not answer.
    static func proxyProblem(_ statistics: DataProxyClientStatistics) -> String? {
        if statistics.readyProxies == 0 {
            let reasons = statistics.proxyErrors.map { "\($0.key): \($0.value)" }.sorted() + [statistics.discoveryError].compactMap { $0 }
            return reasons.isEmpty ? "no proxy connected yet" : "cannot reach a proxy: " + reasons.joined(separator: "; ")
        }
        let proxies = statistics.reachableProxies.map(\.description).sorted().joined(separator: ", ")
        return "no answer from \(proxies.isEmpty ? "the proxies" : proxies)"
    }

    public func run() async throws {
        for source in self.configuration.sources { try source.validate() }
        for listener in self.configuration.listeners { try listener.validate() }
        self.metricsInUse.withLock { metrics in
            if metrics == nil { metrics = metricsFactoryInUse(self.configuration.client.metricsFactory).map { AgentMetrics(factory: $0) } }
        }
        try FileManager.default.createDirectory(atPath: self.configuration.stateDirectory, withIntermediateDirectories: true)
        let store = CheckpointStore(path: self.configuration.checkpointPath)
        let (checkpoint, recovery) = try store.load()
        if let recovery {
            self.logger.error(
                "the checkpoint was unreadable and is set aside; files are read from their start",
                metadata: ["inlong.checkpoint": "\(store.path)", "inlong.setAside": "\(recovery.setAsidePath)", "inlong.reason": "\(recovery.reason)"]
            )
        }
        let listeners = try await self.bindListeners()
        let lanes = self.makeLanes()
        self.modifyStateAndRunActions { state in
            state.machine.started(checkpoint: checkpoint)
            state.recovery = recovery
            state.lanes = lanes
            return ((), [])
        }
        if !self.configuration.sources.isEmpty { self.apply(tasks: AgentTask.local(self.configuration.sources)) }
        let deadLetters = DeadLetterFile(path: self.configuration.deadLetterPath)
        await withDiscardingTaskGroup { clients in
            // Without their own graceful-shutdown handlers: the agent closes the clients itself, once reading
            // stopped. Cancelling the agent cancels them with it.
            for lane in lanes.values { clients.addTask { try? await lane.client.runUntilClosed() } }
            self.modifyStateAndRunActions { state in
                state.clientsRunning = true
                return ((), [])
            }
            await withTaskCancellationHandler {
                await withGracefulShutdownHandler {
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask { await self.checkpointLoop(store) }
                        await withDiscardingTaskGroup { instances in
                            // A scan at once, then one per interval until a stop (a graceful shutdown is one too).
                            if !self.control.isStopping, !Task.isCancelled {
                                self.scan(deadLetters: deadLetters, into: &instances)
                            }
                            let listening = self.startListeners(listeners, deadLetters: deadLetters, into: &instances)
                            let ticks = AsyncTimerSequence(interval: self.configuration.scanInterval, clock: .continuous).map { _ in }
                            for await _ in merge(ticks, self.control.stopRequests()).cancelOnGracefulShutdown() {
                                if self.control.isStopping { break }
                                self.scan(deadLetters: deadLetters, into: &instances)
                            }
                            // The timer may end at a graceful shutdown before its handler asked for the stop: the
                            // first stop sets the deadline, a second changes nothing.
                            self.stop()
                            await self.drainListeners(listeners, control: listening)
                            // Stopping: the clients send what they hold now and fail the rest at the stop deadline,
                            // so the instances, still waiting, take every last outcome before they end.
                            let grace = self.control.deadline.map { max($0 - .now, .zero) } ?? .zero
                            for lane in self.currentLanes {
                                lane.budget.close()
                                lane.client.close(deadline: grace)
                            }
                        }
                        group.cancelAll()
                    }
                } onGracefulShutdown: {
                    self.stop()
                }
            } onCancel: {
                self.stop()
            }
            for lane in self.currentLanes { lane.client.close(deadline: .seconds(1)) }
        }
        self.modifyStateAndRunActions { state in
            state.clientsRunning = false
            return ((), state.machine.runEnded())
        }
        // After every instance took its outcomes and the clients ended: the last acks are in this checkpoint.
        await self.writeCheckpoint(store, force: true)
        self.metrics?.publish(self.statistics())
    }

    /// A client, a share of the budget and counts per group.
    private func makeLanes() -> [String: Lane] {
        var lanes: [String: Lane] = [:]
        for group in self.groups { lanes[group] = self.makeLane(group) }
        return lanes
    }

    /// A lane for `group`, with a share of the budgets as for the configured groups (a group that comes with a task
    /// later gets a share of the same size).
    func makeLane(_ group: String) -> Lane {
        let share = max(self.groups.count, 1)
        var client = self.configuration.client
        // A group that came with a task later asks the Manager for its own proxies first.
        if var manager = client.manager, !manager.groups.contains(group) {
            manager.groups.insert(group, at: 0)
            client.manager = manager
        }
        // The memory bounds are the agent's, shared out: each group may hold its part.
        client.buffer.maxBytes = max(client.buffer.maxBytes / share, 1 << 20)
        client.buffer.maxRecords = max(client.buffer.maxRecords / share, 1_000)
        // The agent's own budgets bound what it reads: a full client makes it wait, not fail and resend.
        client.buffer.whenFull = .wait
        var logger = self.logger
        logger[metadataKey: "inlong.group"] = "\(group)"
        return Lane(
            group: group,
            client: DataProxyClient(configuration: client, eventLoopGroup: self.eventLoopGroup, logger: logger),
            budget: ByteBudget(capacity: max(self.configuration.maxUnackedBytes / share, 1)),
            counters: AgentCounters()
        )
    }

    // MARK: Files

    private func scan(deadLetters: DeadLetterFile, into instances: inout DiscardingTaskGroup) {
        // Taken first: a file handed from one source to the next while this scan runs keeps its offset.
        let present = self.presentFiles()
        var found: [FileRegistry.Found] = []
        for (handle, task) in self.runningSources {
            let source = task.source
            for pattern in source.paths {
                for path in expandGlob(pattern) where source.excludeFiles.isEmpty || !source.excludes(path) {
                    guard let key = fileKey(path) else { continue }
                    found.append(.init(path: path, device: key.device, inode: key.inode, source: handle, size: key.size))
                }
            }
        }
        // Counted for its source in the same step as the decision: a source stopped meanwhile waits for this file.
        let actions = self.modifyStateAndRunActions { state in
            let (actions, waiters) = state.machine.scanned(found, present: present)
            for case .open(let file, _) in actions { state.tasks.instanceStarting(file.source) }
            return (actions, waiters)
        }
        for action in actions {
            switch action {
            case .moved(let path):
                self.logger.info("file renamed", metadata: ["inlong.path": "\(path)"])
            case .open(let file, let firstScan):
                guard let (source, control) = self.source(handle: file.source) else {
                    self.modifyStateAndRunActions { ((), $0.machine.openFailed()) }
                    self.sourceInstanceEnded(file.source)
                    continue
                }
                let lane = self.lane(for: source.group, into: &instances)
                self.start(file, source: source, control: control, firstScan: firstScan, lane: lane, deadLetters: deadLetters, into: &instances)
            }
        }
    }

    private func start(
        _ file: FileRegistry.Found,
        source: AgentConfiguration.FileSource,
        control: AgentControl,
        firstScan: Bool,
        lane: Lane,
        deadLetters: DeadLetterFile,
        into instances: inout DiscardingTaskGroup
    ) {
        let tail: FileTail
        do {
            tail = try FileTail(
                path: file.path,
                maxLineLength: source.maxLineLength,
                overlong: source.overlong == .skip ? .skip : .truncate,
                records: try source.recordRules()
            ) { identity, fd in
                let offset = self.modifyStateAndRunActions { state in
                    let offset = state.machine.startOffset(for: identity, firstScan: firstScan, startAtEnd: source.startAt == .end) { entry in
                        entry.matches(identity, descriptor: fd)
                    }
                    return (offset, [])
                }
                guard source.ignoreOlder != nil, let modified = modificationTime(file.path) else { return offset }
                return source.start(offset, modified: modified, now: wallClockNow())
            }
        } catch {
            self.modifyStateAndRunActions { ((), $0.machine.openFailed()) }
            self.sourceInstanceEnded(file.source)
            self.logger.warning("cannot open a file", metadata: ["inlong.path": "\(file.path)", "inlong.error": "\(error)"])
            return
        }
        let key = FileRegistry.Key(device: tail.identity.device, inode: tail.identity.inode)
        self.counters.filesOpened.add(1, ordering: .relaxed)
        self.logger.info("reading a file", metadata: ["inlong.path": "\(file.path)", "inlong.offset": "\(tail.committedOffset)"])
        let fileSource = FileSource(
            tail: tail,
            releaseAfter: self.configuration.releaseAfter,
            closeInactive: source.closeInactive,
            othersWaiting: { self.modifyStateAndRunActions { ($0.machine.othersWaiting, []) } },
            movedPath: { self.modifyStateAndRunActions { ($0.machine.takeMovedPath(key), []) } }
        )
        // Counted from the start: what is left to read shows before the file's first read.
        var progress = Self.progress(of: fileSource, unacked: 0)
        progress.source = source.metricsName
        self.modifyStateAndRunActions { state in
            ((), state.machine.opened(tail.identity, path: file.path, progress: progress))
        }
        let sourceCounters = self.sourceCounters(name: source.metricsName, type: "file", group: source.group, stream: source.stream)
        let sink = self.sink(
            lane: lane,
            group: source.group,
            stream: source.stream,
            attributes: source.origin.isEmpty
                ? source.attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
                : source.attributes(path: file.path, host: Self.hostName),
            offsetAttribute: source.origin.offset,
            deadLetters: deadLetters,
            sourceCounters: sourceCounters
        )
        let rateLimit = self.rateLimiter(name: source.metricsName, limit: source.rateLimit)
        let limits = self.instanceLimits(of: FileSource.self, rateLimit: rateLimit)
        let origin = file.path
        let logger = self.logger
        let handle = file.source
        instances.addTask {
            let instance = Instance(
                source: fileSource,
                sink: sink,
                budget: lane.budget,
                limits: limits,
                control: control,
                counters: lane.counters,
                sourceCounters: sourceCounters,
                rateLimit: rateLimit,
                origin: origin,
                logger: logger
            ) { unacked in
                let progress = Self.progress(of: fileSource, unacked: unacked)
                self.modifyStateAndRunActions { ((), $0.machine.progress(fileSource.tail.identity, progress)) }
            }
            let end = await instance.run()
            // A file whose source alone stopped (its task removed or changed) is let go at its committed offset, for
            // the source that matches it next; at the agent's stop it stays as it was.
            let handedOver = control.isStopping && !self.control.isStopping
            // Closed as inactive: left closed, at its committed offset, until a scan finds it larger than it was read.
            let inactiveAt = end == .released && fileSource.closedInactive ? fileSource.tail.scannedOffset : nil
            self.modifyStateAndRunActions { state in
                ((), state.machine.instanceEnded(fileSource.tail.identity, released: end == .released || handedOver, inactiveAt: inactiveAt))
            }
            self.sourceInstanceEnded(handle)
            if inactiveAt != nil {
                self.counters.filesClosedInactive.add(1, ordering: .relaxed)
                logger.info("file closed: not written for closeInactive", metadata: ["inlong.path": "\(fileSource.tail.path)", "inlong.offset": "\(fileSource.tail.committedOffset)"])
            } else if end == .released {
                self.counters.filesReleased.add(1, ordering: .relaxed)
                logger.info("file released", metadata: ["inlong.path": "\(fileSource.tail.path)"])
            }
        }
    }

    /// A file's committed offset and counts, as its instance reports them.
    private static func progress(of source: FileSource, unacked: Int) -> AgentStateMachine<CheckedContinuation<Void, Never>>.FileProgress {
        let tail = source.tail
        return .init(
            size: tail.size,
            committed: tail.committedOffset,
            scanned: tail.scannedOffset,
            unacked: unacked,
            emptyLines: source.emptyLines,
            overlongLines: tail.overlongLines,
            truncations: tail.truncations,
            cutRecords: tail.cutRecords,
            filteredRecords: tail.filteredRecords
        )
    }

    /// The host's name, looked up once.
    private static let hostName = InLongAgent.hostName()
}
