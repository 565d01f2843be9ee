import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// Shutting down, gracefully and by cancellation, and cancelling callers: every accepted record ends in exactly
/// one report, every caller resumes, every report sequence finishes, and each test ends on its own.
@Suite struct DataProxyClientLifecycleTests {
    /// A task's body ran to its end (bounded waits check this rather than awaiting the task).
    final class Ended: Sendable {
        private let flag = Mutex(false)
        func set() { self.flag.withLock { $0 = true } }
        var value: Bool { self.flag.withLock { $0 } }
    }

    private func serviceGroup(_ client: DataProxyClient) -> ServiceGroup {
        ServiceGroup(
            configuration: .init(
                services: [.init(service: client)],
                gracefulShutdownSignals: [],
                cancellationSignals: [],
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
            )
        )
    }

    @Test func gracefulShutdownOfAServiceGroupDeliversWhatItCan() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.ackDelay = .milliseconds(20) }
            let client = DataProxyClient(configuration: clientConfiguration(ports: [try await receiver.port()]))
            let reports = ReportCollector(client)
            let group = self.serviceGroup(client)
            let ended = Ended()
            let run = Task {
                try await group.run()
                ended.set()
            }
            let sent = try await sendAll(client, count: 500)
            await group.triggerGracefulShutdown()
            #expect(await eventually { ended.value })
            #expect(await eventually { reports.isFinished })
            await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
            #expect(client.statistics().acked == 500)
            try await run.value
        }
    }

    @Test func cancellingRunEndsEveryRecordAndResumesEveryCaller() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.connection.requestTimeout = .seconds(300)
            configuration.buffer.maxRecords = 300
            let client = DataProxyClient(configuration: configuration)
            let reports = ReportCollector(client)
            let group = self.serviceGroup(client)
            let run = Task { try await group.run() }
            var sent = try await sendAll(client, count: 290)
            // Callers suspended for acks that never come, and one sender blocked on the full buffer.
            let waiting = (0..<10).map { index in
                Task { () -> (any Error)? in
                    do {
                        _ = try await client.sendAndWait(ByteBuffer(string: "w\(index)"), group: "g", stream: "s")
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            sent += (0..<10).map { "w\($0)" }
            #expect(await eventually { client.statistics().accepted == 300 })
            let blocked = Task { () -> (any Error)? in
                do {
                    try await client.send("over", group: "g", stream: "s")
                    return nil
                } catch {
                    return error
                }
            }
            #expect(await eventually { client.statistics().bufferFull >= 1 })
            #expect(await eventually { receiver.memorySink.recordCount == 300 })
            run.cancel()
            #expect(await eventually { reports.isFinished })
            for task in waiting {
                let error = await task.value as? DataProxyError
                #expect(error?.code == .shutDown)
                #expect(error?.persistence == .possiblySent)
            }
            let blockedError = await blocked.value as? DataProxyError
            #expect(blockedError?.code == .shutDown)
            await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
            #expect(client.statistics().failures == ["shutDown": 300])
            #expect(reports.failures.allSatisfy { $0.persistence == .possiblySent })
            _ = try? await run.value
            // A closed client refuses records and gives finished report sequences.
            await #expect(throws: DataProxyError.self) { try await client.send("late", group: "g", stream: "s") }
            var iterator = client.deliveryReports().makeAsyncIterator()
            #expect(await iterator.next() == nil)
        }
    }

    @Test func aSendBlockedOnAFullBufferIsCancelledAndItsRecordNotAccepted() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.buffer.maxRecords = 10
            configuration.connection.requestTimeout = .seconds(300)
            try await withDataProxyClient(configuration: configuration, closeDeadline: .milliseconds(100)) { client in
                let reports = ReportCollector(client)
                let sent = try await sendAll(client, count: 10)
                let blocked = Task { () -> (any Error)? in
                    do {
                        try await client.send("blocked", group: "g", stream: "s")
                        return nil
                    } catch {
                        return error
                    }
                }
                #expect(await eventually { client.statistics().bufferFull >= 1 })
                blocked.cancel()
                #expect(await blocked.value is CancellationError)
                #expect(client.statistics().accepted == 10)
                client.close(deadline: .milliseconds(100))
                #expect(await eventually { reports.isFinished })
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
            }
        }
    }

    @Test func sendAndWaitCancelledAfterAcceptanceStillHasItsRecordReported() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.connection.requestTimeout = .milliseconds(200)
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                let caller = Task { () -> (any Error)? in
                    do {
                        _ = try await client.sendAndWait(ByteBuffer(string: "awaited"), group: "g", stream: "s")
                        return nil
                    } catch {
                        return error
                    }
                }
                #expect(await eventually { receiver.memorySink.recordCount >= 1 })
                caller.cancel()
                #expect(await caller.value is CancellationError)
                receiver.updateFaults { $0.dropAcks = false }
                #expect(await client.flush())
                await expectEveryRecordAccounted(sent: ["awaited"], client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(client.statistics().acked == 1)
            }
        }
    }

    @Test func sendAndWaitCancelledBeforeAcceptanceSendsNothing() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                let caller = Task { () -> (any Error)? in
                    withUnsafeCurrentTask { $0?.cancel() }
                    do {
                        _ = try await client.sendAndWait(ByteBuffer(string: "never"), group: "g", stream: "s")
                        return nil
                    } catch {
                        return error
                    }
                }
                #expect(await caller.value is CancellationError)
                #expect(await client.flush())
                #expect(client.statistics().accepted == 0)
            }
        }
    }

    @Test func discoveryThatNeverAnswersFailsRecordsAtTheirDeadlineAsNoProxies() async throws {
        try await withRefusingPort { port in
            var manager = DataProxyClient.Configuration.Manager(url: "http://127.0.0.1:\(port)/inlong/manager/openapi/dataproxy/getIpList", groups: ["g"])
            manager.cacheFile = nil
            manager.attempts = 1
            manager.requestTimeout = .seconds(1)
            var configuration = clientConfiguration(ports: [])
            configuration.manager = manager
            configuration.retry.deliveryTimeout = .milliseconds(300)
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                let sent = try await sendAll(client, count: 20)
                let start = ContinuousClock.now
                // A bound, not a measure: with other builds loading the machine, this flush took over 30 s in 2 of
                // 5 full runs, though it passes alone under CPU hogs; the cause is not known.
                let flushed = await client.flush(timeout: .seconds(120))
                #expect(flushed, "after \(ContinuousClock.now - start): \(client.statistics())")
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [])
                #expect(client.statistics().failures == ["noProxies": 20])
                #expect(reports.failures.allSatisfy { $0.persistence == .notSent })
            }
        }
    }

    /// A client closed while its last acks arrive: every record's report reaches the reader before the report
    /// sequence finishes (the run used to end, and finish the readers, while an ack's report was still on its way).
    @Test func everyReportOfTheLastAcksReachesTheReaderBeforeTheEnd() async throws {
        try await withReceiver { receiver in
            let port = try await receiver.port()
            for run in 0..<20 {
                var configuration = clientConfiguration(ports: [port])
                configuration.batching.maxRecords = 8
                let collector = try await withDataProxyClient(configuration: configuration) { client in
                    let collector = ReportCollector(client)
                    for index in 0..<40 {
                        try await client.send(ByteBuffer(string: "run \(run) record \(index)"), group: "g", stream: "s")
                    }
                    return collector
                }
                #expect(await eventually(timeout: .seconds(60)) { collector.isFinished })
                #expect(collector.acked == 40 && collector.failed == 0, "run \(run): \(collector.acked) acked, \(collector.failed) failed")
            }
        }
    }
}
