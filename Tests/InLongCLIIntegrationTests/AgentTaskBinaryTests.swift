import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// `inlong agent` with tasks that change while it runs, as processes: driven only by `inlong receive`'s Manager
/// endpoint, and reloading its configuration file on SIGHUP. Every wait is bounded; nothing is timed.
@Suite(.serialized, .timeLimit(.minutes(8)))
struct AgentTaskBinaryTests {
    /// Generous: bounded waits for another party, on a machine the full suite and other builds load.
    static let patience: Duration = .seconds(150)

    static func tasks(_ tasks: [(id: Int, pattern: String)]) -> String {
        let configs = tasks.map { task in
            #"{"taskId":\#(task.id),"taskType":3,"state":1,"inlongGroupId":"g","inlongStreamId":"s","extParams":{"pattern":"\#(task.pattern)"}}"#
        }
        return #"{"dataConfigs":[\#(configs.joined(separator: ","))]}"#
    }

    static func append(_ lines: [String], to path: String) throws {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let handle = try #require(FileHandle(forWritingAtPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(lines.map { $0 + "\n" }.joined().utf8))
    }

    static func lines(_ prefix: String, _ range: Range<Int>) -> [String] { range.map { "\(prefix)-\($0)" } }

    static func occurrences(of text: String, in output: String) -> Int { output.components(separatedBy: text).count - 1 }

    @Test func anAgentDrivenByTheManagerEndpointPicksUpDropsAndPicksUpChangedTasks() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let logs = directory.appendingPathComponent("logs").path
            try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
            let tasks = directory.appendingPathComponent("tasks.json").path
            let out = directory.appendingPathComponent("received.jsonl")
            try Self.tasks([]).write(toFile: tasks, atomically: true, encoding: .utf8)
            let receiver = try ChildProcess(
                inlong,
                ["receive", "--listen", "127.0.0.1:0", "--manager-port", "0", "--agent-tasks", tasks, "--out", out.path],
                logs: directory,
                name: "receiver"
            )
            defer { receiver.signal(SIGKILL) }
            #expect(await eventually(timeout: Self.patience) { receiver.error().contains("Manager endpoint") || !receiver.isRunning })
            let announced = receiver.error()
            let start = try #require(announced.range(of: "Manager endpoint ")?.upperBound, "\(receiver.output())")
            let end = try #require(announced[start...].range(of: "/inlong/manager/")?.lowerBound, "\(receiver.output())")
            let manager = String(announced[start..<end])

            let agent = try ChildProcess(
                inlong,
                [
                    "agent", "--manager", manager, "--state-dir", directory.appendingPathComponent("state").path,
                    "--task-interval", "0.1", "--heartbeat-interval", "0.1", "--log-level", "info",
                ],
                logs: directory,
                name: "agent"
            )
            defer { agent.signal(SIGKILL) }
            try Self.append(Self.lines("a", 0..<1_000), to: logs + "/a.log")
            // Picked up: its file arrives byte for byte.
            try Self.tasks([(1, logs + "/a.log")]).write(toFile: tasks, atomically: true, encoding: .utf8)
            #expect(await eventually(timeout: Self.patience) { (try? receivedBodies(out).count) ?? 0 >= 1_000 || !agent.isRunning }, "\(agent.output())")
            #expect(try receivedBodies(out) == Self.lines("a", 0..<1_000))

            // Dropped: once its source stopped, lines written to its file stay there. Another task's file arriving
            // shows that the agent scanned after those lines were written.
            try Self.tasks([]).write(toFile: tasks, atomically: true, encoding: .utf8)
            #expect(await eventually(timeout: Self.patience) { Self.occurrences(of: "task stopped", in: agent.error()) >= 1 || !agent.isRunning }, "\(agent.output())")
            try Self.append(Self.lines("a", 1_000..<1_500), to: logs + "/a.log")
            try Self.append(Self.lines("c", 0..<10), to: logs + "/c.log")
            try Self.tasks([(2, logs + "/c.log")]).write(toFile: tasks, atomically: true, encoding: .utf8)
            #expect(await eventually(timeout: Self.patience) { (try? receivedBodies(out).count) ?? 0 >= 1_010 || !agent.isRunning }, "\(agent.output())")
            #expect(try receivedBodies(out) == Self.lines("a", 0..<1_000) + Self.lines("c", 0..<10))

