/// What the agent makes of the Manager's task answers, with no I/O: the task set to apply when it changed, kept
/// by its `md5` (sent back with the next request, so that the Manager can answer `NO_UPDATE`).
struct ManagerTaskSync {
    private(set) var md5: String?
    private(set) var version: Int?
    /// Task sets applied.
    private(set) var applied = 0

    struct Update {
        var tasks: [AgentTask]
        /// Tasks of the answer the agent cannot run (left out, the others run).
        var errors: [ManagerTaskError]
    }

    /// The tasks to apply from an answer, or `nil` when nothing changed. No answer (`data` null: the Manager has no
    /// task set for this agent yet) changes nothing, as in InLong's agent: only a task set, even an empty one,
    /// removes tasks.
    mutating func received(_ result: ManagerAgentMessages.TaskResult?) -> Update? {
        guard let result else { return nil }
        switch result.code {
        case .noUpdate?, .other?: return nil
        case .success?, nil: break
        }
        if let md5 = result.md5, md5 == self.md5 { return nil }
        var update = Update(tasks: [], errors: [])
        for config in result.dataConfigs ?? [] {
            do throws(ManagerTaskError) {
                if let task = try ManagerAgentMessages.task(config) { update.tasks.append(task) }
            } catch {
                update.errors.append(error)
            }
        }
        self.md5 = result.md5
        self.version = result.version
        self.applied += 1
        return update
    }
}
