import Foundation
import NIOCore
import InLongDataProxyReceiver
import InLongTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The documented producer (`Snippets/ProducerService.swift`, a client and a producer in one `ServiceGroup`),
/// run as built: SIGINT while it waits in `sendAndWait` ends it at once and cleanly, not after a delivery deadline.
@Suite(.timeLimit(.minutes(2)))
struct ProducerServiceTests {
    @Test func sigintStopsAProducerWaitingForAcksAndItsRecordsStillEnd() async throws {
        let producer = try builtExecutable("ProducerService")
        var configuration = DataProxyReceiver.Configuration.loopback
        // Each batch waits 3 s for its ack: ten batches would take 30 s, so the signal lands in the first waits.
        configuration.faults.ackDelay = .seconds(3)
        try await withReceiver(configuration) { receiver in
            let port = try await receiver.port()
            try await withTemporaryDirectory { directory in
                let process = try ChildProcess(producer, [], environment: ["PRODUCER_PROXY_PORT": "\(port)", "PRODUCER_REQUEST_TIMEOUT": "120"], logs: directory, name: "producer")
                // The first batch is stored: the producer now waits in sendAndWait for its acks.
                #expect(await eventually { receiver.memorySink.recordCount >= 1_000 }, "\(process.output())")
                process.signal(SIGINT)
                let status = await process.waitForExit(timeout: .seconds(60))
                #expect(status == .exit(0), "\(process.output())")
                #expect(!process.error().contains("Fatal error"), "\(process.output())")
                // It stopped where it was: the later batches were never produced.
                let stored = receiver.memorySink.records.map { String(buffer: $0.body) }
                #expect(stored.count < 10_000, "\(process.output())")
                #expect(Set(stored).count == stored.count)
                #expect(stored.allSatisfy { $0.hasPrefix("batch ") })
            }
        }
    }
}
