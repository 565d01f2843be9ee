import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import NIOCore
import Synchronization
import Testing

/// Collects every delivery report of a client.
final class ReportCollector: Sendable {
    final class Box: Sendable {
        let state = Mutex<(acked: Int, failed: Int, failedBodies: [String], reports: Int)>((0, 0, [], 0))
        let finished = Mutex(false)
        let failures = Mutex<[DataProxyError]>([])
        /// Every record id named by a report, and how many were named twice.
        let ids = Mutex<(seen: Set<UInt64>, duplicates: Int)>(([], 0))
    }

    private let box = Box()
    private let task: Task<Void, Never>

    init(_ client: DataProxyClient) {
        let stream = client.deliveryReports()
        let box = self.box
        self.task = Task {
            for await report in stream {
                box.ids.withLock { ids in
                    for id in report.records where !ids.seen.insert(id.rawValue).inserted { ids.duplicates += 1 }
                }
                box.state.withLock { state in
                    state.reports += 1
                    if report.isAcked {
                        state.acked += report.recordCount
                    } else {
                        if case .failed(let error) = report.outcome { box.failures.withLock { $0.append(error) } }
                        state.failed += report.recordCount
                        state.failedBodies += report.failedRecords.map { String(buffer: $0) }
                    }
                }
            }
            box.finished.withLock { $0 = true }
        }
    }

    /// Whether the report sequence finished (the client ran to its end).
    var isFinished: Bool { self.box.finished.withLock { $0 } }
    var failures: [DataProxyError] { self.box.failures.withLock { $0 } }

    var acked: Int { self.box.state.withLock { $0.acked } }
    var failed: Int { self.box.state.withLock { $0.failed } }
    var failedBodies: [String] { self.box.state.withLock { $0.failedBodies } }

    /// Ids named by reports.
    var seenIDs: Set<UInt64> { self.box.ids.withLock { $0.seen } }
    /// Ids named by more than one report.
    var duplicateIDs: Int { self.box.ids.withLock { $0.duplicates } }

    func stop() { self.task.cancel() }
}

/// A client configuration for one or more local receivers, with short timeouts.
func clientConfiguration(ports: [Int]) -> DataProxyClient.Configuration {
    var configuration = DataProxyClient.Configuration(proxies: ports.map { Endpoint(host: "127.0.0.1", port: $0) })
    configuration.batching.linger = .milliseconds(5)
    configuration.retry.backoff = ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(200), multiplier: 2, jitter: 0.1)
    configuration.retry.deliveryTimeout = .seconds(60)
    configuration.connection.backoff = ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(200), multiplier: 2, jitter: 0.1)
    return configuration
}

/// Checks that every accepted record ended exactly once, and that acked records are in the sink.
func expectEveryRecordAccounted(
    sent: [String],
    client: DataProxyClient,
    reports: ReportCollector,
    sinks: [InMemorySink],
    sourceLocation: SourceLocation = #_sourceLocation
) async {
    let statistics = client.statistics()
    #expect(await eventually { reports.acked + reports.failed == sent.count }, sourceLocation: sourceLocation)
    #expect(statistics.accepted == sent.count, sourceLocation: sourceLocation)
    #expect(statistics.accepted == statistics.acked + statistics.failed, sourceLocation: sourceLocation)
    #expect(reports.acked == statistics.acked, sourceLocation: sourceLocation)
    #expect(statistics.heldRecords == 0, sourceLocation: sourceLocation)
    // Ids are handed out from 0 in acceptance order: the reports name each accepted record exactly once.
    #expect(reports.duplicateIDs == 0, sourceLocation: sourceLocation)
    #expect(reports.seenIDs == Set(0..<UInt64(sent.count)), sourceLocation: sourceLocation)
    let stored = Set(sinks.flatMap { $0.records.map { String(buffer: $0.body) } })
    let failed = Set(reports.failedBodies)
    let acked = sent.filter { !failed.contains($0) }
    #expect(acked.allSatisfy { stored.contains($0) }, "an acked record is missing from the sink", sourceLocation: sourceLocation)
}

/// Sends `prefix0` to `prefix(count-1)` one by one to g/s; returns the bodies accepted.
func sendAll(_ client: DataProxyClient, count: Int, prefix: String = "r") async throws -> [String] {
    var sent: [String] = []
    for index in 0..<count {
        let body = "\(prefix)\(index)"
        try await client.send(body, group: "g", stream: "s")
        sent.append(body)
    }
    return sent
}
