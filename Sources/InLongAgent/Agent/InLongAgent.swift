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
    let counters = AgentCounters()
    /// `nil` when no metrics backend is configured or bootstrapped.
    let metrics: AgentMetrics?
    let control = AgentControl()
    let registry = Mutex<FileRegistry?>(nil)
    /// The open files, for statistics: their sources' counts and sizes.
    let open = Mutex<[FileRegistry.Key: FileStatus]>([:])
    let recovered = Mutex<CheckpointStore.Recovery?>(nil)
    /// The client sending, while ``run()`` runs.
    let client = Mutex<DataProxyClient?>(nil)

    /// What the statistics read of a file being read.
    final class FileStatus: Sendable {
        let values = Mutex<(size: Int64, committed: Int64, scanned: Int64, empty: Int, overlong: Int, truncations: Int)>((0, 0, 0, 0, 0, 0))
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
    }

    /// Stops reading; what was read gets until ``AgentConfiguration/shutdownTimeout`` to be acked.
    public func stop() {
        self.control.stop(deadline: .now + self.configuration.shutdownTimeout)
    }

    /// The checkpoint file that was unreadable at start and set aside, if any.
    public var checkpointRecovery: CheckpointStore.Recovery? { self.recovered.withLock { $0 } }

    /// The statistics of the client sending the lines (proxies reached, why others cannot be, acks and
    /// failures), or `nil` when the agent does not run.
    public func clientStatistics() -> DataProxyClientStatistics? {
        self.client.withLock { $0 }?.statistics()
    }

    public func statistics() -> AgentStatistics {
        var statistics = AgentStatistics()
        statistics.filesOpened = self.counters.filesOpened.load(ordering: .relaxed)
        statistics.filesReleased = self.counters.filesReleased.load(ordering: .relaxed)
        statistics.linesRead = self.counters.linesRead.load(ordering: .relaxed)
        statistics.bytesRead = self.counters.bytesRead.load(ordering: .relaxed)
        statistics.linesAcked = self.counters.linesAcked.load(ordering: .relaxed)
        statistics.bytesAcked = self.counters.bytesAcked.load(ordering: .relaxed)
        statistics.deadLettered = self.counters.deadLettered.load(ordering: .relaxed)
        statistics.resent = self.counters.resent.load(ordering: .relaxed)
        statistics.readErrors = self.counters.readErrors.load(ordering: .relaxed)
        statistics.checkpointsWritten = self.counters.checkpointsWritten.load(ordering: .relaxed)
        statistics.checkpointError = self.counters.checkpointError.withLock { $0 }
        (statistics.filesWaiting, statistics.scans) = self.registry.withLock { ($0?.waiting ?? 0, $0?.scans ?? 0) }
        let files = self.open.withLock { Array($0.values) }
        statistics.openFiles = files.count
        for file in files {
            let values = file.values.withLock { $0 }
            statistics.lagBytes += max(0, values.size - values.committed)
            statistics.unreadBytes += max(0, values.size - values.scanned)
            statistics.emptyLines += values.empty
            statistics.overlongLines += values.overlong
            statistics.truncations += values.truncations
        }
        return statistics
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
        let client = DataProxyClient(configuration: self.configuration.client, eventLoopGroup: self.eventLoopGroup, logger: self.logger)
        // Outside the graceful-shutdown context: the agent closes the client itself, once its reads ended.
        let clientRun = Task.detached { try await client.run() }
        self.client.withLock { $0 = client }
        let budget = ByteBudget(capacity: self.configuration.maxUnackedBytes)
        let deadLetters = DeadLetterFile(path: self.configuration.deadLetterPath)
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await self.checkpointLoop(store) }
                    await withDiscardingTaskGroup { instances in
                        while !self.control.isStopping, !Task.isCancelled {
                            self.scan(client: client, budget: budget, deadLetters: deadLetters, into: &instances)
                            await self.control.sleep(for: self.configuration.scanInterval)
                        }
                        budget.close()
                    }
                    group.cancelAll()
                }
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.stop()
            clientRun.cancel()
        }
        self.writeCheckpoint(store, force: true)
        client.close(deadline: .seconds(1))
        _ = try? await clientRun.value
        self.client.withLock { $0 = nil }
        // After the client ended: acks that came during its close count too.
        self.metrics?.publish(self.statistics())
    }

    // MARK: Files

    private func scan(client: DataProxyClient, budget: ByteBudget, deadLetters: DeadLetterFile, into instances: inout DiscardingTaskGroup) {
        var found: [FileRegistry.Found] = []
        for (index, source) in self.configuration.sources.enumerated() {
            for pattern in source.paths {
                for path in expandGlob(pattern) {
                    guard let key = fileKey(path) else { continue }
                    found.append(.init(path: path, device: key.device, inode: key.inode, source: index))
                }
            }
        }
        let decisions = self.registry.withLock { $0!.scanned(found) }
        for decision in decisions {
            switch decision {
            case .moved(let key, let path):
                self.registry.withLock { $0!.moved(key, to: path) }
                self.logger.info("file renamed", metadata: ["inlong.path": "\(path)"])
                self.movedPaths.withLock { $0[key] = path }
            case .open(let file, let firstScan):
                self.start(file, firstScan: firstScan, client: client, budget: budget, deadLetters: deadLetters, into: &instances)
            }
        }
    }

    /// New paths of files being read, for their instances to pick up.
    let movedPaths = Mutex<[FileRegistry.Key: String]>([:])

    private func start(
        _ file: FileRegistry.Found,
        firstScan: Bool,
        client: DataProxyClient,
        budget: ByteBudget,
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
                let offset = self.registry.withLock { registry in
                    registry!.checkpointOffset(for: identity) { entry in entry.matches(identity, descriptor: fd) || identity.matches(entry, descriptor: fd) }
                }
                if let offset { return .at(offset) }
                return firstScan && source.startAt == .end ? .end : .beginning
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
        self.open.withLock { $0[key] = status }
        self.logger.info("reading a file", metadata: ["inlong.path": "\(file.path)", "inlong.offset": "\(tail.committedOffset)"])
        let fileSource = FileSource(
            tail: tail,
            releaseAfter: self.configuration.releaseAfter,
            othersWaiting: { self.registry.withLock { ($0?.waiting ?? 0) > 0 } },
            movedPath: { self.movedPaths.withLock { $0.removeValue(forKey: key) } }
        )
        // Counted from the start: what is left to read shows before the file's first read.
        self.progress(fileSource, key: key, status: status)
        let sink = DataProxySink(
            client: client,
            group: source.group,
            stream: source.stream,
            attributes: source.attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
            deadLetters: deadLetters,
            counters: self.counters
        )
        let limits = Instance<FileSource>.Limits(
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
                budget: budget,
                limits: limits,
                control: self.control,
                counters: self.counters,
                origin: origin,
                logger: logger
            ) {
                self.progress(fileSource, key: key, status: status)
            }
            let end = await instance.run()
            self.progress(fileSource, key: key, status: status)
            self.open.withLock { $0[key] = nil }
            if end == .released {
                self.registry.withLock { $0!.released(identity) }
                self.counters.filesReleased.add(1, ordering: .relaxed)
                logger.info("file released", metadata: ["inlong.path": "\(fileSource.tail.path)"])
            }
        }
    }

    /// Records a file's committed offset and counts (from its instance's task).
    private func progress(_ source: FileSource, key: FileRegistry.Key, status: FileStatus) {
        let tail = source.tail
        self.registry.withLock { $0!.committed(tail.identity, offset: tail.committedOffset) }
        status.values.withLock { $0 = (tail.size, tail.committedOffset, tail.scannedOffset, source.emptyLines, tail.overlongLines, tail.truncations) }
    }

    // MARK: Checkpoint

    private func checkpointLoop(_ store: CheckpointStore) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: self.configuration.checkpointInterval)
            if Task.isCancelled { return }
            self.writeCheckpoint(store, force: false)
            self.metrics?.publish(self.statistics())
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
