import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import NIOCore
import Testing

/// Faults injected at the receiver: in every case each accepted record ends acked (and stored) or reported failed.
@Suite struct DataProxyClientFaultTests {
    @Test func retriableErrorsAreRetried() async throws {
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.faults.errorCode = .sinkServiceUnready
        receiverConfiguration.faults.errorRate = 0.5
        try await withReceiver(receiverConfiguration) { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.retry.maxAttempts = 10
            configuration.batching.maxRecords = 50
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                let sent = try await sendAll(client, count: 1000)
                #expect(await client.flush())
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(client.statistics().acked == 1000)
                #expect(client.statistics().retries > 0)
                reports.stop()
            }
        }
    }

    @Test func fatalErrorsFailFastWithTheServerCode() async throws {
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.knownGroups = ["other"]
        try await withReceiver(receiverConfiguration) { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                do {
                    _ = try await client.sendAndWait(ByteBuffer(string: "x"), group: "g", stream: "s")
                    Issue.record("a rejected record was reported acked")
                } catch let error as DataProxyError {
                    #expect(error.code == .serverRejected)
                    #expect(error.serverResultCode == .topicIsBlank)
                    #expect(error.serverErrorMessage?.contains("groupId=(g)") == true)
                    #expect(error.isRetriable == false)
                    #expect(error.attempts == 1)
                    #expect(error.persistence == .notSent)
                }
                let sent = ["x"] + (try await sendAll(client, count: 200))
                #expect(await client.flush())
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(client.statistics().failed == 201)
                #expect(client.statistics().retries == 0)
                reports.stop()
            }
        }
    }

    @Test func flushWaitsForEveryEarlierRecordUntilItsDeadline() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.connection.requestTimeout = .milliseconds(300)
            configuration.retry.maxAttempts = 20
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("stuck", group: "g", stream: "one")
                #expect(await client.flush(timeout: .milliseconds(100)) == false)
                #expect(client.statistics().acked == 0)
                // Acks flow again; the retried batch and a later one of another stream end, and flush says so.
                receiver.updateFaults { $0.dropAcks = false }
                try await client.send("later", group: "g", stream: "two")
                #expect(await client.flush(deadline: .now + .seconds(30)))
                #expect(client.statistics().acked == 2)
                #expect(client.statistics().heldRecords == 0)
            }
        }
    }

    @Test func droppedAcksTimeOutAndAreReportedPossiblySent() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.connection.requestTimeout = .milliseconds(200)
            configuration.retry.maxAttempts = 2
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                do {
                    _ = try await client.sendAndWait(ByteBuffer(string: "lost-ack"), group: "g", stream: "s")
                    Issue.record("expected a failure")
                } catch let error as DataProxyError {
                    #expect(error.code == .requestTimeout)
                    #expect(error.persistence == .possiblySent)
                    #expect(error.attempts == 2)
                }
                // Stored once per attempt that reached the proxy, never acked.
                #expect(await eventually { receiver.memorySink.recordCount >= 1 })
                #expect(receiver.memorySink.recordCount <= 2)
                await expectEveryRecordAccounted(sent: ["lost-ack"], client: client, reports: reports, sinks: [receiver.memorySink])
                reports.stop()
            }
        }
    }

    @Test func delayedAcksWithinTheTimeoutAreFine() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.ackDelay = .milliseconds(30) }
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                let sent = try await sendAll(client, count: 300)
                #expect(await client.flush())
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(client.statistics().acked == 300)
                reports.stop()
            }
        }
    }

    @Test func proxyKilledMidStreamFailsOverToAnother() async throws {
        try await withReceiver { first in
            try await withReceiver { second in
                first.updateFaults { $0.closeAfterFrames = 3 }
                var configuration = clientConfiguration(ports: [try await first.port(), try await second.port()])
                configuration.batching.maxRecords = 20
                configuration.retry.maxAttempts = 5
                try await withDataProxyClient(configuration: configuration) { client in
                    let reports = ReportCollector(client)
                    var sent: [String] = []
                    for round in 0..<5 {
                        sent += try await sendAll(client, count: 400, prefix: "k\(round)-")
                        if round == 2 { first.dropConnections() }
                    }
                    #expect(await client.flush())
                    await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [first.memorySink, second.memorySink])
                    #expect(client.statistics().acked == sent.count)
                    reports.stop()
                }
            }
        }
    }

    @Test func proxyKilledAndRestartedOnTheSamePort() async throws {
        let sink = InMemorySink()
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        let first = DataProxyReceiver(configuration: receiverConfiguration, sink: sink)
        // No acks, so that every batch is still in flight when the proxy dies.
        first.updateFaults { $0.dropAcks = true }
        let firstRun = Task { try await first.run() }
        let port = try await first.port()
        var configuration = clientConfiguration(ports: [port])
        configuration.batching.maxRecords = 20
        configuration.retry.maxAttempts = 20
        // No request times out before the kill, however slow the machine: each record is stored exactly once then.
        configuration.connection.requestTimeout = .seconds(300)
        try await withDataProxyClient(configuration: configuration) { client in
            let reports = ReportCollector(client)
            var sent = try await sendAll(client, count: 400, prefix: "before-")
            #expect(await eventually { sink.recordCount == 400 })
            #expect(client.statistics().acked == 0)
            first.stop()
            try await firstRun.value
            // Accepted while nothing listens: held, not failed.
            sent += try await sendAll(client, count: 400, prefix: "down-")
            receiverConfiguration.port = port
            let second = DataProxyReceiver(configuration: receiverConfiguration, sink: sink)
            let secondRun = Task { try await second.run() }
            _ = try await second.port()
            sent += try await sendAll(client, count: 400, prefix: "after-")
            #expect(await client.flush(timeout: .seconds(60)))
            await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [sink])
            let statistics = client.statistics()
            #expect(statistics.acked == sent.count)
            #expect(statistics.failed == 0, "\(statistics.failures)")
            // The batches cut off by the kill went again: stored twice, acked once.
            #expect(statistics.retries > 0)
            #expect(second.statistics().records >= 800)
            second.stop()
            try await secondRun.value
            reports.stop()
        }
    }

    @Test func recordsHeldWhileNoProxyAnswersFailAtTheirDeliveryDeadline() async throws {
        try await withRefusingPort { port in
            var configuration = clientConfiguration(ports: [port])
            configuration.batching.maxRecords = 5
            configuration.retry.deliveryTimeout = .milliseconds(300)
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                // More batches than senders may queue ahead of a working dispatcher: an outage holds nobody back.
                let sent = try await sendAll(client, count: 200)
                #expect(await client.flush(timeout: .seconds(30)))
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [])
                #expect(client.statistics().failures == ["deliveryTimeout": 200])
                #expect(Set(reports.failedBodies) == Set(sent))
                reports.stop()
            }
        }
    }

    @Test func memoryStaysWithinTheQuotaWhenTheProxyStopsReading() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.stopReading = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.buffer.maxBytes = 1 << 20
            configuration.buffer.whenFull = .fail
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                let body = ByteBuffer(repeating: UInt8(ascii: "m"), count: 1000)
                var accepted = 0
                var refused = 0
                for _ in 0..<5000 {
                    do {
                        try await client.send(body, group: "g", stream: "s")
                        accepted += 1
                    } catch let error as DataProxyError where error.code == .bufferFull {
                        refused += 1
                    }
                    #expect(client.statistics().heldBytes <= 1 << 20)
                }
                #expect(refused > 0)
                #expect(accepted > 0)
                receiver.updateFaults { $0.stopReading = false }
                #expect(await client.flush(timeout: .seconds(60)))
                #expect(client.statistics().acked == accepted)
                #expect(receiver.memorySink.recordCount == accepted)
                #expect(await eventually { reports.acked == accepted })
                reports.stop()
            }
        }
    }

    @Test func closeReportsUnackedRecordsAsFailed() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.connection.requestTimeout = .seconds(30)
            let client = DataProxyClient(configuration: configuration)
            let reports = ReportCollector(client)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await client.run() }
                let sent = try await sendAll(client, count: 500)
                #expect(await eventually { receiver.memorySink.recordCount == 500 })
                client.close(deadline: .milliseconds(100))
                try await group.waitForAll()
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(client.statistics().failed == 500)
                #expect(client.statistics().failures["shutDown"] == 500)
                do {
                    try await client.send("late", group: "g", stream: "s")
                    Issue.record("a closed client accepted a record")
                } catch let error as DataProxyError {
                    #expect(error.code == .shutDown)
                }
            }
            reports.stop()
        }
    }
}
