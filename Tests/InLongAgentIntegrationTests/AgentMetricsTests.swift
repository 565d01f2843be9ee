import InLongAgent
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import MetricsTestKit
import Testing

/// The agent's statistics reach swift-metrics with Prometheus names, published from the same snapshots.
@Suite(.timeLimit(.minutes(3))) struct AgentMetricsTests {
    @Test func linesReadAndAckedArePublished() async throws {
        let workspace = try AgentWorkspace()
        let metrics = TestMetrics()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.client.metricsFactory = metrics
            configuration.checkpointInterval = .milliseconds(50)
            let lines = numbered("line", 0..<700)
            try workspace.append(lines, to: "app.log")
            try await withAgent(configuration) { agent in
                #expect(await eventually { agent.statistics().linesAcked == 700 })
                #expect(await eventually { metrics.counterTotal(label: "inlong_agent_lines_acked_total") == 700 })
                // The client inside, for operators: which proxies it reaches and what it acked.
                let client = try #require(agent.clientStatistics(group: agent.groups[0]))
                #expect(client.reachableProxies == [Endpoint(host: "127.0.0.1", port: try await receiver.port())])
                #expect(client.acked == 700)
            }
            #expect(metrics.counterTotal(label: "inlong_agent_lines_read_total") == 700)
            let bytes = Int64(lines.joined(separator: "\n").utf8.count + 1)
            #expect(metrics.counterTotal(label: "inlong_agent_bytes_read_total") == bytes)
            #expect(metrics.counterTotal(label: "inlong_agent_bytes_acked_total") == bytes)
            #expect(metrics.counterTotal(label: "inlong_agent_files_opened_total") == 1)
            #expect(try metrics.expectGauge("inlong_agent_lag_bytes").lastValue == 0)
            #expect(try metrics.expectGauge("inlong_agent_open_files").values.max() == 1)
            // The client inside counts into the same backend.
            #expect(metrics.counterTotal(label: "inlong_client_records_acked_total") == 700)
        }
    }
}
