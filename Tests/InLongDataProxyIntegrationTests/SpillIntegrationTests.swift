import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import NIOCore
import Testing

/// Records beyond the memory quota, while the proxy takes nothing, go to the spool only and are sent once it
/// takes records again: every record once, byte for byte, every report acked, and the spool empty afterwards.
@Suite(.timeLimit(.minutes(2))) struct SpillIntegrationTests {
    func spoolDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("inlong-spill-\(UUID().uuidString)").path
    }

    /// While the receiver holds every request, no request may time out or close the connection: a request the
    /// receiver holds is stored once released, and sending it again would store it twice.
    func stalledClientConfiguration(port: Int) -> DataProxyClient.Configuration {
        var configuration = clientConfiguration(ports: [port])
        configuration.connection.requestTimeout = .seconds(90)
        configuration.connection.heartbeatInterval = .seconds(90)
        return configuration
    }

    func segments(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".spool") }
    }

    /// Runs `body` with a client on a fresh spool, its memory quota `maxRecords`, failing when full, and a receiver
    /// that holds every request until `body` lets it read; then closes the client and checks the spool emptied.
    func withStalledReceiver(
        maxRecords: Int,
        spool configure: (inout DataProxyClient.Configuration.Spool) -> Void,
        _ body: (DataProxyReceiver, DataProxyClient, ReportCollector) async throws -> Void
    ) async throws {
        let directory = self.spoolDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.faults.stopReading = true
        try await withReceiver(receiverConfiguration) { receiver in
            var configuration = self.stalledClientConfiguration(port: try await receiver.port())
            var spool = DataProxyClient.Configuration.Spool(directory: directory)
            configure(&spool)
            configuration.spool = spool
            configuration.buffer.maxRecords = maxRecords
            configuration.buffer.whenFull = .fail
            let client = DataProxyClient(configuration: configuration)
            let reports = ReportCollector(client)
            let run = Task { try await client.run() }
            try await body(receiver, client, reports)
            client.close()
            try await run.value
            reports.stop()
        }
        #expect(self.segments(directory).isEmpty)
    }

    @Test func recordsBeyondTheMemoryQuotaWaitOnDiskAndAllArriveOnce() async throws {
        try await self.withStalledReceiver(maxRecords: 200, spool: { $0.segmentBytes = 32 << 10 }) { receiver, client, reports in
            let bodies = (0..<6_000).map { "spilled-\($0)-" + String(repeating: "y", count: $0 % 40) }
            let singles = (0..<50).map { "single-\($0)" }
            // The proxy reads nothing: 200 records fill memory, the rest spill instead of failing as the buffer full.
            var ids = DataProxyRecordIDs()
            for chunk in stride(from: 0, to: bodies.count, by: 150) {
                ids.formUnion(try await client.send(contentsOf: bodies[chunk..<chunk + 150].map { ByteBuffer(string: $0) }, group: "g", stream: "s"))
            }
            for single in singles {
                let id = try await client.send(single, group: "g", stream: "t", attributes: [("k", "v")])
                ids.formUnion(DataProxyRecordIDs(id.rawValue..<id.rawValue + 1))
            }
            #expect(ids.count == bodies.count + singles.count)
            let held = client.statistics()
            #expect(held.spilledRecords >= bodies.count + singles.count - 200)
            #expect(held.heldRecords <= 200)
            #expect(held.spoolSegments > 1)

            receiver.updateFaults { $0.stopReading = false }
            #expect(await client.flush(timeout: .seconds(60)))
            #expect(await eventually { reports.acked == bodies.count + singles.count })
            #expect(reports.failed == 0)
            #expect(reports.duplicateIDs == 0)
            #expect(client.statistics().spilledRecords == 0)
            let received = receiver.memorySink.messages.flatMap { message in message.records.map { (message.stream, String(buffer: $0.body), $0.attributes) } }
            #expect(received.filter { $0.0 == "s" }.map(\.1).sorted() == bodies.sorted())
            #expect(received.filter { $0.0 == "t" }.map(\.1).sorted() == singles.sorted())
            #expect(received.filter { $0.0 == "t" }.allSatisfy { $0.2 == "k=v" })
        }
    }

    /// At the spool's maximum, the full policy applies again: a call fails as the buffer full, naming what it
    /// accepted before; what was accepted still arrives.
    @Test func aFullSpoolFailsTheCallAsTheBufferFull() async throws {
        try await self.withStalledReceiver(maxRecords: 100, spool: { $0.maxBytes = 64 << 10 }) { receiver, client, reports in
            let bodies = (0..<10_000).map { ByteBuffer(string: "record-\($0)-" + String(repeating: "z", count: 60)) }
            var accepted = 0
            do {
                _ = try await client.send(contentsOf: bodies, group: "g", stream: "s")
                Issue.record("10,000 records of 70 B fit 100 in memory and 64 KiB of spool")
            } catch let error as DataProxyError {
                #expect(error.code == .bufferFull)
                accepted = error.acceptedRecords?.count ?? 0
            }
            #expect(accepted > 100 && accepted < bodies.count)
            #expect(client.statistics().spoolBytes <= 64 << 10)

            receiver.updateFaults { $0.stopReading = false }
            #expect(await client.flush(timeout: .seconds(60)))
            #expect(await eventually { reports.acked == accepted })
            #expect(receiver.memorySink.recordCount == accepted)
        }
    }

    /// A client closed with records still on disk only: they are reported failed as shut down, and the next client
    /// on the spool sends them.
    @Test func spilledRecordsAClosedClientCouldNotSendAreSentByTheNext() async throws {
        let directory = self.spoolDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bodies = (0..<2_000).map { "left-\($0)" }
        try await withRefusingPort { port in
            var configuration = clientConfiguration(ports: [port])
            configuration.spool = .init(directory: directory)
            configuration.buffer.maxRecords = 100
            configuration.buffer.whenFull = .fail
            let client = DataProxyClient(configuration: configuration)
            let reports = ReportCollector(client)
            let run = Task { try await client.run() }
            _ = try await client.send(contentsOf: bodies.map { ByteBuffer(string: $0) }, group: "g", stream: "s")
            #expect(client.statistics().spilledRecords == bodies.count - 100)
            client.close(deadline: .milliseconds(100))
            try await run.value
            #expect(await eventually { reports.failed == bodies.count })
            #expect(reports.acked == 0)
            reports.stop()
        }
        #expect(!self.segments(directory).isEmpty)
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.spool = .init(directory: directory)
            try await withDataProxyClient(configuration: configuration) { client in
                #expect(await eventually { receiver.memorySink.recordCount >= bodies.count })
                _ = await client.flush()
            }
            let received = receiver.memorySink.messages.flatMap { $0.records.map { String(buffer: $0.body) } }
            #expect(Set(received) == Set(bodies))
        }
        #expect(self.segments(directory).isEmpty)
    }
}