            // Picked up changed (a wider pattern): its file goes on from the committed offset, with a new file.
            try Self.append(Self.lines("ab", 0..<300), to: logs + "/ab.log")
            try Self.tasks([(1, logs + "/a*.log"), (2, logs + "/c.log")]).write(toFile: tasks, atomically: true, encoding: .utf8)
            #expect(await eventually(timeout: Self.patience) { (try? receivedBodies(out).count) ?? 0 >= 1_810 || !agent.isRunning }, "\(agent.output())")
            agent.signal(SIGTERM)
            #expect(await agent.waitForExit() == .exit(0), "\(agent.output())")
            let bodies = try receivedBodies(out)
            #expect(bodies.count == 1_810)
            #expect(bodies.filter { $0.hasPrefix("a-") } == Self.lines("a", 0..<1_500))
            #expect(bodies.filter { $0.hasPrefix("ab-") } == Self.lines("ab", 0..<300))
            #expect(bodies.filter { $0.hasPrefix("c-") } == Self.lines("c", 0..<10))
        }
    }

    /// A writer appends to one source's file while SIGHUP brings the configuration file with a second source: the
    /// second source's files arrive, and every line of the first arrives exactly once.
    @Test func aSIGHUPThatAddsASourceLosesNoLineOfTheOthers() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let logs = directory.appendingPathComponent("logs").path
            try FileManager.default.createDirectory(atPath: logs + "/a", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: logs + "/b", withIntermediateDirectories: true)
            try await withReceiver { receiver in
                let port = try await receiver.port()
                let config = directory.appendingPathComponent("agent.yaml").path
                func write(sources: [(path: String, stream: String)]) throws {
                    var yaml = "stateDirectory: \(directory.appendingPathComponent("state").path)\nproxies: [\"127.0.0.1:\(port)\"]\nsources:\n"
                    for source in sources { yaml += "  - paths: [\"\(source.path)\"]\n    group: g\n    stream: \(source.stream)\n" }
                    try yaml.write(toFile: config, atomically: true, encoding: .utf8)
                }
                try write(sources: [(logs + "/a/*.log", "s")])
                let agent = try ChildProcess(inlong, ["agent", "--config", config, "--log-level", "info"], logs: directory, name: "agent")
                defer { agent.signal(SIGKILL) }
                // SIGHUP is trapped before the start line.
                #expect(await eventually(timeout: Self.patience) { agent.error().contains("agent: watching") || !agent.isRunning }, "\(agent.output())")
                let writer = Task {
                    for burst in 0..<40 {
                        try Self.append(Self.lines("a\(burst)", 0..<100), to: logs + "/a/app.log")
                        try await Task.sleep(for: .milliseconds(10))
                    }
                }
                #expect(await eventually(timeout: Self.patience) { receiver.memorySink.recordCount > 0 || !agent.isRunning }, "\(agent.output())")
                try Self.append(Self.lines("b", 0..<500), to: logs + "/b/other.log")
                try write(sources: [(logs + "/a/*.log", "s"), (logs + "/b/*.log", "t")])
                agent.signal(SIGHUP)
                try await writer.value
                let expected = (0..<40).flatMap { Self.lines("a\($0)", 0..<100) }
                #expect(await eventually(timeout: Self.patience) { receiver.memorySink.recordCount >= expected.count + 500 || !agent.isRunning }, "\(agent.output())")
                agent.signal(SIGTERM)
                #expect(await agent.waitForExit() == .exit(0), "\(agent.output())")
                #expect(agent.error().contains("SIGHUP"), "\(agent.output())")
                let records = receiver.memorySink.messages.flatMap { message in message.records.map { (stream: message.stream, line: String(buffer: $0.body)) } }
                #expect(records.filter { $0.stream == "s" }.map(\.line) == expected)
                #expect(records.filter { $0.stream == "t" }.map(\.line) == Self.lines("b", 0..<500))
                #expect(records.count == expected.count + 500)
            }
        }
    }
}
