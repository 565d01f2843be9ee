import Foundation
import InLongTestUtils
import Testing

@testable import InLongAgent

/// The Manager's agent-task JSON as InLong's own agent test reads it, and what the agent makes of the answers.
@Suite struct ManagerTaskMessagesTests {
    static func fixture() throws -> Data {
        try Data(contentsOf: Fixtures.directory.appendingPathComponent("inlong-manager/get-exist-task-config-answer.json"))
    }

    @Test func inLongsOwnTaskAnswerGivesItsFourFileTasks() throws {
        let result = try #require(try ManagerAgentMessages.taskResult(from: Array(try Self.fixture())))
        let configs = try #require(result.dataConfigs)
        #expect(configs.map(\.taskId) == [282, 291, 415, 667])
        let tasks = try configs.map { try #require(try ManagerAgentMessages.task($0)) }
        #expect(tasks.map(\.id) == ["manager-282", "manager-291", "manager-415", "manager-667"])
        #expect(tasks[0].source.group == "gt200000264848")
        #expect(tasks[0].source.stream == "st20000016794f")
        #expect(tasks[0].source.paths == ["/data/log/wedata_*_[0-9]*/test.log_[0-9]*"])
        #expect(tasks[3].source.paths == ["/data/log_minute/*/*/*/test.log_[0-9]*"])
        #expect(tasks.allSatisfy { $0.source.startAt == .beginning })
    }

    @Test func aTaskThatDoesNotRunOrCannotRunIsLeftOut() throws {
        var config = ManagerAgentMessages.DataConfig()
        config.taskId = 5
        config.inlongGroupId = "g"
        config.inlongStreamId = "s"
        config.extParams = #"{"pattern":"/logs/*.log","contentCollectType":"INCREMENT","blackList":"/logs/x.log, /logs/y.log"}"#
        let task = try #require(try ManagerAgentMessages.task(config))
        #expect(task.source.startAt == .end)
        #expect(task.source.excludeFiles == ["/logs/x.log", "/logs/y.log"])
        config.state = 2
        #expect(try ManagerAgentMessages.task(config) == nil)
        config.state = 1
        config.taskType = 1
        #expect(throws: ManagerTaskError.self) { try ManagerAgentMessages.task(config) }
        config.taskType = 3
        config.extParams = "{}"
        #expect(throws: ManagerTaskError.self) { try ManagerAgentMessages.task(config) }
    }

    @Test func answersThatAreNotTaskSetsAreTypedErrors() {
        #expect(throws: ManagerTaskError.self) { try ManagerAgentMessages.taskResult(from: Array("not json".utf8)) }
        #expect(throws: ManagerTaskError.self) {
            try ManagerAgentMessages.taskResult(from: Array(#"{"success":false,"errMsg":"no such cluster","data":null}"#.utf8))
        }
        #expect((try? ManagerAgentMessages.taskResult(from: Array(#"{"success":true,"data":null}"#.utf8))) == .some(nil))
    }

    @Test func theCodeIsReadByNameOrNumber() throws {
        let named = try JSONDecoder().decode(ManagerAgentMessages.TaskResult.self, from: Data(#"{"code":"NO_UPDATE"}"#.utf8))
        let numbered = try JSONDecoder().decode(ManagerAgentMessages.TaskResult.self, from: Data(#"{"code":0}"#.utf8))
        #expect(named.code == .noUpdate)
        #expect(numbered.code == .success)
    }

    @Test func aTaskSetIsAppliedWhenItChanged() throws {
        var sync = ManagerTaskSync()
        #expect(sync.received(nil) == nil)
        let fixture = try #require(try ManagerAgentMessages.taskResult(from: Array(try Self.fixture())))
        var result = fixture
        result.md5 = "one"
        result.code = .success
        #expect(sync.received(result)?.tasks.count == 4)
        #expect(sync.md5 == "one")
        // The same set again, or the Manager saying nothing changed: nothing to apply.
        #expect(sync.received(result) == nil)
        #expect(sync.received(.init(dataConfigs: [], cmdConfigs: [], md5: "one", code: .noUpdate, version: 2)) == nil)
        // An empty set removes every task.
        let empty = sync.received(.init(dataConfigs: [], cmdConfigs: [], md5: "two", code: .success, version: 3))
        #expect(empty?.tasks == [])
        #expect(sync.applied == 2)
    }
}

extension ManagerTaskSync.Update: Equatable {
    static func == (a: Self, b: Self) -> Bool { a.tasks == b.tasks && a.errors == b.errors }
}
