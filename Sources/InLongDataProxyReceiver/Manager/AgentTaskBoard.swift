import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOPosix
import Synchronization

/// The Manager's agent endpoints, for tests and demos: `POST /inlong/manager/openapi/agent/getExistTaskConfig`
/// answers with the tasks of a file, read again at every request (so that adding, changing or removing a task is
/// editing the file), and `POST /inlong/manager/openapi/heartbeat/report` counts heartbeats.
///
/// The file holds InLong's `TaskResult` (`{"dataConfigs":[…]}`), or a whole Manager answer
/// (`{"success":true,"data":{"dataConfigs":[…]}}`). A task's `extParams` may be written as a JSON object; it is
/// sent as the string the Manager sends. Every agent gets every task. The answer's `md5` names the file's content
/// and `version` counts its changes; an agent that sends the current `md5` is answered `NO_UPDATE`.
public final class AgentTaskBoard: Sendable {
    public static let taskPath = "/inlong/manager/openapi/agent/getExistTaskConfig"
    public static let heartbeatPath = "/inlong/manager/openapi/heartbeat/report"

    public let file: String
    private struct State {
        var content: [UInt8]?
        var version = 0
        var heartbeats = 0
        var lastHeartbeat: String?
        var taskRequests = 0
        var lastTaskRequest: String?
    }

    private let state = Mutex(State())

    public init(file: String) {
        self.file = file
    }

    /// Heartbeats received.
    public var heartbeats: Int { self.state.withLock { $0.heartbeats } }
    /// The body of the last heartbeat.
    public var lastHeartbeat: String? { self.state.withLock { $0.lastHeartbeat } }
    /// Task requests received.
    public var taskRequests: Int { self.state.withLock { $0.taskRequests } }
    /// The body of the last task request.
    public var lastTaskRequest: String? { self.state.withLock { $0.lastTaskRequest } }

    /// The file's content now, read on NIO's blocking pool (never on the cooperative one); `nil` when unreadable.
    func readFile() async -> Data? {
        let file = self.file
        return try? await NIOThreadPool.singleton.runIfActive { FileManager.default.contents(atPath: file) }
    }

    /// The answer to a task request with `body`, the file holding `content`.
    func answerTaskRequest(_ body: String, content: Data?) -> String {
        guard let request = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            return Self.failure("the task request is not a JSON object")
        }
        let md5 = request["md5"] as? String
        guard let content else {
            return Self.failure("cannot read the agent tasks file \(self.file)")
        }
        guard var result = Self.taskResult(content) else {
            return Self.failure("the agent tasks file \(self.file) holds no TaskResult (dataConfigs)")
        }
        let bytes = Array(content)
        let version = self.state.withLock { state in
            state.taskRequests += 1
            state.lastTaskRequest = body
            if state.content != bytes {
                state.content = bytes
                state.version += 1
            }
            return state.version
        }
        let digest = Self.digest(bytes)
        if md5 == digest {
            result = ["dataConfigs": [Any](), "cmdConfigs": [Any]()]
            result["code"] = "NO_UPDATE"
        } else {
            result["code"] = "SUCCESS"
        }
        result["md5"] = digest
        result["version"] = version
        let envelope: [String: Any] = ["success": true, "errMsg": NSNull(), "data": result]
        guard let data = try? JSONSerialization.data(withJSONObject: envelope, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return Self.failure("cannot encode the tasks")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The answer to a heartbeat with `body`.
    func answerHeartbeat(_ body: String) -> String {
        guard (try? JSONSerialization.jsonObject(with: Data(body.utf8))) is [String: Any] else {
            return Self.failure("the heartbeat is not a JSON object")
        }
        self.state.withLock { state in
            state.heartbeats += 1
            state.lastHeartbeat = body
        }
        return #"{"success":true,"errMsg":null,"data":true}"#
    }

    /// The file's `TaskResult`, with each `extParams` object made the string the Manager sends.
    private static func taskResult(_ content: Data) -> [String: Any]? {
        guard var object = try? JSONSerialization.jsonObject(with: content) as? [String: Any] else { return nil }
        if object["dataConfigs"] == nil, let data = object["data"] as? [String: Any] { object = data }
        guard let configs = object["dataConfigs"] as? [Any] else { return nil }
        object["dataConfigs"] = configs.map { config -> Any in
            guard var config = config as? [String: Any], let parameters = config["extParams"] as? [String: Any],
                let data = try? JSONSerialization.data(withJSONObject: parameters, options: [.sortedKeys, .withoutEscapingSlashes])
            else { return config }
            config["extParams"] = String(decoding: data, as: UTF8.self)
            return config
        }
        if object["cmdConfigs"] == nil { object["cmdConfigs"] = [Any]() }
        return object
    }

    /// A name of the content (FNV-1a, hex): the Manager's `md5` is only compared.
    private static func digest(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    private static func failure(_ message: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: ["success": false, "errMsg": message, "data": NSNull()] as [String: Any], options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
