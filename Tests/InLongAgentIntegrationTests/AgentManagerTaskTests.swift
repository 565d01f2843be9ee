import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import NIOCore
import Testing

@testable import InLongAgent

/// An agent with no sources of its own, driven by the Manager endpoint of the in-process receiver: tasks added,
/// removed and changed in the endpoint's file while it runs.
@Suite(.timeLimit(.minutes(8))) struct AgentManagerTaskTests {
    /// Generous: bounded waits for another party, on a machine the full suite and other builds load.
    static let patience: Duration = .seconds(150)

    /// InLong's `TaskResult` with one file task per `(taskId, pattern, stream)`.
    static func tasks(_ tasks: [(id: Int, pattern: String, stream: String)]) -> String {
        let configs = tasks.map { task in
            let parameters = #"{\"pattern\":\"\#(task.pattern)\",\"contentCollectType\":\"FULL\"}"#
            return #"{"taskId":\#(task.id),"taskType":3,"state":1,"op":"0","inlongGroupId":"g","inlongStreamId":"\#(task.stream)","extParams":"\#(parameters)","version":1}"#
        }
        return #"{"dataConfigs":[\#(configs.joined(separator: ","))],"cmdConfigs":[]}"#
    }

    func withManagedAgent(
        _ workspace: borrowing AgentWorkspace,
        tasksFile: String,
        _ body: (Agent, DataProxyReceiver, AgentTaskBoard, ManagerTaskFetcher) async throws -> Void
    ) async throws {
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        var manager = DataProxyManagerServer.Configuration()
        manager.agentTasksFile = tasksFile
        receiverConfiguration.manager = manager
        let state = workspace.state
        try await withReceiver(receiverConfiguration) { receiver in
            let board = try #require(receiver.manager?.agentTasks)
            let address = try await #require(receiver.manager).managerAddress()
            var configuration = AgentWorkspaceConfiguration.make(port: try await receiver.port(), state: state)
            configuration.sources = []
            try await withAgent(configuration) { agent in
                var fetcherConfiguration = ManagerTaskFetcher.Configuration(managerURL: address)
                fetcherConfiguration.fetchInterval = .milliseconds(50)
                fetcherConfiguration.heartbeatInterval = .milliseconds(50)
                let fetcher = ManagerTaskFetcher(agent: agent, configuration: fetcherConfiguration)
                let run = Task { try await fetcher.run() }
                defer { run.cancel() }
                try await body(agent, receiver, board, fetcher)
            }
        }
    }

    @Test func aTaskIsPickedUpDroppedAndPickedUpChangedWithEveryLineOnce() async throws {
        let workspace = try AgentWorkspace()
        let tasksFile = workspace.root + "/tasks.json"
        try Self.tasks([]).write(toFile: tasksFile, atomically: true, encoding: .utf8)
        try workspace.append(numbered("a", 0..<500), to: "a.log")
        try await self.withManagedAgent(workspace, tasksFile: tasksFile) { agent, receiver, board, fetcher in
            #expect(await eventually(timeout: Self.patience) { board.heartbeats >= 2 && fetcher.statistics().fetches >= 2 })
            #expect(storedLines(receiver).isEmpty)
            // Picked up: the file's lines arrive, byte for byte, in order.
            try Self.tasks([(1, workspace.path("a.log"), "s")]).write(toFile: tasksFile, atomically: true, encoding: .utf8)
            #expect(await eventually(timeout: Self.patience) { storedLines(receiver).count >= 500 })
            #expect(storedLines(receiver) == numbered("a", 0..<500))
            #expect(await eventually(timeout: Self.patience) { agent.statistics().lagBytes == 0 })

            // Dropped: its source stops and lets go of the file; lines written after are not read.
            try Self.tasks([]).write(toFile: tasksFile, atomically: true, encoding: .utf8)
            #expect(await eventually(timeout: Self.patience) { agent.runningTasks.isEmpty && agent.statistics().openFiles == 0 })
            try workspace.append(numbered("a", 500..<800), to: "a.log")
            // Several task requests and scans later (each request comes after the last one was applied).
            let requests = board.taskRequests
            #expect(await eventually(timeout: Self.patience) { board.taskRequests >= requests + 5 })
            #expect(agent.statistics().linesRead == 500)
            #expect(storedLines(receiver).count == 500)

            // Picked up changed (another pattern, another stream): the file goes on from its committed offset, and a
            // new file matching comes with it.
            try workspace.append(numbered("b", 0..<200), to: "b.log")
            try Self.tasks([(1, workspace.logs + "/*.log", "t")]).write(toFile: tasksFile, atomically: true, encoding: .utf8)
            #expect(await eventually(timeout: Self.patience) { storedLines(receiver).count >= 1_000 })
            #expect(await eventually(timeout: Self.patience) { agent.statistics().lagBytes == 0 })
            let records = streamedLines(receiver)
            #expect(records.count == 1_000)
            #expect(records.prefix(500).map(\.line) == numbered("a", 0..<500))
            let later = records.dropFirst(500)
            #expect(later.allSatisfy { $0.stream == "t" })
            #expect(later.map(\.line).filter { $0.hasPrefix("a-") } == numbered("a", 500..<800))
            #expect(later.map(\.line).filter { $0.hasPrefix("b-") } == numbered("b", 0..<200))
            #expect(fetcher.statistics().applied == 4)
            #expect(board.lastHeartbeat?.contains(#""componentType":"AGENT""#) == true)
        }
    }

    /// A task changed while its file is written: the old source stops once its reads are acked, the new one reads on
    /// from the committed offset; every line arrives once, those read after the change under the new stream.
    @Test func aTaskChangedWhileItsFileGrowsLosesAndRepeatsNoLine() async throws {
        let workspace = try AgentWorkspace()
        let tasksFile = workspace.root + "/tasks.json"
        try Self.tasks([(7, workspace.path("app.log"), "s")]).write(toFile: tasksFile, atomically: true, encoding: .utf8)
        try await self.withManagedAgent(workspace, tasksFile: tasksFile) { agent, receiver, board, fetcher in
            // The first task set runs before the file is written (on a loaded machine the first request can come
            // after the change below, which would then be the first set).
            #expect(await eventually(timeout: Self.patience) { fetcher.statistics().applied == 1 && agent.runningTasks.count == 1 })
            var expected: [String] = []
            for burst in 0..<6 {
                let lines = numbered("burst\(burst)", 0..<500)
                try workspace.append(lines, to: "app.log")
                expected += lines
                if burst == 2 {
                    try Self.tasks([(7, workspace.path("app.log"), "t")]).write(toFile: tasksFile, atomically: true, encoding: .utf8)
                    let start = ContinuousClock.now
                    #expect(
                        await eventually(timeout: Self.patience) { fetcher.statistics().applied == 2 },
                        "after \(ContinuousClock.now - start): \(fetcher.statistics()), \(board.taskRequests) task requests"
                    )
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(await eventually(timeout: Self.patience) { storedLines(receiver).count >= expected.count && agent.statistics().lagBytes == 0 })
            #expect(storedLines(receiver) == expected)
            #expect(await eventually(timeout: Self.patience) { agent.runningTasks.map(\.source.stream) == ["t"] })
            #expect(streamedLines(receiver).last?.stream == "t")
        }
    }
}

/// The agent configuration of the workspace's tests, for a state directory.
enum AgentWorkspaceConfiguration {
    static func make(port: Int, state: String) -> AgentConfiguration {
        var client = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: port)])
        client.batching.linger = .milliseconds(5)
        var configuration = AgentConfiguration(sources: [], stateDirectory: state, client: client)
        configuration.scanInterval = .milliseconds(50)
        configuration.pollInterval = .milliseconds(10)
        configuration.checkpointInterval = .milliseconds(50)
        configuration.releaseAfter = .milliseconds(200)
        configuration.resendDelay = .milliseconds(50)
        return configuration
    }
}

/// Each line the receiver stored, with its stream.
func streamedLines(_ receiver: DataProxyReceiver) -> [(stream: String, line: String)] {
    receiver.memorySink.messages.flatMap { message in message.records.map { (message.stream, String(buffer: $0.body)) } }
}
