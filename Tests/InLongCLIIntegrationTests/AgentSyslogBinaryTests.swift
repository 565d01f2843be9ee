import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

/// The built `inlong agent` with a syslog listener: what a syslog sender writes over TCP arrives, every message once.
@Suite(.timeLimit(.minutes(3)))
struct AgentSyslogBinaryTests {
    @Test func anOctetCountedSyslogSenderOverTCPDeliversEveryMessage() async throws {
        let inlong = try inlongExecutable()
        let port = try unusedPortOutsideEphemeralRange()
        try await withTemporaryDirectory { directory in
            try await withReceiver { receiver in
                let config = directory.appendingPathComponent("agent.json").path
                let json = """
                    {"listeners": [{"port": \(port), "group": "g", "stream": "syslog"}],
                     "proxies": ["127.0.0.1:\(try await receiver.port())"],
                     "stateDirectory": "\(directory.appendingPathComponent("state").path)"}
                    """
                #expect(FileManager.default.createFile(atPath: config, contents: Data(json.utf8)))
                let agent = try ChildProcess(
                    inlong,
                    ["agent", "--config", config],
                    // A late ack on a loaded machine must not resend: the test counts every message once.
                    environment: ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"],
                    logs: directory,
                    name: "agent"
                )
                let started = await eventually { agent.error().contains("syslog on 127.0.0.1:\(port)/tcp (g/syslog)") || !agent.isRunning }
                #expect(started && agent.isRunning, "\(agent.output())")
                let messages = (0..<2000).map { "<165>1 2026-12-06T06:00:00.000Z host app \($0) ID47 - message \($0)\nwith a second line" }
                var client: RawClient?
                _ = await eventually {
                    client = try? await RawClient.connect(port: port)
                    return client != nil
                }
                let sender = try #require(client, "\(agent.output())")
                try await sender.write(Array(messages.map { "\($0.utf8.count) \($0)" }.joined().utf8))
                await sender.close()
                #expect(await eventually { receiver.statistics().records >= messages.count }, "\(agent.output())")
                agent.signal(SIGTERM)
                #expect(await agent.waitForExit() == .exit(0), "\(agent.output())")
                let bodies = receiver.memorySink.records.map { String(buffer: $0.body) }
                #expect(bodies.count == messages.count)
                #expect(Set(bodies) == Set(messages))
            }
        }
    }
}
