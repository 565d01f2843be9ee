/// Which sources the agent runs for which tasks, with no I/O and no lock: the desired task set comes in (from the
/// Manager or a configuration file), and the sources running are brought to it: a task added starts a source, a
/// task removed stops its source, a task changed stops its source and starts the new one once the old one's files
/// are all let go (so that the new source opens them at the offsets the old one committed, never both at once).
///
/// A source is a handle; a file the scan opens for it is an instance of it. A stopping source counts until its last
/// instance ended (its reads acked, or the stop deadline passed): only then may its task's next source start.
struct TaskReconciler {
    struct Source: Equatable {
        var task: AgentTask
        var stopping = false
        /// Files open for it (its instances), from the scan's decision to the instance's end.
        var instances = 0
    }

    enum Action: Equatable {
        /// Run a source for the task: its paths are scanned from now on.
        case start(handle: Int, AgentTask)
        /// Stop the source's instances (their reads get until the stop deadline to be acked).
        case stop(handle: Int)
        /// The source stopped and its last instance ended: forget it.
        case ended(handle: Int)
    }

    private(set) var sources: [Int: Source] = [:]
    private(set) var desired: [String: AgentTask] = [:]
    /// The agent stops: nothing starts any more.
    private(set) var shuttingDown = false
    private var nextHandle = 0

    /// Sources that run (not stopping), by handle: what a scan looks for.
    var running: [(handle: Int, task: AgentTask)] {
        self.sources.filter { !$0.value.stopping }.sorted { $0.key < $1.key }.map { ($0.key, $0.value.task) }
    }

    /// The tasks wanted from now on (the first of two with one id wins).
    mutating func desired(_ tasks: [AgentTask]) -> [Action] {
        var desired: [String: AgentTask] = [:]
        for task in tasks where desired[task.id] == nil { desired[task.id] = task }
        self.desired = desired
        return self.converge()
    }

    /// The scan decided to open a file for the source of `handle`.
    mutating func instanceStarting(_ handle: Int) {
        self.sources[handle]?.instances += 1
    }

    /// A file of the source of `handle` is no longer read (its open failed, or its instance ended).
    mutating func instanceEnded(_ handle: Int) -> [Action] {
        guard var source = self.sources[handle] else { return [] }
        source.instances = max(source.instances - 1, 0)
        self.sources[handle] = source
        return self.converge()
    }

    /// The agent stops: every source stops, none starts.
    mutating func shutdown() -> [Action] {
        self.shuttingDown = true
        return self.converge()
    }

    /// Stops what is no longer wanted as it is, forgets what stopped, and starts what is wanted and has no source.
    private mutating func converge() -> [Action] {
        var actions: [Action] = []
        for handle in self.sources.keys.sorted() {
            guard var source = self.sources[handle] else { continue }
            if !source.stopping, self.shuttingDown || self.desired[source.task.id] != source.task {
                source.stopping = true
                self.sources[handle] = source
                actions.append(.stop(handle: handle))
            }
            if source.stopping, source.instances == 0 {
                self.sources[handle] = nil
                actions.append(.ended(handle: handle))
            }
        }
        guard !self.shuttingDown else { return actions }
        // A task with a source (running, or still stopping) gets no other.
        let covered = Set(self.sources.values.map(\.task.id))
        for id in self.desired.keys.sorted() where !covered.contains(id) {
            let handle = self.nextHandle
            self.nextHandle += 1
            self.sources[handle] = Source(task: self.desired[id]!)
            actions.append(.start(handle: handle, self.desired[id]!))
        }
        return actions
    }
}
