import AsyncHTTPClient
import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import NIOHTTP1
import Testing

/// `/health` of the built binary: what an orchestrator's probe sees, on the port printed at start.
@Suite(.timeLimit(.minutes(3)))
struct HealthBinaryTests {
    private static func get(_ url: String) async -> (status: UInt, body: String)? {
        guard let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10)),
            let body = try? await response.body.collect(upTo: 1 << 20)
        else { return nil }
        return (response.status.code, String(buffer: body))
    }

    /// The port of `metrics on http://127.0.0.1:PORT/metrics, ...`, once the child said it.
    private static func metricsPort(of child: ChildProcess) async -> Int? {
        var port: Int?
        _ = await eventually {
            let line = child.error().split(separator: "\n").first { $0.hasPrefix("metrics on http://127.0.0.1:") }
            port = line.flatMap { Int($0.dropFirst("metrics on http://127.0.0.1:".count).prefix { $0.isNumber }) }
            return port != nil || !child.isRunning
        }
        return port
    }

    private static func runReceiver(port: Int, sink: InMemorySink) async throws -> (DataProxyReceiver, Task<Void, any Error>) {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.port = port
        let receiver = DataProxyReceiver(configuration: configuration, sink: sink)
        let task = Task { try await receiver.run() }
        _ = try await receiver.localAddress()
        return (receiver, task)
    }

    @Test func sendsHealthFailsWhileTheProxyIsGoneAndRecoversWhenItIsBack() async throws {
        let inlong = try inlongExecutable()
        let port = try unusedPortOutsideEphemeralRange()
        let sink = InMemorySink()
        try await withTemporaryDirectory { directory in
            var (receiver, served) = try await Self.runReceiver(port: port, sink: sink)
            let input = Pipe()
            let send = try ChildProcess(
                inlong,
                ["send", "--proxy", "127.0.0.1:\(port)", "--group", "g", "--stream", "s", "--metrics", "127.0.0.1:0",
                 "--unreachable-timeout", "600"],
                input: input,
                logs: directory,
                name: "send"
            )
            let metrics = try #require(await Self.metricsPort(of: send), "\(send.output())")
            let health = "http://127.0.0.1:\(metrics)/health"
            input.fileHandleForWriting.write(Data("before\n".utf8))
            #expect(await eventually { await Self.get(health)?.status == 200 }, "\(send.output())")

            receiver.stop()
            try await served.value
            input.fileHandleForWriting.write(Data("during\n".utf8))
            var answer: (status: UInt, body: String)?
            let unhealthy = await eventually {
                answer = await Self.get(health)
                return answer?.status == 503
            }
            #expect(unhealthy, "\(send.output())")
            #expect(answer?.body.contains("127.0.0.1:\(port)") == true, "\(answer?.body ?? "")")

            (receiver, served) = try await Self.runReceiver(port: port, sink: sink)
            #expect(await eventually { await Self.get(health)?.status == 200 }, "\(send.output())")
            input.fileHandleForWriting.write(Data("after\n".utf8))
            try input.fileHandleForWriting.close()
            #expect(await send.waitForExit() == .exit(0), "\(send.output())")
            receiver.stop()
            try await served.value
            // Every line arrived; one sent while the proxy was gone waited for it.
            let bodies = Set(sink.records.map { String(buffer: $0.body) })
            #expect(bodies == ["before", "during", "after"])
        }
    }

    /// `inlong agent --manager` whose Manager (tasks and heartbeats) goes away: `/health` turns 503 once it has not
    /// answered for `--manager-unreachable-timeout`, naming its address and the cause, and 200 when it is back.
    @Test func agentsHealthFailsWhileItsManagerIsGoneAndRecoversWhenItIsBack() async throws {
        let inlong = try inlongExecutable()
        let port = try unusedPortOutsideEphemeralRange()
        try await withTemporaryDirectory { directory in
            let tasks = directory.appendingPathComponent("tasks.json").path
            try #"{"dataConfigs":[]}"#.write(toFile: tasks, atomically: true, encoding: .utf8)
            func runManager() async throws -> (DataProxyReceiver, Task<Void, any Error>) {
                var configuration = DataProxyReceiver.Configuration.loopback
                var manager = DataProxyManagerServer.Configuration()
                manager.port = port
                manager.agentTasksFile = tasks
                configuration.manager = manager
                let receiver = DataProxyReceiver(configuration: configuration, sink: InMemorySink())
                let task = Task { try await receiver.run() }
                _ = try await receiver.manager!.localAddress()
                return (receiver, task)
            }
            var (receiver, served) = try await runManager()
            let manager = "http://127.0.0.1:\(port)"
            let agent = try ChildProcess(
                inlong,
                ["agent", "--manager", manager, "--state-dir", directory.appendingPathComponent("state").path,
                 "--task-interval", "0.2", "--heartbeat-interval", "0.2", "--manager-unreachable-timeout", "1", "--metrics", "127.0.0.1:0"],
                logs: directory,
                name: "agent"
            )
            defer { agent.signal(SIGKILL) }
            let metrics = try #require(await Self.metricsPort(of: agent), "\(agent.output())")
            let health = "http://127.0.0.1:\(metrics)/health"
            #expect(await eventually { receiver.manager!.agentTasks!.heartbeats > 0 }, "\(agent.output())")
            #expect(await Self.get(health)?.status == 200, "\(agent.output())")

            receiver.stop()
            try await served.value
            var answer: (status: UInt, body: String)?
            let unhealthy = await eventually {
                answer = await Self.get(health)
                return answer?.status == 503
            }
            #expect(unhealthy, "\(agent.output())")
            let body = answer?.body ?? ""
            #expect(body.hasPrefix("the Manager \(manager) has not answered for "), "\(body)")
            #expect(body.hasSuffix(": connection refused\n"), "\(body)")

            (receiver, served) = try await runManager()
            #expect(await eventually { await Self.get(health)?.status == 200 }, "\(agent.output())")
            agent.signal(SIGTERM)
            #expect(await agent.waitForExit() == .exit(0), "\(agent.output())")
            receiver.stop()
            try await served.value
        }
    }

    @Test func receivesHealthFailsWhileItsSinkCannotWrite() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            // /dev/full takes the open and fails every write with ENOSPC: a full disk.
            let receive = try ChildProcess(
                inlong,
                ["receive", "--listen", "127.0.0.1:0", "--out", "/dev/full", "--append", "--metrics", "127.0.0.1:0"],
                logs: directory,
                name: "receive"
            )
            let metrics = try #require(await Self.metricsPort(of: receive), "\(receive.output())")
            let health = "http://127.0.0.1:\(metrics)/health"
            #expect(await Self.get(health)?.status == 200)
            var listening: Int?
            _ = await eventually {
                let line = receive.error().split(separator: "\n").first { $0.hasPrefix("listening on 127.0.0.1:") }
                listening = line.flatMap { Int($0.dropFirst("listening on 127.0.0.1:".count).prefix { $0.isNumber }) }
                return listening != nil
            }
            let port = try #require(listening, "\(receive.output())")
            let lines = directory.appendingPathComponent("lines.txt").path
            #expect(FileManager.default.createFile(atPath: lines, contents: Data("one\ntwo\n".utf8)))
            let send = try ChildProcess(
                inlong,
                ["send", "--proxy", "127.0.0.1:\(port)", "--group", "g", "--stream", "s", lines],
                logs: directory,
                name: "send"
            )
            var answer: (status: UInt, body: String)?
            let unhealthy = await eventually {
                answer = await Self.get(health)
                return answer?.status == 503
            }
            #expect(unhealthy, "\(receive.output())")
            #expect(answer?.body == "the sink fails: write of /dev/full failed: No space left on device\n", "\(answer?.body ?? "")")
            send.signal(SIGTERM)
            _ = await send.waitForExit()
            receive.signal(SIGTERM)
            _ = await receive.waitForExit()
        }
    }
}
