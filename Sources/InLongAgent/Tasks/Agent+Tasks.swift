import InLongDataProxy
import Logging

extension Agent {
    /// A task the agent did not take: its source is invalid (a bad regular expression, no paths).
    public struct RejectedTask: Sendable, Hashable {
        /// The task's id.
        public var id: String
        /// Why its source is invalid.
        public var reason: String
    }

    /// Replaces the agent's tasks while it runs (or before): sources of tasks added start (their files are found
    /// by the next scan), sources of tasks removed stop, and a task changed gets its new source once the old one let
    /// go of its files. A file goes from one source to the next at its committed offset: no line is lost, none read
    /// twice (unless the old source's reads were not acked within ``AgentConfiguration/shutdownTimeout``; they are
    /// then read again, as after a restart). The configured sources are the first tasks; the Manager's tasks, or a
    /// configuration file read again, replace them.
    ///
    /// - Returns: The tasks left out because their source is invalid.
    @discardableResult
    public func apply(tasks: [AgentTask]) -> [RejectedTask] {
        var valid: [AgentTask] = []
        var rejected: [RejectedTask] = []
        for task in tasks {
            do {
                try task.source.validate()
                _ = try task.source.recordRules()
                valid.append(task)
            } catch {
                rejected.append(RejectedTask(id: task.id, reason: "\(error)"))
                self.logger.warning("task left out: its source is invalid", metadata: ["inlong.task": "\(task.id)", "inlong.error": "\(error)"])
            }
        }
        self.reconcile { $0.desired(valid) }
        return rejected
    }

    /// The tasks whose sources run now (not those stopping), by id.
    public var runningTasks: [AgentTask] {
        self.runningSources.map(\.task)
    }

    /// Sources that run, by handle: what a scan looks for.
    var runningSources: [(handle: Int, task: AgentTask)] {
        self.modifyStateAndRunActions { ($0.tasks.running, []) }
    }

    /// The source of `handle` and its stop control, while it is known.
    func source(handle: Int) -> (AgentConfiguration.FileSource, AgentControl)? {
        self.modifyStateAndRunActions { state in
            guard let source = state.tasks.sources[handle], let control = state.sourceControls[handle] else { return (nil, []) }
            return ((source.task.source, control), [])
        }
    }

    /// A file of the source of `handle` is no longer read.
    func sourceInstanceEnded(_ handle: Int) {
        self.reconcile { $0.instanceEnded(handle) }
    }

    /// Every source stops (the agent stops).
    func stopSources() {
        self.reconcile { $0.shutdown() }
    }

    /// The lanes there are now.
    var currentLanes: [Lane] {
        self.modifyStateAndRunActions { (Array($0.lanes.values), []) }
    }

    /// The lane of `group`, made (and its client run among `instances`) when a task brings a group not seen yet.
    func lane(for group: String, into instances: inout DiscardingTaskGroup) -> Lane {
        let (lane, made) = self.modifyStateAndRunActions { state -> ((Lane, Bool), [CheckedContinuation<Void, Never>]) in
            if let lane = state.lanes[group] { return ((lane, false), []) }
            let lane = self.makeLane(group)
            state.lanes[group] = lane
            return ((lane, true), [])
        }
        if made {
            self.logger.info("a task brings a new group", metadata: ["inlong.group": "\(group)"])
            instances.addTask { try? await lane.client.runUntilClosed() }
        }
        return lane
    }

    /// Runs a reconciler event and its actions: the controls of sources started are made under the lock, those of
    /// sources stopped are stopped after it (a stop resumes their instances).
    private func reconcile(_ event: (inout TaskReconciler) -> [TaskReconciler.Action]) {
        let (actions, stopping) = self.modifyStateAndRunActions { state -> (([TaskReconciler.Action], [AgentControl]), [CheckedContinuation<Void, Never>]) in
            let actions = event(&state.tasks)
            var stopping: [AgentControl] = []
            for action in actions {
                switch action {
                case .start(let handle, _):
                    state.sourceControls[handle] = AgentControl()
                case .stop(let handle):
                    if let control = state.sourceControls[handle] { stopping.append(control) }
                case .ended(let handle):
                    state.sourceControls[handle] = nil
                }
            }
            return ((actions, stopping), [])
        }
        // The agent's own stop deadline when it stops; a task's source alone gets as long to have its reads acked.
        let deadline = self.control.deadline ?? .now + self.configuration.shutdownTimeout
        for control in stopping { control.stop(deadline: deadline) }
        for action in actions {
            switch action {
            case .start(_, let task):
                self.logger.info(
                    "task started",
                    metadata: ["inlong.task": "\(task.id)", "inlong.paths": "\(task.source.paths.joined(separator: ", "))", "inlong.group": "\(task.source.group)", "inlong.stream": "\(task.source.stream)"]
                )
            case .stop(let handle):
                self.logger.info("task stopping", metadata: ["inlong.source": "\(handle)"])
            case .ended(let handle):
                self.logger.info("task stopped", metadata: ["inlong.source": "\(handle)"])
            }
        }
    }
}

extension Agent {
    /// The files the agent holds that are still at their last paths: their offsets outlive a scan that no source
    /// matches them in (their task was removed, or changes), and go when the file does.
    func presentFiles() -> Set<FileRegistry.Key> {
        let files = self.modifyStateAndRunActions { ($0.machine.registry.paths, []) }
        var present = Set<FileRegistry.Key>()
        for file in files {
            guard let key = fileKey(file.path), key.device == file.key.device, key.inode == file.key.inode else { continue }
            present.insert(file.key)
        }
        return present
    }
}
