/// One collection task: a file source with the id that names it across changes (the Manager's `taskId`, or one
/// derived from a local source). A task whose id stays and whose source changes is a changed task: its old source
/// stops, and the new one reads on from the committed offsets of the files it still matches.
public struct AgentTask: Sendable, Hashable {
    /// What names the task across changes (`manager-<taskId>` for the Manager's tasks).
    public var id: String
    /// What the task reads and where it sends it.
    public var source: AgentConfiguration.FileSource

    public init(id: String, source: AgentConfiguration.FileSource) {
        self.id = id
        self.source = source
    }

    /// The tasks of a configuration file's sources. A local source has no id of its own, so its content names it:
    /// a source edited in the file is another task (the old one stops, the new one starts), and since offsets are
    /// kept per file, not per task, no line is lost or read twice either way. Identical sources are one task.
    public static func local(_ sources: [AgentConfiguration.FileSource]) -> [AgentTask] {
        var seen = Set<AgentConfiguration.FileSource>()
        return sources.compactMap { source in
            guard seen.insert(source).inserted else { return nil }
            return AgentTask(id: "local-" + String(UInt(bitPattern: source.hashValue), radix: 16), source: source)
        }
    }
}
