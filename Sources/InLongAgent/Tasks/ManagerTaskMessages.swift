import Foundation

/// The InLong Manager's agent messages, as InLong's Agent exchanges them: the task request and its answer
/// (`POST /inlong/manager/openapi/agent/getExistTaskConfig`, InLong's `TaskRequest` and `TaskResult` of
/// `DataConfig`s), and the heartbeat (`POST /inlong/manager/openapi/heartbeat/report`, InLong's `HeartbeatMsg`).
/// Answers come wrapped as every Manager OpenAPI answer: `{"success":…,"errMsg":…,"data":…}`.
public enum ManagerAgentMessages {
    /// Where an agent asks for its tasks, under the Manager's address.
    public static let taskPath = "/inlong/manager/openapi/agent/getExistTaskConfig"
    /// Where an agent reports its heartbeat, under the Manager's address.
    public static let heartbeatPath = "/inlong/manager/openapi/heartbeat/report"

    /// InLong's `TaskRequest`: who asks, and the `md5` of the task set it has (the Manager answers `NO_UPDATE`
    /// with no tasks when it is current).
    public struct TaskRequest: Codable, Sendable, Hashable {
        public var agentIp: String
        public var uuid: String
        public var clusterName: String
        /// InLong's `PullJobTypeEnum.NEW` (1).
        public var pullJobType: Int? = 1
        public var md5: String?
        public var commandInfo: [String]? = nil

        public init(agentIp: String, uuid: String, clusterName: String, md5: String?) {
            self.agentIp = agentIp
            self.uuid = uuid
            self.clusterName = clusterName
            self.md5 = md5
        }
    }

    /// InLong's `AgentResponseCode`, sent by name (`"SUCCESS"`, `"NO_UPDATE"`); its number is taken too.
    public enum ResponseCode: Sendable, Hashable, Codable {
        case success
        case noUpdate
        case other(String)

