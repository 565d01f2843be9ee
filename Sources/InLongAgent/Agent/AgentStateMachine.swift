/// The agent's state with no I/O, no clock and no lock: the file set (``FileRegistry``), what each file's instance
/// last reported, the new paths of renamed files for their instances, stalled groups, the last checkpoint error,
/// and who waits for the agent to catch up. ``Agent`` feeds it scans, files opened, instances' progress
/// and ends, and runs what it returns.
///
/// Caught up means: scanned at least once, no file the scan decided to open still opening, none waiting for a
/// slot with bytes past its checkpoint, and every file read to its end (a last line without its newline counts as
/// read) with every read acked. Each file's figures come from one report of its instance, so they never mix a read
/// with an older ack. (Files with nothing new may wait for a slot for ever when more match than
/// ``AgentConfiguration/maxOpenFiles``: they take turns, and must not keep the agent from having caught up.)
struct AgentStateMachine<Waiter> {
    typealias Key = FileRegistry.Key

    /// What a file's instance last reported.
    struct FileProgress: Equatable {
        /// The metrics name of the source reading it (``AgentConfiguration/FileSource/metricsName``).
        var source = ""
        var size: Int64 = 0
        var committed: Int64 = 0
        /// How far the file was read (past ``committed`` by reads not acked and a last line without its newline).
        var scanned: Int64 = 0
        /// Bytes read and not yet acked.
        var unacked = 0
        var emptyLines = 0
        var overlongLines = 0
        var truncations = 0
        var cutRecords = 0
        var filteredRecords = 0
        /// Its instance runs (a stopped instance's file still counts in the lag).
        var open = true

        var isCaughtUp: Bool { self.scanned >= self.size && self.unacked == 0 }
    }

    /// A file's counts that only grow: those of instances that ended are kept here, per source, so that the
    /// totals (and the metrics counters made from them) never go back when a file is released or reopened.
    struct FileCounts: Equatable {
        var emptyLines = 0
        var overlongLines = 0
        var truncations = 0
        var cutRecords = 0
        var filteredRecords = 0

        mutating func add(_ progress: FileProgress) {
            self.emptyLines += progress.emptyLines
            self.overlongLines += progress.overlongLines
            self.truncations += progress.truncations
            self.cutRecords += progress.cutRecords
            self.filteredRecords += progress.filteredRecords
        }

        mutating func add(_ counts: FileCounts) {
            self.emptyLines += counts.emptyLines
            self.overlongLines += counts.overlongLines
            self.truncations += counts.truncations
            self.cutRecords += counts.cutRecords
            self.filteredRecords += counts.filteredRecords
        }
    }

    /// One source's files now: its counts so far, the files it has open and their lag.
    struct SourceFiles: Equatable {
        var counts = FileCounts()
        var openFiles = 0
        var lagBytes: Int64 = 0
    }

    enum Action: Equatable {
        /// Start reading the file (from its checkpoint, or where the source says); report ``opened(_:path:progress:)``
        /// or ``openFailed()``.
        case open(FileRegistry.Found, firstScan: Bool)
        /// A file being read was found at another path; its instance picks it up (``takeMovedPath(_:)``).
        case moved(path: String)
    }

    private(set) var registry: FileRegistry
    private(set) var files: [Key: FileProgress] = [:]
    /// The counts of instances that ended, by source.
    private(set) var retired: [String: FileCounts] = [:]
    private var movedPaths: [Key: String] = [:]
    /// Files a scan decided to open, not yet reported opened or failed.
    private(set) var opening = 0
    private var stalls: StallWatch
    private(set) var checkpointError: String?
    private var waiters: [Int: Waiter] = [:]
    /// The agent's run ended: nothing more will move, waiters return at once.
    private(set) var ended = false

