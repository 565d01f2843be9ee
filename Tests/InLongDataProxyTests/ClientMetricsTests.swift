import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import MetricsTestKit
import NIOCore
import Testing

/// The client's metrics, per (group, stream), reach the injected factory.
@Suite struct ClientMetricsTests {
    @Test func perStreamMetrics() async throws {
        let metrics = TestMetrics()
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.knownGroups = ["g"]
        try await withReceiver(receiverConfiguration) { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.metricsFactory = metrics
            configuration.batching.maxRecords = 10
            try await withDataProxyClient(configuration: configuration) { client in
                for index in 0..<100 { try await client.send("m\(index)", group: "g", stream: "s1") }
                for index in 0..<5 { try await client.send("x\(index)", group: "unknown", stream: "s2") }
                await #expect(throws: DataProxyError.self) {
                    try await client.send(ByteBuffer(repeating: 0x61, count: 70_000), group: "g", stream: "s1")
                }
                #expect(await client.flush())
            }
            let good = [("group", "g"), ("stream", "s1")]
            let bad = [("group", "unknown"), ("stream", "s2")]
            #expect(try metrics.expectCounter("inlong.client.records.accepted", good).totalValue == 100)
            #expect(try metrics.expectCounter("inlong.client.records.sent", good).totalValue == 100)
            #expect(try metrics.expectCounter("inlong.client.records.acked", good).totalValue == 100)
            #expect(try metrics.expectCounter("inlong.client.records.too_large", good).totalValue == 1)
            #expect(try metrics.expectTimer("inlong.client.ack.latency", good).values.count >= 10)
            #expect(try metrics.expectGauge("inlong.client.queued.bytes", good).lastValue == 0)
            #expect(try metrics.expectGauge("inlong.client.queued.bytes", good).values.max() ?? 0 > 0)
            #expect(try metrics.expectGauge("inlong.client.batches.inflight", good).lastValue == 0)
            #expect(try metrics.expectCounter("inlong.client.records.accepted", bad).totalValue == 5)
            #expect(try metrics.expectCounter("inlong.client.records.failed", bad + [("reason", "serverRejected")]).totalValue == 5)
            #expect(metrics.counterTotal(label: "inlong.client.records.acked", dimensions: bad) == 0)
            #expect(try metrics.expectGauge("inlong.client.held.bytes").lastValue == 0)
            // The client's connections count into the same factory.
            let endpoint = [("endpoint", Endpoint(host: "127.0.0.1", port: try await receiver.port()).description)]
            #expect(try metrics.expectCounter("inlong.transport.connects", endpoint).totalValue >= 1)
            #expect(try metrics.expectCounter("inlong.transport.frames_out", endpoint).totalValue >= 10)
        }
    }
}
