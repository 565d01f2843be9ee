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
            configuration.connection.backoff = ExponentialBackoff(
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

    /// `count` records of about `size` bytes that snappy cannot shrink much, named so that duplicates show.
    private func records(_ count: Int, size: Int = 150, prefix: String = "n") -> [String] {
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { index in
            var text = "\(prefix)\(index)-"
            while text.utf8.count < size {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                text.append(Character(UnicodeScalar(UInt8(97 + (seed >> 33) % 26))))
            }
            return text
        }
    }

    private func send(_ records: [String], to client: DataProxyClient, rounds: Int = 1, pause: Duration = .zero) async throws {
        let perRound = (records.count + rounds - 1) / rounds
        for round in 0..<rounds {
            let slice = records.dropFirst(round * perRound).prefix(perRound)
            try await client.send(contentsOf: slice.map { ByteBuffer(string: $0) }, group: "g", stream: "s")
            if pause > .zero { try await Task.sleep(for: pause) }
        }
    }

    /// Stored records beyond one per record sent.
    private func duplicates(_ sink: InMemorySink) -> Int {
        let bodies = sink.records.map { String(buffer: $0.body) }
        return bodies.count - Set(bodies).count
    }

    @Test func aLongLinkDeliversEverythingOnceWithoutRetries() async throws {
        try await withReceiver { receiver in
            let proxy = try await FaultProxy(upstreamPort: try await receiver.port(), mode: .delay(.milliseconds(30)))
            let configuration = clientConfiguration(ports: [proxy.port])
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                let sent = self.records(3_000)
                try await self.send(sent, to: client, rounds: 10)
                #expect(await client.flush())
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(client.statistics().acked == sent.count)
                #expect(client.statistics().retries == 0)
                #expect(self.duplicates(receiver.memorySink) == 0)
            }
            await proxy.stop()
        }
    }

    /// A slow but healthy link: every record is delivered within its deadline, none reported failed.
    @Test func aSlowLinkDeliversEverythingWithinTheDeadline() async throws {
        try await withReceiver { receiver in
            let proxy = try await FaultProxy(upstreamPort: try await receiver.port(), mode: .throttle(bytesPerSecond: 500_000))
            var configuration = clientConfiguration(ports: [proxy.port])
            configuration.batching.maxRecords = 100
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                let sent = self.records(6_000)
                try await self.send(sent, to: client)
                #expect(await client.flush(timeout: .seconds(60)))
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(client.statistics().failed == 0, "\(client.statistics().failures)")
                #expect(client.statistics().acked == sent.count)
                // Duplicates only from requests given up on and sent again.
                if client.statistics().retries == 0 { #expect(self.duplicates(receiver.memorySink) == 0) }
            }
            await proxy.stop()
        }
    }

    /// Connections reset every 300 ms: records are retried on new connections until acked, well within their
    /// deadline; duplicates only from requests a reset cut off.
    @Test func connectionsResetEveryFewHundredMillisecondsStillDeliverEverything() async throws {
        try await withReceiver { receiver in
            let proxy = try await FaultProxy(upstreamPort: try await receiver.port(), mode: .reset(every: .milliseconds(300)))
            var configuration = clientConfiguration(ports: [proxy.port])
            configuration.batching.maxRecords = 200
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                let sent = self.records(20_000, size: 100)
                try await self.send(sent, to: client, rounds: 20, pause: .milliseconds(50))
                #expect(await client.flush(timeout: .seconds(60)))
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(client.statistics().failed == 0, "\(client.statistics().failures)")
                #expect(client.statistics().acked == sent.count)
                #expect(proxy.acceptedConnections > 1)
                if client.statistics().retries == 0 { #expect(self.duplicates(receiver.memorySink) == 0) }
            }
            await proxy.stop()
        }
    }

    /// One proxy swallows everything: requests to it time out and are retried on the other, which stores them.
    @Test func recordsSentIntoABlackHoleAreRetriedOnAnotherProxy() async throws {
        try await withReceiver { swallowed in
            try await withReceiver { healthy in
                let proxy = try await FaultProxy(upstreamPort: try await swallowed.port(), mode: .blackhole)
                var configuration = clientConfiguration(ports: [proxy.port, try await healthy.port()])
                configuration.connection.requestTimeout = .milliseconds(300)
                configuration.batching.maxRecords = 50
                configuration.connection.balanceByReportedLoad = false
                try await withDataProxyClient(configuration: configuration) { client in
                    let reports = ReportCollector(client)
                    // The black hole's connection is up (batches go to the proxy with the fewest in flight).
                    #expect(await eventually { proxy.acceptedConnections >= 1 })
                    let sent = self.records(2_000, size: 60)
                    try await self.send(sent, to: client, rounds: 4)
                    #expect(await client.flush(timeout: .seconds(60)))
                    await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [healthy.memorySink])
                    #expect(client.statistics().failed == 0, "\(client.statistics().failures)")
                    // Every record reached the healthy proxy; a batch whose ack outran its 300 ms request timeout
                    // on a loaded machine may be there twice (at least once, as promised).
                    #expect(Set(healthy.memorySink.records.map { String(buffer: $0.body) }) == Set(sent))
                    #expect(healthy.memorySink.recordCount >= sent.count)
                    #expect(swallowed.memorySink.recordCount == 0)
                }
                await proxy.stop()
            }
        }
    }
}
