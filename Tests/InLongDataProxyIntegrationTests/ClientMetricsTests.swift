import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import MetricsTestKit
import NIOCore
import Synchronization
import Testing

@testable import InLongDataProxy

/// The client's events reach its observability delegate once each, and `statistics()` counts the same calls.
@Suite struct ClientMetricsTests {
    @Test func perStreamMetricsWithPrometheusNames() async throws {
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
            #expect(try metrics.expectCounter("inlong_client_records_accepted_total", good).totalValue == 100)
            #expect(try metrics.expectCounter("inlong_client_records_sent_total", good).totalValue == 100)
            #expect(try metrics.expectCounter("inlong_client_records_acked_total", good).totalValue == 100)
            #expect(try metrics.expectCounter("inlong_client_records_too_large_total", good).totalValue == 1)
            #expect(try metrics.expectCounter("inlong_client_batches_sent_total", good).totalValue >= 10)
            #expect(try metrics.expectTimer("inlong_client_ack_latency_seconds", good).values.count >= 10)
            #expect(try metrics.expectGauge("inlong_client_queued_bytes", good).lastValue == 0)
            #expect(try metrics.expectGauge("inlong_client_queued_bytes", good).values.max() ?? 0 > 0)
            #expect(try metrics.expectGauge("inlong_client_batches_in_flight", good).lastValue == 0)
            #expect(try metrics.expectCounter("inlong_client_records_accepted_total", bad).totalValue == 5)
            #expect(try metrics.expectCounter("inlong_client_records_failed_total", bad + [("reason", "serverRejected")]).totalValue == 5)
            #expect(metrics.counterTotal(label: "inlong_client_records_acked_total", dimensions: bad) == 0)
            #expect(try metrics.expectGauge("inlong_client_held_bytes").lastValue == 0)
            // The client's connections count into the same factory.
            let endpoint = [("endpoint", Endpoint(host: "127.0.0.1", port: try await receiver.port()).description)]
            #expect(metrics.counterTotal(label: "inlong_transport_connects_total", dimensions: endpoint) >= 1)
            #expect(metrics.counterTotal(label: "inlong_transport_frames_out_total", dimensions: endpoint) >= 10)
            // Prometheus conventions: counters end in _total, durations are in seconds.
            for counter in metrics.counters { #expect(counter.label.hasSuffix("_total"), "\(counter.label)") }
            for timer in metrics.timers { #expect(timer.label.hasSuffix("_seconds"), "\(timer.label)") }
            #expect(!metrics.counters.contains { $0.label.contains(".") })
        }
    }

    @Test func oneDelegateCallPerEventFeedsBothTheDelegateAndStatistics() async throws {
        let delegate = RecordingDelegate()
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.knownGroups = ["g"]
        try await withReceiver(receiverConfiguration) { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.observabilityDelegate = delegate
            configuration.batching.maxRecords = 7
            let statistics = try await withDataProxyClient(configuration: configuration) { client in
                _ = try await client.send(contentsOf: (0..<50).map { ByteBuffer(string: "r\($0)") }, group: "g", stream: "s")
                for index in 0..<3 { try await client.send("x\(index)", group: "nope", stream: "s") }
                #expect(await client.flush())
                return client.statistics()
            }
            let seen = delegate.totals.withLock { $0 }
            #expect(seen.queued == 53)
            #expect(seen.acked == 50)
            #expect(seen.failed == ["serverRejected": 3])
            #expect(seen.sent == statistics.sent)
            #expect(seen.batchesSent == statistics.batchesSent)
            #expect(seen.sentBytes == statistics.bytesSent)
            #expect(seen.inFlight == 0)
            #expect(seen.queuedBytes == 0)
            #expect(statistics.accepted == 53)
            #expect(statistics.acked == seen.acked)
            #expect(statistics.failed == 3)
            #expect(seen.proxies == [Endpoint(host: "127.0.0.1", port: try await receiver.port())])
            #expect(statistics.reachableProxies == seen.proxies)
            #expect(statistics.readyProxies == 1)
        }
    }
}

/// The quota in use is told to the delegate under the client's lock, so that reports keep their order: with senders
/// on several tasks and acks on event loops, the last value told once every record ended is 0, never a stale one.
@Test func theQuotaInUseIsToldInOrderSoTheGaugeEndsAtZero() async throws {
    let delegate = HeldBytesDelegate()
    var receiverConfiguration = DataProxyReceiver.Configuration.loopback
    receiverConfiguration.knownGroups = ["g"]
    try await withReceiver(receiverConfiguration) { receiver in
        var configuration = clientConfiguration(ports: [try await receiver.port()])
        configuration.observabilityDelegate = delegate
        configuration.batching.maxRecords = 3
        try await withDataProxyClient(configuration: configuration) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for sender in 0..<4 {
                    group.addTask {
                        for index in 0..<200 { try await client.send("s\(sender)-\(index)", group: "g", stream: "s") }
                    }
                }
                try await group.waitForAll()
            }
            #expect(await client.flush())
            #expect(client.statistics().heldBytes == 0)
        }
    }
    let told = delegate.told.withLock { $0 }
    #expect(told.count > 100)
    #expect(told.last == 0)
    #expect(told.allSatisfy { $0 >= 0 })
}

private final class HeldBytesDelegate: DataProxyClientObservabilityDelegate {
    let told = Mutex<[Int]>([])

    func heldBytesChanged(to bytes: Int) {
        self.told.withLock { $0.append(bytes) }
    }
}

/// Sums what the client tells its delegate.
private final class RecordingDelegate: DataProxyClientObservabilityDelegate {
    struct Totals {
        var queued = 0
        var queuedBytes = 0
        var sent = 0
        var batchesSent = 0
        var sentBytes = 0
        var inFlight = 0
        var acked = 0
        var failed: [String: Int] = [:]
        var proxies: Set<Endpoint> = []
    }

    let totals = Mutex(Totals())

    func batchQueued(group: String, stream: String, records: Int, bytes: Int) {
        self.totals.withLock {
            $0.queued += records
            $0.queuedBytes += bytes
        }
    }

    func batchSent(group: String, stream: String, records: Int, frameBytes: Int, proxy: Endpoint) {
        self.totals.withLock {
            $0.sent += records
            $0.batchesSent += 1
            $0.sentBytes += frameBytes
            $0.inFlight += 1
            $0.proxies.insert(proxy)
        }
    }

    func batchAnswered(group: String, stream: String) {
        self.totals.withLock { $0.inFlight -= 1 }
    }

    func batchAcked(group: String, stream: String, records: Int, bytes: Int, latency: Duration) {
        self.totals.withLock {
            $0.acked += records
            $0.queuedBytes -= bytes
        }
    }

    func batchFailed(group: String, stream: String, records: Int, bytes: Int, error: DataProxyError) {
        self.totals.withLock {
            $0.failed[error.code.description, default: 0] += records
            $0.queuedBytes -= bytes
        }
    }
}
