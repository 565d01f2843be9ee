import Foundation
import Testing

@testable import InLongDataProxyReceiver

/// The Manager's agent endpoints of `inlong receive --agent-tasks`: the file's tasks in the Manager's shape, its
/// changes counted, `NO_UPDATE` for an agent that has them, heartbeats counted.
@Suite struct AgentTaskBoardTests {
    static func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func theFilesTasksComeInTheManagersShapeAndNoUpdateWhenCurrent() throws {
        let board = AgentTaskBoard(file: "/unused")
        let file = Data(#"{"dataConfigs":[{"taskId":1,"taskType":3,"state":1,"extParams":{"pattern":"/logs/*.log"}}]}"#.utf8)
        let first = try Self.object(board.answerTaskRequest(#"{"agentIp":"10.0.0.1","clusterName":"default"}"#, content: file))
        #expect(first["success"] as? Bool == true)
        let data = try #require(first["data"] as? [String: Any])
        #expect(data["code"] as? String == "SUCCESS")
        #expect(data["version"] as? Int == 1)
        let config = try #require((data["dataConfigs"] as? [[String: Any]])?.first)
        // The Manager sends extParams as a JSON string.
        #expect(config["extParams"] as? String == #"{"pattern":"/logs/*.log"}"#)
        let md5 = try #require(data["md5"] as? String)
        let again = try Self.object(board.answerTaskRequest(#"{"md5":"\#(md5)"}"#, content: file))
        let current = try #require(again["data"] as? [String: Any])
        #expect(current["code"] as? String == "NO_UPDATE")
        #expect((current["dataConfigs"] as? [Any])?.isEmpty == true)
        // A changed file is a new version with another md5.
        let changed = try Self.object(board.answerTaskRequest(#"{"md5":"\#(md5)"}"#, content: Data(#"{"success":true,"data":{"dataConfigs":[]}}"#.utf8)))
        let next = try #require(changed["data"] as? [String: Any])
        #expect(next["code"] as? String == "SUCCESS")
        #expect(next["version"] as? Int == 2)
        #expect(next["md5"] as? String != md5)
        #expect(board.taskRequests == 3)
    }

    @Test func badRequestsAndFilesAreAnsweredAsFailures() throws {
        let board = AgentTaskBoard(file: "/unused")
        #expect(try Self.object(board.answerTaskRequest("not json", content: Data("{}".utf8)))["success"] as? Bool == false)
        #expect(try Self.object(board.answerTaskRequest("{}", content: nil))["success"] as? Bool == false)
        #expect(try Self.object(board.answerTaskRequest("{}", content: Data("[1]".utf8)))["success"] as? Bool == false)
        #expect(try Self.object(board.answerHeartbeat("nope"))["success"] as? Bool == false)
        #expect(board.heartbeats == 0)
        #expect(try Self.object(board.answerHeartbeat(#"{"ip":"10.0.0.1","componentType":"AGENT"}"#))["data"] as? Bool == true)
        #expect(board.heartbeats == 1)
        #expect(board.lastHeartbeat?.contains("AGENT") == true)
    }
}
