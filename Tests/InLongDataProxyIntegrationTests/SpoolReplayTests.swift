import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import MetricsTestKit
import NIOCore
import Testing

/// The spool end to end: records a client accepted and could not deliver are sent by the next client on the
/// same directory, byte for byte; once acked, the spool is empty.
@Suite(.timeLimit(.minutes(2))) struct SpoolReplayTests {
    @Test func recordsLeftByAClientThatCouldNotDeliverAreSentByTheNext() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var spool = DataProxyClient.Configuration.Spool(directory: directory)
        spool.segmentBytes = 16 << 10
        let bodies = (0..<600).map { "record-\($0)-" + String(repeating: "x", count: $0 % 50) }

        // A client whose proxy refuses connections accepts the records, then is cancelled (as a process dies).
        try await withRefusingPort { port in
            var configuration = clientConfiguration(ports: [port])
            configuration.spool = spool
            let client = DataProxyClient(configuration: configuration)
            let run = Task { try await client.run() }
            for chunk in stride(from: 0, to: bodies.count, by: 100) {
                try await client.send(contentsOf: bodies[chunk..<chunk + 100].map { ByteBuffer(string: $0) }, group: "g", stream: "s")
            }
            for body in bodies.prefix(5) { try await client.send(body + "-single", group: "g", stream: "s2", attributes: [("k", "v")]) }
            #expect(client.statistics().spoolSegments >= 1)
            run.cancel()
            _ = await run.result
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".spool") }
        #expect(!left.isEmpty)

        // The next client on the spool, with a proxy that answers, sends them.
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.spool = spool
            let metrics = TestMetrics()
            configuration.metricsFactory = metrics
            try await withDataProxyClient(configuration: configuration) { client in
                #expect(await eventually { receiver.memorySink.recordCount == bodies.count + 5 })
                #expect(client.statistics().replayedRecords == bodies.count + 5)
                _ = await client.flush()
                // The spool's metrics: what was replayed, and the spool emptying as the records are acked.
                let replayed = try metrics.expectCounter("inlong_client_replayed_records_total")
                #expect(replayed.totalValue == bodies.count + 5)
                #expect(await eventually { (try? metrics.expectGauge("inlong_client_spool_bytes").values.max()) ?? 0 > 0 })
            }
            let received = receiver.memorySink.messages.flatMap { message in message.records.map { (message.stream, String(buffer: $0.body), $0.attributes) } }
            #expect(Set(received.filter { $0.0 == "s" }.map(\.1)) == Set(bodies))
            #expect(received.filter { $0.0 == "s2" }.map(\.1).sorted() == bodies.prefix(5).map { $0 + "-single" }.sorted())
            #expect(received.filter { $0.0 == "s2" }.allSatisfy { $0.2 == "k=v" })
        }
        // Everything was acked: no segment is left.
        let after = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".spool") }
        #expect(after.isEmpty)
    }

    /// A spool that cannot take a write (its directory gone, so no new segment can be made): the call throws
    /// spoolFailed naming the records it accepted, and those records are still delivered.
    @Test func aFailedSpoolWriteNamesTheAcceptedRecordsAndTheyAreStillDelivered() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var spool = DataProxyClient.Configuration.Spool(directory: directory)
        spool.segmentBytes = 64  // every write starts a segment
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.spool = spool
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("first", group: "g", stream: "s")
                try FileManager.default.removeItem(atPath: directory)
                var thrown: DataProxyError?
                do {
                    try await client.send(contentsOf: [ByteBuffer(string: "second"), ByteBuffer(string: "third")], group: "g", stream: "s")
                } catch let error as DataProxyError {
                    thrown = error
                }
                #expect(thrown?.code == .spoolFailed)
                #expect(thrown?.acceptedRecords?.count == 2)
                #expect(await client.flush(timeout: .seconds(60)))
            }
            let received = receiver.memorySink.messages.flatMap { $0.records.map { String(buffer: $0.body) } }
            #expect(received.sorted() == ["first", "second", "third"])
        }
    }

    @Test func aClientOnASpoolInUseFailsToSendAndToRun() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: 1)])
        configuration.spool = .init(directory: directory)
        let first = DataProxyClient(configuration: configuration)
        let second = DataProxyClient(configuration: configuration)
        await #expect(throws: DataProxyError.self) { try await second.send("x", group: "g", stream: "s") }
        await #expect(throws: DataProxyError.self) { try await second.run() }
        _ = first
    }
}
