import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import NIOCore
import Synchronization
import Testing

/// Record identity over loopback: ids returned by `send` are the ids reports name, exactly once; receipts end
/// with their records; a reader that falls behind sees every report and slows acceptance instead.
@Suite(.timeLimit(.minutes(3))) struct DataProxyClientRecordIdentityTests {
    /// Ids handed out by sends, with their bodies.
    final class Sent: Sendable {
        let bodies = Mutex<[UInt64: String]>([:])

        func add(_ id: DataProxyRecordID, _ body: String) {
            self.bodies.withLock { $0[id.rawValue] = body }
        }

        func add(_ ids: DataProxyRecordIDs, _ bodies: [String]) {
            self.bodies.withLock { sent in
                for (id, body) in zip(ids, bodies) { sent[id.rawValue] = body }
            }
        }

        var all: [UInt64: String] { self.bodies.withLock { $0 } }
    }

    /// Every report, as it came.
    final class Reports: Sendable {
        final class Box: Sendable {
            let reports = Mutex<[DeliveryReport]>([])
        }
        let box = Box()
        let task: Task<Void, Never>

        init(_ sequence: DeliveryReports) {
            let box = self.box
            self.task = Task {
                for await report in sequence { box.reports.withLock { $0.append(report) } }
            }
        }

        var all: [DeliveryReport] { self.box.reports.withLock { $0 } }
        var recordCount: Int { self.all.reduce(0) { $0 + $1.recordCount } }
    }

    /// Sends from 8 tasks, one record at a time and in runs, to two streams.
    private func sendConcurrently(_ client: DataProxyClient, sent: Sent) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for index in 0..<100 {
                        let body = "t\(task)-\(index)"
                        sent.add(try await client.send(body, group: "g", stream: task % 2 == 0 ? "even" : "odd"), body)
                    }
                    let bodies = (0..<150).map { "t\(task)-run\($0)" }
                    sent.add(try await client.send(contentsOf: bodies.map { ByteBuffer(string: $0) }, group: "g", stream: "runs"), bodies)
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func reportsNameExactlyTheIDsSendsReturned() async throws {
        try await withReceiver { receiver in
            try await withDataProxyClient(configuration: clientConfiguration(ports: [try await receiver.port()])) { client in
                let reports = Reports(client.deliveryReports())
                let sent = Sent()
                try await self.sendConcurrently(client, sent: sent)
                #expect(await client.flush(timeout: .seconds(60)))
                #expect(await eventually { reports.recordCount == 8 * 250 })
                let all = reports.all
                var named: [UInt64: Int] = [:]
                for report in all {
                    #expect(report.isAcked)
                    #expect(report.recordCount == report.records.count)
                    for id in report.records { named[id.rawValue, default: 0] += 1 }
                }
                #expect(Set(named.keys) == Set(sent.all.keys))
                #expect(named.values.allSatisfy { $0 == 1 })
                // The stored bodies are the ones sent under those ids.
                #expect(Set(receiver.memorySink.records.map { String(buffer: $0.body) }) == Set(sent.all.values))
            }
        }
    }

    @Test func aFailedReportPairsEachIDWithItsBody() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.retry.deliveryTimeout = .milliseconds(300)
            configuration.connection.requestTimeout = .milliseconds(100)
            try await withDataProxyClient(configuration: configuration, closeDeadline: .seconds(5)) { client in
                let reports = Reports(client.deliveryReports())
                let sent = Sent()
                try await self.sendConcurrently(client, sent: sent)
                #expect(await eventually { reports.recordCount == 8 * 250 })
                let bodies = sent.all
                var paired = 0
                for report in reports.all {
                    guard case .failed(let error) = report.outcome else {
                        Issue.record("a record was acked by a receiver that drops every ack")
                        continue
                    }
                    #expect(error.code == .deliveryTimeout)
                    let failed = report.failedRecords.map { String(buffer: $0) }
                    #expect(failed.count == report.recordCount)
                    for (id, body) in zip(report.records, failed) where bodies[id.rawValue] == body { paired += 1 }
                }
                #expect(paired == 8 * 250)
            }
        }
    }

    @Test func aReceiptEndsWhenEveryRecordOfItsCallEnded() async throws {
        try await withReceiver { receiver in
            try await withDataProxyClient(configuration: clientConfiguration(ports: [try await receiver.port()])) { client in
                let bodies = (0..<1_000).map { ByteBuffer(string: "receipt-\($0)") }
                let receipt = try await client.sendWithReceipt(contentsOf: bodies, group: "g", stream: "s")
                #expect(receipt.records.count == 1_000)
                let summary = try await receipt.outcome()
                #expect(summary.acked == 1_000)
                #expect(summary.allAcked)
                #expect(summary.failures.isEmpty)
                #expect(summary.records == receipt.records)
                #expect(receipt.isComplete)
                #expect(receiver.memorySink.recordCount == 1_000)

                let records = (0..<10).map { DataProxyRecord("attributed-\($0)", attributes: [("k", "\($0)")]) }
                let second = try await client.sendWithReceipt(contentsOf: records, group: "g", stream: "s")
                #expect(second.records == DataProxyRecordIDs(1_000..<1_010))
                #expect(try await second.outcome().acked == 10)
            }
        }
    }

    /// A call of many records cancelled while it waits for room: it names the records it accepted (a bare
    /// `CancellationError` would lose them) and hands a receipt for them, which ends as they end.
    @Test func aCallCancelledPartWayNamesWhatItAccepted() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.buffer.maxRecords = 100
            configuration.batching.maxRecords = 10
            configuration.retry.deliveryTimeout = .seconds(60)
            try await withDataProxyClient(configuration: configuration, closeDeadline: .milliseconds(100)) { client in
                let bodies = (0..<1_000).map { ByteBuffer(string: "cancelled-\($0)") }
                let call = Task { try await client.sendWithReceipt(contentsOf: bodies, group: "g", stream: "s") }
                #expect(await eventually { client.statistics().heldRecords == 100 })
                call.cancel()
                do {
                    _ = try await call.value
                    Issue.record("a call that could not accept every record returned")
                } catch let error as DataProxyError {
                    #expect(error.code == .cancelled)
                    #expect(error.acceptedRecords == DataProxyRecordIDs(0..<100))
                    let receipt = try #require(error.acceptedReceipt)
                    #expect(receipt.records == DataProxyRecordIDs(0..<100))
                    #expect(!receipt.isComplete)
                }
            }
        }
    }

    @Test func aSummaryNamesTheFailedRecordsAndWhy() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.retry.deliveryTimeout = .milliseconds(300)
            configuration.connection.requestTimeout = .milliseconds(100)
            try await withDataProxyClient(configuration: configuration, closeDeadline: .seconds(5)) { client in
                let bodies = (0..<50).map { ByteBuffer(string: "lost-\($0)") }
                let summary = try await client.sendAndWait(contentsOf: bodies, group: "g", stream: "s")
                #expect(summary.acked == 0)
                #expect(summary.failed == 50)
                #expect(summary.failures.reduce(0) { $0 + $1.records.count } == 50)
                // Possibly sent once written; on a loaded machine a batch may expire before its first write.
                #expect(summary.failures.allSatisfy { $0.error.code == .deliveryTimeout }, "\(summary.failures.map(\.error))")
            }
        }
    }

    @Test func aCallerCancelledWhileAwaitingARunStillHasItsRecordsReported() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.connection.requestTimeout = .seconds(300)
            try await withDataProxyClient(configuration: configuration, closeDeadline: .milliseconds(100)) { client in
                let reports = Reports(client.deliveryReports())
                let waiting = Task { () -> (any Error)? in
                    do {
                        _ = try await client.sendAndWait(contentsOf: (0..<10).map { ByteBuffer(string: "c\($0)") }, group: "g", stream: "s")
                        return nil
                    } catch {
                        return error
                    }
                }
                #expect(await eventually { receiver.memorySink.recordCount == 10 })
                waiting.cancel()
                #expect(await waiting.value is CancellationError)
                client.close(deadline: .milliseconds(100))
                #expect(await eventually { reports.recordCount == 10 })
                #expect(reports.all.allSatisfy { !$0.isAcked })
            }
        }
    }

    /// A reader held back: acceptance stops at the quota (reports hold it), no report is dropped, and all flow
    /// once the reader reads again.
    @Test func aSlowReaderSeesEveryReportAndSlowsAcceptance() async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.buffer.maxRecords = 20
            configuration.batching.maxRecords = 5
            try await withDataProxyClient(configuration: configuration) { client in
                let gate = Mutex(false)
                let taken = Mutex<[DataProxyRecordIDs]>([])
                let reader = Task {
                    for await report in client.deliveryReports() {
                        while !gate.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
                        taken.withLock { $0.append(report.records) }
                    }
                }
                let sender = Task {
                    for index in 0..<300 { try await client.send("slow-\(index)", group: "g", stream: "s") }
                }
                #expect(await eventually { client.statistics().reportHeldRecords >= 15 && client.statistics().bufferFull >= 1 })
                #expect(client.statistics().accepted <= 25)
                gate.withLock { $0 = true }
                try await sender.value
                #expect(await client.flush(timeout: .seconds(60)))
                #expect(await eventually { taken.withLock { $0.reduce(0) { $0 + $1.count } } == 300 })
                var all = DataProxyRecordIDs()
                for ids in taken.withLock({ $0 }) { all.formUnion(ids) }
                #expect(all == DataProxyRecordIDs(0..<300))
                #expect(client.statistics().reportHeldRecords == 0)
                reader.cancel()
            }
        }
    }

    @Test func aSlowReaderMakesAFailFastSendFail() async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.buffer.maxRecords = 10
            configuration.buffer.whenFull = .fail
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = client.deliveryReports()  // held, never read
                var refused: DataProxyError?
                for index in 0..<100 {
                    do {
                        try await client.send("r\(index)", group: "g", stream: "s")
                    } catch let error as DataProxyError {
                        refused = error
                        break
                    }
                    _ = await client.flush(timeout: .seconds(60))
                }
                #expect(refused?.code == .bufferFull)
                #expect(client.statistics().reportHeldRecords == 10)
                withExtendedLifetime(reports) {}
            }
        }
    }

    @Test func aReaderThatStopsReadingReleasesWhatItHeld() async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.buffer.maxRecords = 10
            try await withDataProxyClient(configuration: configuration) { client in
                // One sequence dropped at once, one whose reading task is cancelled.
                _ = client.deliveryReports()
                let cancelled = Task {
                    for await _ in client.deliveryReports() { try? await Task.sleep(for: .seconds(3600)) }
                }
                try await client.send("first", group: "g", stream: "s")
                #expect(await client.flush(timeout: .seconds(60)))
                cancelled.cancel()
                await cancelled.value
                // Neither holds quota now: 100 records go through a 10-record buffer.
                for index in 0..<100 { try await client.send("r\(index)", group: "g", stream: "s") }
                #expect(await client.flush(timeout: .seconds(60)))
                #expect(client.statistics().reportHeldRecords == 0)
                #expect(client.statistics().acked == 101)
            }
        }
    }
}
