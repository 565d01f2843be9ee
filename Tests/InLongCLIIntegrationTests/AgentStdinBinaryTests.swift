import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

/// The built `inlong agent --stdin`: what a pipe carries arrives, every line once, and the agent ends with its input.
@Suite(.timeLimit(.minutes(3)))
struct AgentStdinBinaryTests {
    @Test func linesPipedToTheAgentArriveOnceAndItStopsAtTheirEnd() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            try await withReceiver { receiver in
                let input = Pipe()
                let agent = try ChildProcess(
                    inlong,
                    [
                        "agent", "--stdin", "--group", "g", "--stream", "piped", "--attribute", "origin=pipe",
                        "--proxy", "127.0.0.1:\(try await receiver.port())", "--state-dir", directory.appendingPathComponent("state").path,
                    ],
                    // A late ack on a loaded machine must not resend: the test counts every line once.
                    environment: ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"],
                    input: input,
                    logs: directory,
                    name: "agent"
                )
                // More than the listener's queue holds (4 MiB): the writer waits while it is full.
                let lines = (0..<60_000).map { "piped line \($0) \t ünïcode \(String(repeating: "x", count: $0 % 97))" }
                let writer = input.fileHandleForWriting
                let data = Data(lines.map { $0 + "\n" }.joined().utf8)
                #expect(data.count > 4 << 20)
                try writer.write(contentsOf: data)
                try writer.close()
                #expect(await agent.waitForExit(timeout: .seconds(120)) == .exit(0), "\(agent.output())")
                let messages = receiver.memorySink.messages
                let bodies = receiver.memorySink.records.map { String(buffer: $0.body) }
                #expect(bodies.count == lines.count)
                #expect(Set(bodies) == Set(lines))
                #expect(!messages.isEmpty && messages.allSatisfy { $0.attributes.contains("origin=pipe") })
                #expect(agent.error().contains("watching lines on stdin (g/piped)"), "\(agent.output())")
            }
        }
    }

    @Test func stdinRefusesWhatOnlyFilesTake() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            for (arguments, message) in [
                (["--path", "/tmp/*.log"], "give either --path or --stdin, not both"),
                (["--once"], "--once applies to files (--path), not to --stdin"),
                (["--exclude", "DEBUG"], "--exclude applies to files (--path), not to --stdin"),
            ] {
                let agent = try ChildProcess(
                    inlong,
                    ["agent", "--stdin", "--group", "g", "--stream", "s", "--proxy", "127.0.0.1:1", "--state-dir", directory.path] + arguments,
                    logs: directory,
                    name: "refused"
                )
                #expect(await agent.waitForExit(timeout: .seconds(60)) == .exit(64), "\(agent.output())")
                #expect(agent.error().contains(message), "\(agent.output())")
            }
        }
    }
}
