import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import NIOCore
import Testing

/// Proxy choice: reported load, avoiding failing proxies and probing them back, idle reconnects.
@Suite struct DataProxyClientBalancingTests {
    /// Two receivers; `body` gets them and a client configuration for both with fast heartbeats.
    private func withTwoReceivers(
        _ body: (DataProxyReceiver, DataProxyReceiver, DataProxyClient.Configuration) async throws -> Void
    ) async throws {
        try await withReceiver { first in
            try await withReceiver { second in
                var configuration = clientConfiguration(ports: [try await first.port(), try await second.port()])
                configuration.connection.heartbeatInterval = .milliseconds(100)
                try await body(first, second, configuration)
            }
        }
    }

    @Test func reportedLoadSteersBatchesToTheLessLoadedProxy() async throws {
        try await withTwoReceivers { idle, busy, configuration in
            idle.updateFaults { $0.load = 10 }
            busy.updateFaults { $0.load = 900 }
            // Heartbeats every second (dead after 3 s of silence): a loaded machine does not drop connections.
            var configuration = configuration
            configuration.connection.heartbeatInterval = .seconds(1)
            try await withDataProxyClient(configuration: configuration) { client in
                let ports = [try await idle.port(), try await busy.port()]
                #expect(await eventually { client.statistics().proxyLoads.count == 2 })
                let loads = client.statistics().proxyLoads
                #expect(loads[Endpoint(host: "127.0.0.1", port: ports[0])] == 10)
                #expect(loads[Endpoint(host: "127.0.0.1", port: ports[1])] == 900)
                // One batch at a time: nothing in flight anywhere, so the load alone decides. Only first attempts
                // made while both connections were up with their loads known, and neither proxy avoided, are about
                // the choice: a loaded machine can miss a heartbeat and drop a connection (its load is then
                // forgotten, and the failed batch makes its proxy avoided for a while), and a retry avoids the
                // proxy that failed it.
                // The router hears of a ready connection from its pool a moment after the connection's own state
                // (and its load) says so; on a loaded machine, after a reconnect, a batch can go to the only proxy
                // the router knows ready. So the batches are counted once one went to the idle proxy, and most,
                // not all, must go there: load-blind choices split them evenly.
                var considered = 0
                var toIdle = 0
                var warm = false
                for index in 0..<400 where considered < 10 {
                    let before = client.statistics()
                    let ack = try await client.sendAndWait(ByteBuffer(string: "r\(index)"), group: "g", stream: "s")
                    let after = client.statistics()
                    warm = warm || ack.proxy.port == ports[0]
                    guard warm, ack.attempts == 1, before.proxyLoads.count == 2, after.proxyLoads.count == 2,
                        before.avoidedProxies.isEmpty, after.avoidedProxies.isEmpty, before.retries == after.retries
                    else { continue }
                    considered += 1
                    if ack.proxy.port == ports[0] { toIdle += 1 }
                }
                #expect(considered > 0)
                #expect(toIdle * 10 >= considered * 8, "\(toIdle) of \(considered) batches went to the less loaded proxy")
            }
        }
    }

    @Test func withoutReportedLoadsBatchesAreSpreadByInFlight() async throws {
        try await withTwoReceivers { first, second, configuration in
            // The stock server's 0xFFFF: unknown load.
            try await withDataProxyClient(configuration: configuration) { client in
                #expect(await eventually { client.proxies.count == 2 && client.statistics().batchesSent == 0 })
                #expect(await eventually {
                    (try? await client.sendAndWait(ByteBuffer(string: "probe"), group: "g", stream: "s")) != nil
                        && first.memorySink.recordCount > 0 && second.memorySink.recordCount > 0
                })
                #expect(client.statistics().proxyLoads.isEmpty)
            }
        }
    }

    @Test func failingProxyIsAvoidedThenProbedBack() async throws {
        try await withTwoReceivers { healthy, failing, configuration in
            failing.updateFaults { $0.errorCode = .sinkServiceUnready }
            var configuration = configuration
            configuration.connection.ejectAfterFailures = 2
            // Long enough that the 20 sends below end within it on any machine.
            configuration.connection.avoidPause = .seconds(5)
            configuration.retry.maxAttempts = 5
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                var sent: [String] = []
                var index = 0
                func sendOne() async -> Bool {
                    let body = "r\(index)"
                    index += 1
                    guard (try? await client.sendAndWait(ByteBuffer(string: body), group: "g", stream: "s")) != nil else { return false }
                    sent.append(body)
                    return true
                }
                // Both connections up first: with only the failing one ready, a record could spend every attempt
                // on it (seen on a loaded machine).
                #expect(await eventually { client.statistics().readyProxies == 2 })
                // Until the failing proxy has failed twice (then it is avoided).
                #expect(await eventually { await sendOne() && failing.statistics().errors[.sinkServiceUnready, default: 0] >= 2 })
                let failingPort = try await failing.port()
                let errorsBefore = failing.statistics().errors[.sinkServiceUnready, default: 0]
                let sentBefore = sent.count
                for _ in 0..<20 { #expect(await sendOne()) }
                // Avoided (at most one probe on a very slow machine): an even spread would give ten errors.
                #expect(failing.statistics().errors[.sinkServiceUnready, default: 0] - errorsBefore <= 2)
                // Each stored by the healthy one (compared by body: a record of the sends before may still be stored
                // again there, resent after a request timed out on a loaded machine).
                let storedHealthy = Set(healthy.memorySink.records.map { String(buffer: $0.body) })
                #expect(sent[sentBefore...].allSatisfy { storedHealthy.contains($0) })

                // Repaired: once the pause ends, the proxy is tried again and takes batches.
                failing.updateFaults { $0.errorCode = nil }
                #expect(await eventually(timeout: .seconds(60)) { await sendOne() && failing.memorySink.recordCount > 0 })
                #expect(!client.statistics().avoidedProxies.contains(Endpoint(host: "127.0.0.1", port: failingPort)))
                await expectEveryRecordAccounted(
                    sent: sent,
                    client: client,
                    reports: reports,
                    sinks: [healthy.memorySink, failing.memorySink]
                )
                #expect(client.statistics().failed == 0)
                reports.stop()
            }
        }
    }

    @Test func theOnlyProxyIsNeverAvoided() async throws {
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.faults.errorCode = .sinkServiceUnready
        receiverConfiguration.faults.errorRate = 0.5
        try await withReceiver(receiverConfiguration) { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.connection.ejectAfterFailures = 1
            configuration.retry.maxAttempts = 10
            try await withDataProxyClient(configuration: configuration) { client in
                for index in 0..<10 {
                    _ = try await client.sendAndWait(ByteBuffer(string: "r\(index)"), group: "g", stream: "s")
                    #expect(client.statistics().avoidedProxies.isEmpty)
                }
                #expect(receiver.memorySink.recordCount == 10)
            }
        }
    }

    @Test func idleConnectionIsReopened() async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.connection.maxIdleTime = .milliseconds(100)
            // No heartbeat or dead-peer timeout within the test: idleness is the only reason to reconnect.
            configuration.connection.heartbeatInterval = .seconds(20)
            try await withDataProxyClient(configuration: configuration) { client in
                _ = try await client.sendAndWait(ByteBuffer(string: "before"), group: "g", stream: "s")
                #expect(await eventually { receiver.statistics().acceptedConnections >= 2 })
                _ = try await client.sendAndWait(ByteBuffer(string: "after"), group: "g", stream: "s")
                #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["before", "after"])
            }
        }
    }
}