        public init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let number = try? container.decode(Int.self) {
                self = number == 0 ? .success : number == 1 ? .noUpdate : .other(String(number))
            } else {
                let name = try container.decode(String.self)
                self = name == "SUCCESS" ? .success : name == "NO_UPDATE" ? .noUpdate : .other(name)
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .success: try container.encode("SUCCESS")
            case .noUpdate: try container.encode("NO_UPDATE")
            case .other(let name): try container.encode(name)
            }
        }
    }

    /// InLong's `TaskResult`: the agent's whole task set (`dataConfigs`), and its `md5` and `version`.
    public struct TaskResult: Codable, Sendable, Hashable {
        public var dataConfigs: [DataConfig]?
        /// Commands (InLong's `CmdConfig`); kept as they come, not acted on.
        public var cmdConfigs: [CommandConfig]?
        public var md5: String?
        /// Absent in older Managers: then the task set is taken as it comes.
        public var code: ResponseCode?
        public var version: Int?
    }

    /// InLong's `CmdConfig`, as far as it is read.
    public struct CommandConfig: Codable, Sendable, Hashable {
        public var taskId: Int?
        public var op: Int?
    }

    /// InLong's `DataConfig`: one task. A file task (`taskType` 3) carries its file settings as a JSON string in
    /// `extParams` (InLong's `FileTaskConfig`).
    public struct DataConfig: Codable, Sendable, Hashable {
        public var ip: String?
        public var uuid: String?
        public var inlongGroupId: String?
        public var inlongStreamId: String?
        public var op: String?
        public var taskId: Int?
        public var taskType: Int?
        public var taskName: String?
        /// InLong's `TaskStateEnum`: 1 is running; any other state (frozen, finished) means the task does not run.
        public var state: Int?
        public var extParams: String?
        public var version: Int?
        public var timeZone: String?
        public var dataReportType: Int?
    }

    /// The part of InLong's `FileTaskConfig` (a file task's `extParams`) the agent uses.
    struct FileTaskConfig: Decodable {
        var pattern: String?
        /// Paths not to read, comma-separated.
        var blackList: String?
        /// `FULL` reads a file found from its start, `INCREMENT` only what is written after.
        var contentCollectType: String?
    }

    /// InLong's `HeartbeatMsg` for an agent.
    public struct Heartbeat: Codable, Sendable, Hashable {
        public var ip: String
        public var port: String?
        public var componentType = "AGENT"
        public var reportTime: Int64
        public var clusterName: String
        public var clusterTag: String?
        public var inCharges: String?
        public var nodeSrvStatus = "OK"
        public var protocolType: String?
        public var load: Int?

        public init(ip: String, reportTime: Int64, clusterName: String, clusterTag: String?) {
            self.ip = ip
            self.reportTime = reportTime
            self.clusterName = clusterName
            self.clusterTag = clusterTag
        }
    }

    /// The Manager's answer around any payload.
    public struct Envelope<Payload: Codable & Sendable>: Codable, Sendable {
        public var success: Bool
        public var errMsg: String?
        public var data: Payload?

        public init(success: Bool, errMsg: String? = nil, data: Payload?) {
            self.success = success
            self.errMsg = errMsg
            self.data = data
        }
    }

    /// Decodes a task answer; throws ``ManagerTaskError`` for a failure or a body that is not one.
    public static func taskResult(from body: some Collection<UInt8>) throws(ManagerTaskError) -> TaskResult? {
        let envelope: Envelope<TaskResult>
        do {
            envelope = try JSONDecoder().decode(Envelope<TaskResult>.self, from: Data(body))
        } catch {
            throw ManagerTaskError("the Manager's task answer is not one: \(error)")
        }
        guard envelope.success else { throw ManagerTaskError("the Manager refused the task request: \(envelope.errMsg ?? "no reason given")") }
        return envelope.data
    }

    /// The agent's task of a `DataConfig`: a file task that runs, with its pattern; `nil` for a task that does not
    /// run (another state); an error for one the agent cannot run (not a file task, no pattern, no group).
    public static func task(_ config: DataConfig) throws(ManagerTaskError) -> AgentTask? {
        guard let taskID = config.taskId else { throw ManagerTaskError("a task without taskId") }
        if let state = config.state, state != 1 { return nil }
        if let type = config.taskType, type != 3 { throw ManagerTaskError("task \(taskID): taskType \(type) is not a file task (3)") }
        guard let group = config.inlongGroupId, !group.isEmpty, let stream = config.inlongStreamId, !stream.isEmpty else {
            throw ManagerTaskError("task \(taskID): no inlongGroupId or inlongStreamId")
        }
        let file: FileTaskConfig
        do {
            file = try JSONDecoder().decode(FileTaskConfig.self, from: Data((config.extParams ?? "{}").utf8))
        } catch {
            throw ManagerTaskError("task \(taskID): extParams is not a file task's JSON: \(error)")
        }
        guard let pattern = file.pattern, !pattern.isEmpty else { throw ManagerTaskError("task \(taskID): extParams has no pattern") }
        var source = AgentConfiguration.FileSource(paths: [glob(fromPattern: pattern)], group: group, stream: stream)
        if file.contentCollectType?.uppercased() == "INCREMENT" { source.startAt = .end }
        if let blackList = file.blackList, !blackList.isEmpty {
            source.excludeFiles = blackList.split(separator: ",").map { glob(fromPattern: String($0).trimmingCharacters(in: .whitespaces)) }
        }
        return AgentTask(id: "manager-\(taskID)", source: source)
    }

    /// A glob for an InLong file pattern: InLong's time placeholders (`YYYY`, `MM`, `DD`, `hh`, `mm`) match any
    /// date, and the regular-expression pieces InLong patterns use (`[0-9]+`, `.*`, `\d+`) become their glob
    /// likes. A plain glob stays as it is (but for those placeholders, as in InLong).
    static func glob(fromPattern pattern: String) -> String {
        var glob = pattern
        for (from, to) in [("\\d+", "[0-9]*"), ("]+", "]*"), (".*", "*"), ("YYYY", "*"), ("MM", "*"), ("DD", "*"), ("hh", "*"), ("mm", "*")] {
            glob = glob.replacingOccurrences(of: from, with: to)
        }
        while glob.contains("**") { glob = glob.replacingOccurrences(of: "**", with: "*") }
        return glob
    }
}

/// A Manager task answer the agent cannot use, or a task it cannot run.
public struct ManagerTaskError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