    init(maxOpenFiles: Int, stallAfter: Duration) {
        self.registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: maxOpenFiles)
        self.stalls = StallWatch(after: stallAfter)
    }

    var isCaughtUp: Bool {
        self.registry.scans > 0 && self.registry.waitingBytes == 0 && self.opening == 0 && self.files.values.allSatisfy(\.isCaughtUp)
    }

    /// Whether other files wait for a slot (an inactive file then gives its up).
    var othersWaiting: Bool { self.registry.waiting > 0 }

    /// Groups stalled now, with since when.
    var stalled: [String: ContinuousClock.Instant] { self.stalls.stalled }

    /// Waiters for catching up: callers resume the ones an event returns.
    var waiting: Int { self.waiters.count }

    // MARK: Events

    /// The run starts from `checkpoint`.
    mutating func started(checkpoint: Checkpoint) {
        self.registry = FileRegistry(checkpoint: checkpoint, maxOpenFiles: self.registry.maxOpenFiles)
    }

    /// A scan found these files: which to open, which moved. The sizes found count for the lag of files being read.
    /// `present`: files of the registry still at their paths (their offsets are kept though no source matches them).
    mutating func scanned(_ found: [FileRegistry.Found], present: Set<Key> = []) -> (actions: [Action], caughtUp: [Waiter]) {
        for file in found {
            let key = Key(device: file.device, inode: file.inode)
            if let current = self.files[key]?.size, file.size > current { self.files[key]?.size = file.size }
        }
        var actions: [Action] = []
        for decision in self.registry.scanned(found, present: present) {
            switch decision {
            case .moved(let key, let path):
                self.registry.moved(key, to: path)
                self.movedPaths[key] = path
                actions.append(.moved(path: path))
            case .open(let file, let firstScan):
                self.opening += 1
                actions.append(.open(file, firstScan: firstScan))
            }
        }
        return (actions, self.caughtUp())
    }

    /// Where to start reading the file now open with `identity` (see ``FileRegistry/start(for:firstScan:startAtEnd:matches:)``).
    func startOffset(
        for identity: Checkpoint.FileIdentity,
        firstScan: Bool,
        startAtEnd: Bool,
        matches: (Checkpoint.FileIdentity) -> Bool
    ) -> FileTail.Offset {
        self.registry.start(for: identity, firstScan: firstScan, startAtEnd: startAtEnd, matches: matches)
    }

    /// A file of ``Action/open(_:firstScan:)`` is open, its instance about to run; `progress` is where it starts.
    mutating func opened(_ identity: Checkpoint.FileIdentity, path: String, progress: FileProgress) -> [Waiter] {
        self.opening = max(self.opening - 1, 0)
        self.registry.opened(identity, path: path, committed: progress.committed)
        if let old = self.files[Self.key(identity)] { self.retired[old.source, default: FileCounts()].add(old) }
        self.files[Self.key(identity)] = progress
        return self.caughtUp()
    }

    /// A file of ``Action/open(_:firstScan:)`` could not be opened (a later scan tries again).
    mutating func openFailed() -> [Waiter] {
        self.opening = max(self.opening - 1, 0)
        return self.caughtUp()
    }

    /// The new path of a renamed file, once, for its instance.
    mutating func takeMovedPath(_ key: Key) -> String? {
        self.movedPaths.removeValue(forKey: key)
    }

    /// A file's instance reports its committed offset and counts (its identity changes after a copytruncate).
    mutating func progress(_ identity: Checkpoint.FileIdentity, _ progress: FileProgress) -> [Waiter] {
        let key = Self.key(identity)
        self.registry.committed(identity, offset: progress.committed)
        guard let old = self.files[key] else { return [] }
        var progress = progress
        progress.open = old.open
        progress.source = old.source
        self.files[key] = progress
        return self.caughtUp()
    }

    /// A file's instance ended: `released` (read to its end, every line acked, no longer named by its path; or
    /// closed as inactive, read to `inactiveAt`), or stopped (its reads not acked stay in the lag).
    mutating func instanceEnded(_ identity: Checkpoint.FileIdentity, released: Bool, inactiveAt: Int64? = nil) -> [Waiter] {
        let key = Self.key(identity)
        if released {
            if let old = self.files[key] { self.retired[old.source, default: FileCounts()].add(old) }
            self.files[key] = nil
            self.movedPaths[key] = nil
            self.registry.released(identity, inactiveAt: inactiveAt)
        } else {
            self.files[key]?.open = false
        }
        return self.caughtUp()
    }

    /// The checkpoint to write, when something changed since the last one (or `force`).
    mutating func checkpoint(force: Bool) -> Checkpoint? {
        self.registry.checkpoint(force: force)
    }

    /// The last checkpoint write failed with `error`, or succeeded (`nil`).
    mutating func checkpointWritten(error: String?) {
        self.checkpointError = error
    }

    /// The groups' lines ended so far and waiting, on the agent's tick: which stalled and which move again.
    mutating func observe(groups: [AgentGroupStatistics], now: ContinuousClock.Instant) -> [StallWatch.Change] {
        groups.compactMap { self.stalls.observe(group: $0.group, ended: $0.linesEnded, waiting: $0.linesWaiting, now: now) }
    }

    /// Queues `waiter` until the agent caught up; returns it at once when it did, when the run ended, or when the
    /// task waiting is `cancelled`.
    mutating func waitUntilCaughtUp(id: Int, _ waiter: Waiter, cancelled: Bool = false) -> [Waiter] {
        if cancelled || self.ended || self.isCaughtUp { return [waiter] }
        self.waiters[id] = waiter
        return []
    }

    /// The waiter of `id`, if it waits (its task was cancelled).
    mutating func cancelWait(id: Int) -> [Waiter] {
        self.waiters.removeValue(forKey: id).map { [$0] } ?? []
    }

    /// The agent's run ended: every waiter returns.
    mutating func runEnded() -> [Waiter] {
        self.ended = true
        defer { self.waiters.removeAll() }
        return Array(self.waiters.values)
    }

    // MARK: Statistics

    /// Adds the file set's figures: open files, files waiting, scans, lag, unread bytes, line counts, the
    /// checkpoint error.
    func fill(_ statistics: inout AgentStatistics) {
        statistics.filesWaiting = self.registry.waiting
        statistics.scans = self.registry.scans
        statistics.checkpointError = self.checkpointError
        // Files that wait for a slot are lag too: present in matching files and not acked.
        statistics.lagBytes = self.registry.waitingBytes
        statistics.unreadBytes = self.registry.waitingBytes
        for counts in self.retired.values {
            statistics.emptyLines += counts.emptyLines
            statistics.overlongLines += counts.overlongLines
            statistics.cutRecords += counts.cutRecords
            statistics.filteredRecords += counts.filteredRecords
            statistics.truncations += counts.truncations
        }
        for file in self.files.values {
            if file.open { statistics.openFiles += 1 }
            statistics.lagBytes += max(0, file.size - file.committed)
            statistics.unreadBytes += max(0, file.size - file.scanned)
            statistics.emptyLines += file.emptyLines
            statistics.overlongLines += file.overlongLines
            statistics.cutRecords += file.cutRecords
            statistics.filteredRecords += file.filteredRecords
            statistics.truncations += file.truncations
        }
    }

    /// Per source: its files' counts so far (of instances that ended too), the files it has open, their lag.
    var sourceFiles: [String: SourceFiles] {
        var sources: [String: SourceFiles] = [:]
        for (name, counts) in self.retired { sources[name, default: SourceFiles()].counts.add(counts) }
        for file in self.files.values {
            sources[file.source, default: SourceFiles()].counts.add(file)
            if file.open { sources[file.source, default: SourceFiles()].openFiles += 1 }
            sources[file.source, default: SourceFiles()].lagBytes += max(0, file.size - file.committed)
        }
        return sources
    }

    // MARK: Helpers

    private static func key(_ identity: Checkpoint.FileIdentity) -> Key {
        Key(device: identity.device, inode: identity.inode)
    }

    /// Every waiter, once caught up (checked only while someone waits: it looks at every file).
    private mutating func caughtUp() -> [Waiter] {
        guard !self.waiters.isEmpty, self.isCaughtUp else { return [] }
        defer { self.waiters.removeAll() }
        return Array(self.waiters.values)
    }
}
