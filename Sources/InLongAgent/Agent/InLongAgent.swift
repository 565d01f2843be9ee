import Foundation
public import InLongDataProxy
import InLongTransport
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
/// instance reading it through a ``FileSource``; each read is sent with one receipt; a file's committed
/// offset is the end of its longest acked prefix, written atomically to the checkpoint every
/// ``AgentConfiguration/checkpointInterval`` and at shutdown.
///
/// Run it as a `Service`: a graceful shutdown stops reading, waits up to
/// ``AgentConfiguration/shutdownTimeout`` for acks, writes the checkpoint and returns. Cancelling ``run()``
/// stops at once; the checkpoint written is still exact.
public final class InLongAgent: Service, Sendable {
    public let configuration: AgentConfiguration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    /// Files and checkpoints; the lines and bytes are counted per group, in ``Lane/counters``.
    let counters = AgentCounters()
    /// `nil` when no metrics backend is configured or bootstrapped.
    let metrics: AgentMetrics?
    let control = AgentControl()
    let registry = Mutex<FileRegistry?>(nil)
    /// The files read since start, for statistics: their counts and sizes.
    let files = Mutex<[FileRegistry.Key: FileStatus]>([:])
    let recovered = Mutex<CheckpointStore.Recovery?>(nil)
    /// One lane per group, while ``run()`` runs and after (for the last statistics).
    let lanes = Mutex<[String: Lane]>([:])
    let clientsRunning = Atomic(false)
    let stalls: Mutex<StallWatch>

    /// What one group's files go through: its own client (so that a cluster that is down holds only this group's
    /// share of memory, and `send` for another group never waits behind it), its own share of the read-ahead
    /// budget, and its counts.
    struct Lane: Sendable {
        let group: String
        let client: DataProxyClient
        let budget: ByteBudget
        let counters: AgentCounters
    }

    /// What the statistics read of a file: its source's counts and sizes.
    final class FileStatus: Sendable {
        struct Values {
            var size: Int64 = 0
            var committed: Int64 = 0
            var scanned: Int64 = 0
            var empty = 0
            var overlong = 0
            var truncations = 0
            /// Its instance runs (a stopped instance's file still counts in the lag).
            var open = true
        }

        let values = Mutex(Values())
    }

    public init(
        configuration: AgentConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "inlong.agent", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.metrics = metricsFactoryInUse(configuration.client.metricsFactory).map { AgentMetrics(factory: $0) }
        self.stalls = Mutex(StallWatch(after: configuration.stallAfter))
    }

    /// Stops reading; what was read gets until ``AgentConfiguration/shutdownTimeout`` to be acked.
    public func stop() {
        self.control.stop(deadline: .now + self.configuration.shutdownTimeout)
    }

    /// The checkpoint file that was unreadable at start and set aside, if any.
    public var checkpointRecovery: CheckpointStore.Recovery? { self.recovered.withLock { $0 } }

    /// The groups of the sources, each sent through its own client.
    public var groups: [String] { Array(Set(self.configuration.sources.map(\.group))).sorted() }

    /// The statistics of the client sending `group`'s lines (proxies reached, why others cannot be, acks and
    /// failures), or `nil` when the agent does not run.
    public func clientStatistics(group: String) -> DataProxyClientStatistics? {
        guard self.clientsRunning.load(ordering: .relaxed) else { return nil }
        return self.lanes.withLock { $0[group] }?.client.statistics()
    }

