import AsyncHTTPClient
import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import Testing

/// The built `inlong agent --metrics`: `/metrics` counts each source and listener under its own label.
@Suite(.timeLimit(.minutes(3)))
struct AgentMetricsBinaryTests {
    /// Samples of the exposition text, by name with its labels as written (`name{k="v"}`).
    private static func scrape(_ port: Int) async -> [String: Double] {
        guard let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/metrics"), timeout: .seconds(30)),
            let body = try? await response.body.collect(upTo: 4 << 20)
        else { return [:] }
        var values: [String: Double] = [:]
        for line in String(buffer: body).split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            values[String(line[..<space])] = value
        }
        return values
    }

    @Test func eachSourceAndListenerIsCountedUnderItsOwnLabel() async throws {
        let inlong = try inlongExecutable()
        let port = try unusedPortOutsideEphemeralRange()
        try await withTemporaryDirectory { directory in
            try await withReceiver { receiver in
                let logs = directory.appendingPathComponent("logs").path
                try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
                let lines = (0..<500).map { "app line \($0)" }
                #expect(FileManager.default.createFile(atPath: logs + "/app.log", contents: Data(lines.map { $0 + "\n" }.joined().utf8)))
                let config = directory.appendingPathComponent("agent.json").path
                let json = """
                    {"sources": [{"paths": ["\(logs)/*.log"], "group": "g", "stream": "app", "name": "app", "exclude": ["line 4.."]}],
                     "listeners": [{"port": \(port), "format": "lines", "group": "g", "stream": "tcp"}],
                     "proxies": ["127.0.0.1:\(try await receiver.port())"],
                     "stateDirectory": "\(directory.appendingPathComponent("state").path)"}
                    """
                #expect(FileManager.default.createFile(atPath: config, contents: Data(json.utf8)))
                let agent = try ChildProcess(
                    inlong,
                    ["agent", "--config", config, "--metrics", "127.0.0.1:0"],
                    // A late ack on a loaded machine must not resend: the test counts every record once.
                    environment: ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"],
                    logs: directory,
                    name: "agent"
                )
                var metricsPort: Int?
                _ = await eventually {
                    let line = agent.error().split(separator: "\n").first { $0.hasPrefix("metrics on http://127.0.0.1:") }
                    metricsPort = line.flatMap { Int($0.dropFirst("metrics on http://127.0.0.1:".count).prefix { $0.isNumber }) }
                    return metricsPort != nil || !agent.isRunning
                }
                let scrapePort = try #require(metricsPort, "\(agent.output())")
                var client: RawClient?
                _ = await eventually {
                    client = try? await RawClient.connect(port: port)
                    return client != nil
                }
                let sender = try #require(client, "\(agent.output())")
                try await sender.write(Array((0..<40).map { "tcp line \($0)\n" }.joined().utf8))
                await sender.close()
                // 500 lines less the 100 of "line 4..", and 40 messages.
                #expect(await eventually(timeout: .seconds(120)) { receiver.statistics().records >= 440 }, "\(agent.output())")
                let app = #"{source="app",type="file"}"#
                let tcp = #"{source="lines 127.0.0.1:\#(port)/tcp",type="lines"}"#
                var values: [String: Double] = [:]
                let counted = await eventually(timeout: .seconds(120)) {
                    values = await Self.scrape(scrapePort)
                    return values["inlong_agent_source_records_acked_total" + app] == 400 && values["inlong_agent_source_records_acked_total" + tcp] == 40
                }
                #expect(counted, "\(values.filter { $0.key.hasPrefix("inlong_agent") })")
                #expect(values["inlong_agent_source_records_read_total" + app] == 400)
                #expect(values["inlong_agent_source_records_filtered_total" + app] == 100)
                #expect(values["inlong_agent_source_bytes_read_total" + app] == Double(lines.map { $0.utf8.count + 1 }.reduce(0, +)))
                #expect(values["inlong_agent_source_open_files" + app] == 1)
                #expect(values["inlong_agent_source_lag_bytes" + app] == 0)
                #expect(values["inlong_agent_source_messages_received_total" + tcp] == 40)
                #expect(values["inlong_agent_source_messages_dropped_total" + tcp] == 0)
                agent.signal(SIGTERM)
                #expect(await agent.waitForExit() == .exit(0), "\(agent.output())")
                let bodies = receiver.memorySink.records.map { String(buffer: $0.body) }
                #expect(bodies.count == 440)
                #expect(Set(bodies) == Set(lines.filter { $0.range(of: "line 4..", options: .regularExpression) == nil } + (0..<40).map { "tcp line \($0)" }))
            }
        }
    }
}
