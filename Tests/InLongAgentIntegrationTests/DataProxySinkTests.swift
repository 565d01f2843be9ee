import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import Logging
import NIOCore
import Testing

@testable import InLongAgent

/// The agent's DataProxy sink against a real client and receiver.
@Suite(.timeLimit(.minutes(2))) struct DataProxySinkTests {
    /// Runs `body` with a sink whose client holds at most 10 records, sending to a receiver that acks nothing
    /// before 5 s: the quota stays used up.
    func withSink(_ body: (DataProxyClient, DataProxySink) async throws -> Void) async throws {
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.faults.ackDelay = .seconds(5)
        try await withReceiver(receiverConfiguration) { receiver in
            var configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: try await receiver.port())])
            configuration.buffer.maxRecords = 10
            configuration.batching.linger = .milliseconds(5)
            let client = DataProxyClient(configuration: configuration)
            let run = Task { try await client.runUntilClosed() }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-sink-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let sink = DataProxySink(
                client: client,
                group: "g",
                stream: "s",
                attributes: [],
                deadLetters: DeadLetterFile(path: directory + "/dead-letters.jsonl"),
                counters: AgentCounters(),
                logger: Logger(label: "sink-test", factory: { _ in SwiftLogNoOpLogHandler() })
            )
            try await body(client, sink)
            client.close(deadline: .milliseconds(100))
            _ = try? await run.value
        }
    }

    /// The client closes while a call waits for room: the sink hands back, under a receipt, the records the call
    /// accepted before, and the rest as owed, in order. (It threw the close alone: the instance dropped the whole
    /// read, so a listener's last lines were neither sent nor set aside at a stop.)
    @Test func aCloseDuringASendHandsBackWhatItAcceptedAndWhatItOwes() async throws {
        try await self.withSink { client, sink in
            let records = (0..<50).map { ByteBuffer(string: "line \($0)") }
            let sending = Task { try await sink.send(records, offsets: [], attributes: [], origin: "test") }
            // The call accepted what the quota holds and waits for room.
            #expect(await eventually { client.statistics().heldRecords == 10 && client.statistics().bufferFull > 0 })
            client.close(deadline: .milliseconds(100))
            do {
                _ = try await sending.value
                Issue.record("the send went through a closed client")
            } catch let closed as SinkClosed<DataProxySink.Delivery> {
                #expect(closed.deliveries.flatMap(\.records) == Array(records.prefix(10)))
                #expect(closed.owed.map(\.body) == Array(records.dropFirst(10)))
            }
        }
    }

    /// The task is cancelled while a call waits for room, before it accepted anything: every record comes back
    /// owed (they were dropped with the read; a listener's lines then ended nowhere).
    @Test func aCancelledSendHandsBackEveryRecordOwed() async throws {
        try await self.withSink { client, sink in
            // The quota is used up before the call.
            try await client.send(contentsOf: (0..<10).map { ByteBuffer(string: "first \($0)") }, group: "g", stream: "s")
            let records = (0..<40).map { ByteBuffer(string: "line \($0)") }
            let sending = Task { try await sink.send(records, offsets: [], attributes: [], origin: "test") }
            #expect(await eventually { client.statistics().bufferFull > 0 })
            sending.cancel()
            do {
                _ = try await sending.value
                Issue.record("the send went on after its task was cancelled")
            } catch let closed as SinkClosed<DataProxySink.Delivery> {
                #expect(closed.deliveries.isEmpty)
                #expect(closed.owed.map(\.body) == records)
            }
        }
    }
}