    public func statistics() -> AgentStatistics {
        var statistics = AgentStatistics()
        statistics.filesOpened = self.counters.filesOpened.load(ordering: .relaxed)
        statistics.filesReleased = self.counters.filesReleased.load(ordering: .relaxed)
        statistics.readErrors = self.counters.readErrors.load(ordering: .relaxed)
        statistics.checkpointsWritten = self.counters.checkpointsWritten.load(ordering: .relaxed)
        statistics.checkpointError = self.counters.checkpointError.withLock { $0 }
        let lanes = self.lanes.withLock { $0 }
        let stalled = self.stalls.withLock { $0.stalled }
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
        let registry = self.registry.withLock { ($0?.waiting ?? 0, $0?.scans ?? 0, $0?.waitingBytes ?? 0) }
        (statistics.filesWaiting, statistics.scans) = (registry.0, registry.1)
        // Files that wait for a slot are lag too: present in matching files and not acked.
        statistics.lagBytes = registry.2
        statistics.unreadBytes = registry.2
        let files = self.files.withLock { Array($0.values) }
        for file in files {
            let values = file.values.withLock { $0 }
            if values.open { statistics.openFiles += 1 }
            statistics.lagBytes += max(0, values.size - values.committed)
            statistics.unreadBytes += max(0, values.size - values.scanned)
            statistics.emptyLines += values.empty
            statistics.overlongLines += values.overlong
            statistics.truncations += values.truncations
        }
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
        try FileManager.default.createDirectory(atPath: self.configuration.stateDirectory, withIntermediateDirectories: true)
        let store = CheckpointStore(path: self.configuration.checkpointPath)
        let (checkpoint, recovery) = try store.load()
        if let recovery {
            self.recovered.withLock { $0 = recovery }
            self.logger.error(
                "the checkpoint was unreadable and is set aside; files are read from their start",
                metadata: ["inlong.checkpoint": "\(store.path)", "inlong.setAside": "\(recovery.setAsidePath)", "inlong.reason": "\(recovery.reason)"]
            )
        }
        self.registry.withLock { $0 = FileRegistry(checkpoint: checkpoint, maxOpenFiles: self.configuration.maxOpenFiles) }
        let lanes = self.makeLanes()
        self.lanes.withLock { $0 = lanes }
        let deadLetters = DeadLetterFile(path: self.configuration.deadLetterPath)
        await withDiscardingTaskGroup { clients in
            // Without their own graceful-shutdown handlers: the agent closes the clients itself, once reading
            // stopped. Cancelling the agent cancels them with it.
            for lane in lanes.values { clients.addTask { try? await lane.client.runUntilClosed() } }
            self.clientsRunning.store(true, ordering: .relaxed)
            await withTaskCancellationHandler {
                await withGracefulShutdownHandler {
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask { await self.checkpointLoop(store) }
                        await withDiscardingTaskGroup { instances in
                            while !self.control.isStopping, !Task.isCancelled {
                                self.scan(lanes: lanes, deadLetters: deadLetters, into: &instances)
                                await self.control.sleep(for: self.configuration.scanInterval)
                            }
                            // Stopping: the clients send what they hold now and fail the rest at the stop deadline,
                            // so the instances, still waiting, take every last outcome before they end.
                            let grace = self.control.deadline.map { max($0 - .now, .zero) } ?? .zero
                            for lane in lanes.values {
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
            for lane in lanes.values { lane.client.close(deadline: .seconds(1)) }
        }
        self.clientsRunning.store(false, ordering: .relaxed)
        // After every instance took its outcomes and the clients ended: the last acks are in this checkpoint.
        self.writeCheckpoint(store, force: true)
        self.metrics?.publish(self.statistics())
    }

    /// A client, a share of the budget and counts per group.
    private func makeLanes() -> [String: Lane] {
        let groups = self.groups
        let share = max(groups.count, 1)
        var lanes: [String: Lane] = [:]
        for group in groups {
            var client = self.configuration.client
            // The memory bounds are the agent's, shared out: each group may hold its part.
            client.buffer.maxBytes = max(client.buffer.maxBytes / share, 1 << 20)
            client.buffer.maxRecords = max(client.buffer.maxRecords / share, 1_000)
            // The agent's own budgets bound what it reads: a full client makes it wait, not fail and resend.
            client.buffer.whenFull = .wait
            var logger = self.logger
            logger[metadataKey: "inlong.group"] = "\(group)"
            lanes[group] = Lane(
                group: group,
                client: DataProxyClient(configuration: client, eventLoopGroup: self.eventLoopGroup, logger: logger),
                budget: ByteBudget(capacity: max(self.configuration.maxUnackedBytes / share, 1)),
                counters: AgentCounters()
            )
        }
        return lanes
    }

    // MARK: Files

    private func scan(lanes: [String: Lane], deadLetters: DeadLetterFile, into instances: inout DiscardingTaskGroup) {
        var found: [FileRegistry.Found] = []
        for (index, source) in self.configuration.sources.enumerated() {
            for pattern in source.paths {
                for path in expandGlob(pattern) {
                    guard let key = fileKey(path) else { continue }
                    found.append(.init(path: path, device: key.device, inode: key.inode, source: index, size: key.size))
                }
            }
        }
        let decisions = self.registry.withLock { $0!.scanned(found) }
        // Sizes of files being read, for the lag, also while their instance waits.
        self.files.withLock { files in
            for file in found {
                guard let status = files[FileRegistry.Key(device: file.device, inode: file.inode)] else { continue }
                status.values.withLock { $0.size = max($0.size, file.size) }
            }
        }
        for decision in decisions {
            switch decision {
            case .moved(let key, let path):
                self.registry.withLock { $0!.moved(key, to: path) }
                self.logger.info("file renamed", metadata: ["inlong.path": "\(path)"])
                self.movedPaths.withLock { $0[key] = path }
            case .open(let file, let firstScan):
                let lane = lanes[self.configuration.sources[file.source].group]!
                self.start(file, firstScan: firstScan, lane: lane, deadLetters: deadLetters, into: &instances)
            }
        }
    }

    /// New paths of files being read, for their instances to pick up.
    let movedPaths = Mutex<[FileRegistry.Key: String]>([:])

    private func start(
        _ file: FileRegistry.Found,
        firstScan: Bool,
        lane: Lane,
        deadLetters: DeadLetterFile,
        into instances: inout DiscardingTaskGroup
    ) {
        let source = self.configuration.sources[file.source]
        let tail: FileTail
        do {
            tail = try FileTail(
                path: file.path,
                maxLineLength: source.maxLineLength,
                overlong: source.overlong == .skip ? .skip : .truncate
            ) { identity, fd in
                self.registry.withLock { registry in
                    registry!.start(for: identity, firstScan: firstScan, startAtEnd: source.startAt == .end) { entry in
                        entry.matches(identity, descriptor: fd)
                    }
                }
            }
        } catch {
            self.logger.warning("cannot open a file", metadata: ["inlong.path": "\(file.path)", "inlong.error": "\(error)"])
            return
        }
        let identity = tail.identity
        let key = FileRegistry.Key(device: identity.device, inode: identity.inode)
        self.registry.withLock { $0!.opened(identity, path: file.path, committed: tail.committedOffset) }
        self.counters.filesOpened.add(1, ordering: .relaxed)
        let status = FileStatus()
        self.files.withLock { $0[key] = status }
        self.logger.info("reading a file", metadata: ["inlong.path": "\(file.path)", "inlong.offset": "\(tail.committedOffset)"])
        let fileSource = FileSource(
            tail: tail,
            releaseAfter: self.configuration.releaseAfter,
            othersWaiting: { self.registry.withLock { ($0?.waiting ?? 0) > 0 } },
            movedPath: { self.movedPaths.withLock { $0.removeValue(forKey: key) } }
        )
        // Counted from the start: what is left to read shows before the file's first read.
        self.progress(fileSource, status: status)
        let sink = DataProxySink(
            client: lane.client,
            group: source.group,
            stream: source.stream,
            attributes: source.attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
            deadLetters: deadLetters,
            counters: lane.counters,
            logger: self.logger
        )
        let limits = Instance<FileSource, DataProxySink>.Limits(
            readSize: self.configuration.readSize,
            maxUnackedBytes: self.configuration.maxUnackedBytesPerFile,
            pollInterval: self.configuration.pollInterval,
            resendDelay: self.configuration.resendDelay
        )
        let origin = file.path
        let logger = self.logger
        instances.addTask {
            let instance = Instance(
                source: fileSource,
                sink: sink,
                budget: lane.budget,
                limits: limits,
                control: self.control,
                counters: lane.counters,
                origin: origin,
                logger: logger
            ) {
                self.progress(fileSource, status: status)
            }
            let end = await instance.run()
            self.progress(fileSource, status: status)
            if end == .released {
                self.files.withLock { $0[key] = nil }
                self.registry.withLock { $0!.released(fileSource.tail.identity) }
                self.counters.filesReleased.add(1, ordering: .relaxed)
                logger.info("file released", metadata: ["inlong.path": "\(fileSource.tail.path)"])
            } else {
                status.values.withLock { $0.open = false }
            }
        }
    }

    /// Records a file's committed offset and counts (from its instance's task).
    private func progress(_ source: FileSource, status: FileStatus) {
        let tail = source.tail
        self.registry.withLock { $0!.committed(tail.identity, offset: tail.committedOffset) }
        status.values.withLock { values in
            values.size = tail.size
            values.committed = tail.committedOffset
            values.scanned = tail.scannedOffset
            values.empty = source.emptyLines
            values.overlong = tail.overlongLines
            values.truncations = tail.truncations
        }
    }

    // MARK: Checkpoint and stalls

    private func checkpointLoop(_ store: CheckpointStore) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: self.configuration.checkpointInterval)
            if Task.isCancelled { return }
            self.writeCheckpoint(store, force: false)
            self.watchStalls()
            self.metrics?.publish(self.statistics())
        }
    }

    /// Says at warning when a group's lines stop ending (and why its proxies do not take them), and when they move
    /// again.
    private func watchStalls() {
        let now = ContinuousClock.now
        for group in self.statistics().groups {
            switch self.stalls.withLock({ $0.observe(group: group.group, ended: group.linesEnded, waiting: group.linesWaiting, now: now) }) {
            case .stalled(let name, let since)?:
                let problem = self.clientStatistics(group: name).flatMap(Self.proxyProblem) ?? "no proxy answers"
                self.logger.warning(
                    "group \(name) is stalled: \(group.linesWaiting) lines wait and none was acked for \(now - since); \(problem)",
                    metadata: ["inlong.group": "\(name)"]
                )
            case .moving(let name)?:
                self.logger.notice("group \(name) moves again", metadata: ["inlong.group": "\(name)"])
            case nil:
                break
            }
        }
    }

    private func writeCheckpoint(_ store: CheckpointStore, force: Bool) {
        guard let checkpoint = self.registry.withLock({ $0?.checkpoint(force: force) }) else { return }
        do {
            try store.save(checkpoint)
            self.counters.checkpointsWritten.add(1, ordering: .relaxed)
            self.counters.checkpointError.withLock { $0 = nil }
        } catch {
            self.counters.checkpointError.withLock { $0 = "\(error)" }
            self.logger.error("cannot write the checkpoint", metadata: ["inlong.checkpoint": "\(store.path)", "inlong.error": "\(error)"])
        }
    }
}
