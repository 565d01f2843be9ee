import InLongAgent
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import MetricsTestKit
import NIOCore
import NIOPosix
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

    /// Each file source and listener is counted under its own `source` label: what it read, acked, left out and
    /// holds open, apart from the others of the same group.
    @Test func eachSourceAndListenerHasItsOwnLabelledCounts() async throws {
        let workspace = try AgentWorkspace()
        let metrics = TestMetrics()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port(), glob: "app*.log")
            configuration.client.metricsFactory = metrics
            configuration.client.connection.requestTimeout = .seconds(120)
            configuration.sources[0].name = "app"
            var other = AgentConfiguration.FileSource(paths: [workspace.logs + "/web*.log"], group: "g", stream: "web")
            other.exclude = ["^debug"]
            configuration.sources.append(other)
            var listener = AgentConfiguration.Listener(port: 0, group: "g", stream: "tcp")
            listener.format = .lines
            configuration.listeners = [listener]
            let app = numbered("app", 0..<300)
            let web = numbered("web", 0..<120) + numbered("debug", 0..<30)
            try workspace.append(app, to: "app.log")
            try workspace.append(web, to: "web.log")
            try await withAgent(configuration) { agent in
                var port: Int?
                _ = await eventually {
                    port = agent.listenerStatistics().first?.port
                    return port != nil
                }
                let listenerPort = try #require(port)
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: listenerPort).get()
                try await channel.writeAndFlush(ByteBuffer(string: numbered("tcp", 0..<50).map { $0 + "\n" }.joined())).get()
                try await channel.close()
                #expect(await eventually(timeout: .seconds(120)) { receiver.statistics().records >= 300 + 120 + 50 })
                let webName = workspace.logs + "/web*.log"
                let tcpName = "lines 127.0.0.1:\(listenerPort)/tcp"
                #expect(await eventually {
                    metrics.counterTotal(label: "inlong_agent_source_records_acked_total", dimensions: [("source", "app"), ("type", "file")]) == 300
                        && metrics.counterTotal(label: "inlong_agent_source_records_acked_total", dimensions: [("source", webName), ("type", "file")]) == 120
                        && metrics.counterTotal(label: "inlong_agent_source_records_acked_total", dimensions: [("source", tcpName), ("type", "lines")]) == 50
                })
                let statistics = agent.statistics().sources
                #expect(statistics.map(\.name) == ["app", tcpName, webName].sorted())
                let webStatistics = try #require(statistics.first { $0.name == webName })
                #expect(webStatistics.recordsRead == 120)
                #expect(webStatistics.filteredRecords == 30)
                #expect(webStatistics.bytesRead == (web.joined(separator: "\n") + "\n").utf8.count)
                #expect(webStatistics.openFiles == 1)
                #expect(statistics.first { $0.name == tcpName }?.received == 50)
            }
            let appDimensions = [("source", "app"), ("type", "file")]
            #expect(metrics.counterTotal(label: "inlong_agent_source_records_read_total", dimensions: appDimensions) == 300)
            #expect(metrics.counterTotal(label: "inlong_agent_source_bytes_read_total", dimensions: appDimensions) == Int64((app.joined(separator: "\n") + "\n").utf8.count))
            #expect(metrics.counterTotal(label: "inlong_agent_source_records_filtered_total", dimensions: [("source", workspace.logs + "/web*.log"), ("type", "file")]) == 30)
            #expect(try metrics.expectGauge("inlong_agent_source_lag_bytes", appDimensions).lastValue == 0)
            #expect(try metrics.expectGauge("inlong_agent_source_open_files", appDimensions).values.max() == 1)
        }
    }
}
