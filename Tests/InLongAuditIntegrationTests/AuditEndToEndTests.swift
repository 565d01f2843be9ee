import InLongAudit
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import Logging
import NIOCore
import Testing

/// Counts the records a receiver stored into a collector, as `inlong receive --audit-port` does.
struct CountingIntoCollector: DataProxyReceiverSink {
    let inner = InMemorySink()
    let collector: AuditCollector

    func write(_ message: ReceivedMessage) async throws {
        try await self.inner.write(message)
        self.collector.add(.dataProxyInput, group: message.group, stream: message.stream, logTime: message.dataTime, count: message.recordCount, size: message.payloadBytes)
    }
}

/// Runs a collector on a free loopback port for the duration of `body`.
func withCollector<Result: Sendable>(
    _ configuration: AuditCollector.Configuration = .init(),
    _ body: (AuditCollector, Endpoint) async throws -> Result
) async throws -> Result {
    let collector = AuditCollector(configuration: configuration, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await collector.run() }
        defer { collector.stop() }
        let address = try await collector.localAddress()
        return try await body(collector, Endpoint(host: "127.0.0.1", port: address.port!))
    }
}

@Suite(.timeLimit(.minutes(2)))
struct AuditEndToEndTests {
    static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    @Test func aReporterDeliversItsSumsToTheCollector() async throws {
        try await withCollector { collector, endpoint in
            let reporter = AuditReporter(configuration: .init(proxies: [endpoint]), logger: Self.quiet)
            let minute: Int64 = 1_765_000_020_000
            for second in 0..<60 {
                reporter.add(.agentInput, group: "g", stream: "s", logTime: minute + Int64(second) * 1000, count: 2, size: 20)
            }
            reporter.add(.agentOutput, group: "g", stream: "s", logTime: minute + 60_000, count: 7, size: 70)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await reporter.run() }
                reporter.close(deadline: .seconds(60))
                try await group.waitForAll()
            }
            let key = AuditKey(logTime: minute, group: "g", stream: "s", auditID: .agentInput)
            let next = AuditKey(logTime: minute + 60_000, group: "g", stream: "s", auditID: .agentOutput)
            #expect(collector.entries() == [AuditEntry(key: key, counts: AuditCounts(count: 120, size: 1200)), AuditEntry(key: next, counts: AuditCounts(count: 7, size: 70))])
            let statistics = reporter.statistics()
            #expect(statistics.acknowledgedRecords == 127 && statistics.droppedRequests == 0 && statistics.pendingRequests == 0)
        }
    }

    @Test func aProxyThatRefusesIsRetriedAndTheBacklogStaysBounded() async throws {
        var configuration = AuditCollector.Configuration()
        configuration.maxKeys = 0  // answers every request FAILED
        try await withCollector(configuration) { collector, endpoint in
            var reporterConfiguration = AuditReporter.Configuration(proxies: [endpoint])
            reporterConfiguration.flushInterval = .milliseconds(20)
            reporterConfiguration.maxPendingRequests = 3
            reporterConfiguration.retryBackoff = ExponentialBackoff(initial: .milliseconds(10), maximum: .milliseconds(50))
            let reporter = AuditReporter(configuration: reporterConfiguration, logger: Self.quiet)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await reporter.run() }
                for minute in 0..<20 {
                    reporter.add(.sdkInput, group: "g", stream: "s", logTime: Int64(minute) * 60_000, count: 1, size: 1)
                    reporter.flush()
                    try await Task.sleep(for: .milliseconds(5))
                }
                #expect(await eventually { reporter.statistics().failedAttempts >= 3 && collector.statistics().refusedRequests >= 3 })
                #expect(reporter.statistics().pendingRequests <= 3 + 4)
                reporter.close(deadline: .milliseconds(100))
                try await group.waitForAll()
            }
            let statistics = reporter.statistics()
            #expect(statistics.acknowledgedRecords == 0)
            #expect(statistics.droppedRecords == 20, "\(statistics)")
            #expect(collector.entries().isEmpty)
        }
    }

    /// N records through a client with audit on, a receiver that counts what it stored, and the collector: for
    /// each minute, sent = acked = received, and they add up to N.
    @Test func auditCountsOfTheClientAndTheReceiverAgree() async throws {
        let records = 10_000
        try await withCollector { collector, auditEndpoint in
            try await withReceiver(sink: CountingIntoCollector(collector: collector)) { receiver in
                let port = try await receiver.localAddress().port!
                var configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: port)])
                configuration.audit = .init(proxies: [auditEndpoint])
                configuration.audit?.closeDeadline = .seconds(60)
                try await withDataProxyClient(configuration: configuration, logger: Self.quiet) { client in
                    for index in 0..<records {
                        try await client.send(ByteBuffer(string: "record \(index)"), group: "g", stream: "s")
                    }
                    #expect(await client.flush(timeout: .seconds(60)))
                }
                let rows = collector.reconciliation().rows
                #expect(!rows.isEmpty)
                #expect(rows.allSatisfy { $0.agrees }, "\(collector.reconciliation().table())")
                #expect(rows.reduce(0) { $0 + $1.sent } == UInt64(records))
                #expect(rows.reduce(0) { $0 + $1.received } == UInt64(records))
                #expect(rows.allSatisfy { $0.group == "g" && $0.stream == "s" })
            }
        }
    }

    /// A client closed while its last acks arrive: each ended batch's count reaches the reporter before its final
    /// flush (the dispatcher used to stop, and the reporter to close, while an ack's counts were still being told).
    @Test func countsOfTheLastAcksBeforeACloseAreReported() async throws {
        let runs = 20
        let records = 40
        try await withCollector { collector, auditEndpoint in
            try await withReceiver(sink: CountingIntoCollector(collector: collector)) { receiver in
                let port = try await receiver.localAddress().port!
                for run in 0..<runs {
                    var configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: port)])
                    configuration.audit = .init(proxies: [auditEndpoint])
                    configuration.audit?.closeDeadline = .seconds(60)
                    configuration.batching.maxRecords = 8
                    try await withDataProxyClient(configuration: configuration, logger: Self.quiet) { client in
                        for index in 0..<records {
                            try await client.send(ByteBuffer(string: "record \(index)"), group: "g\(run)", stream: "s")
                        }
                    }
                }
                let rows = collector.reconciliation().rows
                for run in 0..<runs {
                    let mine = rows.filter { $0.group == "g\(run)" }
                    #expect(mine.reduce(0) { $0 + $1.sent } == UInt64(records), "run \(run): \(collector.reconciliation().table())")
                    #expect(mine.allSatisfy { $0.agrees }, "run \(run): \(collector.reconciliation().table())")
                }
            }
        }
    }
}
