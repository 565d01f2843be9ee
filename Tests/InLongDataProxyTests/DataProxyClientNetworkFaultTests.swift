import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import NIOCore
import Testing

/// Faults between the client and the receiver, injected by a proxy on loopback.
@Suite struct DataProxyClientNetworkFaultTests {
    /// A proxy at its connection limit (or a load balancer with no backend) accepts and closes at once; when it
    /// serves again, every record is delivered.
    @Test func proxyClosingEveryConnectionForAWhileThenServing() async throws {
        try await withReceiver { receiver in
            let proxy = try await FaultProxy(upstreamPort: try await receiver.port(), mode: .refuse)
            var configuration = clientConfiguration(ports: [proxy.port])
            configuration.retry.maxAttempts = 1_000_000
            configuration.connection.backoff = Backoff(
                initial: .milliseconds(1), maximum: .milliseconds(5), multiplier: 2, jitter: 0.1
            )
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                var sent: [String] = []
                for index in 0..<2_000 {
                    sent.append("record-\(index)")
                    try await client.send(sent[index], group: "g", stream: "s")
                }
                #expect(await eventually { proxy.acceptedConnections >= 1_000 }, "accepted \(proxy.acceptedConnections)")
                proxy.mode = .pass
                #expect(await client.flush())
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(client.statistics().acked == sent.count)
                reports.stop()
            }
            await proxy.stop()
        }
    }
}
