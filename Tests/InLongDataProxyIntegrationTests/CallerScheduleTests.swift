import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import NIOCore
import Synchronization
import Testing

/// Seeded random callers through the real client and a real receiver on loopback: every kind of send, flushes
/// with short deadlines and cancellation at random points, against a receiver that acks late, refuses, drops
/// connections or never acks, with a buffer small enough that callers wait. Timing varies from run to run; the
/// invariants hold for every timing: every accepted record is reported exactly once, an acked record was stored,
/// a record reported `notSent` was never stored, and no caller hangs.
@Suite(.timeLimit(.minutes(3))) struct CallerScheduleTests {
    /// Bodies the callers know were accepted, by id.
    final class Accepted: Sendable {
        let bodies = Mutex<[UInt64: String]>([:])

        func add(_ ids: DataProxyRecordIDs, _ bodies: [String]) {
            self.bodies.withLock { accepted in
                for (id, body) in zip(ids, bodies) { accepted[id.rawValue] = body }
            }
        }
    }

    /// Every report: ids, outcome, and the bodies of failed records.
    final class Reports: Sendable {
        typealias Entry = (ids: [UInt64], acked: Bool, persistence: DataProxyError.Persistence?, bodies: [String])

        final class Box: Sendable {
            let reports = Mutex<[Entry]>([])
        }

        let box = Box()
        let task: Task<Void, Never>

        init(_ sequence: DeliveryReports) {
            let box = self.box
            self.task = Task {
                for await report in sequence {
                    var persistence: DataProxyError.Persistence?
                    if case .failed(let error) = report.outcome { persistence = error.persistence }
                    let entry = (report.records.map(\.rawValue), report.isAcked, persistence, report.failedRecords.map { String(buffer: $0) })
                    box.reports.withLock { $0.append(entry) }
                }
            }
        }

        var all: [Entry] { self.box.reports.withLock { $0 } }
    }

    enum Fault: CaseIterable {
        case none, lateAcks, refusals, closes, noAcks
    }

    static func run(seed: UInt64, fault: Fault) async throws {
        var random = SplitMix64(seed: seed)
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        switch fault {
        case .none: break
        case .lateAcks: receiverConfiguration.faults.ackDelay = .milliseconds(30)
        case .refusals:
            receiverConfiguration.faults.errorCode = .sinkServiceUnready
            receiverConfiguration.faults.errorRate = 0.3
        case .closes: receiverConfiguration.faults.closeAfterFrames = 4
        case .noAcks: receiverConfiguration.faults.dropAcks = true
        }
        try await withReceiver(receiverConfiguration) { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.buffer.maxBytes = 4 << 10
            // Short where records are meant to fail; long where they must not (a loaded machine is slow, not lossy).
            configuration.retry.deliveryTimeout = .milliseconds(fault == .noAcks ? 500 : fault == .none ? 120_000 : 2_000)
            configuration.connection.requestTimeout = .milliseconds(300)
            let accepted = Accepted()
            let seeds = (0..<8).map { _ in UInt64.random(in: 0...UInt64.max, using: &random) }
            let (reports, client) = try await withDataProxyClient(configuration: configuration, closeDeadline: .seconds(3)) { client in
                let reports = Reports(client.deliveryReports())
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (caller, seed) in seeds.enumerated() {
                        group.addTask { try await Self.caller(caller, seed: seed, client: client, accepted: accepted) }
                    }
                    try await group.waitForAll()
                }
                return (reports, client)
            }
            // The client ended: its report sequence finishes with the last report.
            await reports.task.value
            let all = reports.all
            let total = client.statistics()
            var named: [UInt64: Int] = [:]
            for report in all { for id in report.ids { named[id, default: 0] += 1 } }
            #expect(total.accepted == total.acked + total.failed, "seed \(seed)")
            #expect(named.count == total.accepted, "seed \(seed): \(named.count) ids reported, \(total.accepted) accepted")
            #expect(Set(named.keys) == Set(0..<UInt64(total.accepted)), "seed \(seed)")
            #expect(named.values.allSatisfy { $0 == 1 }, "seed \(seed): an id reported twice")
            #expect(total.accepted > 0, "seed \(seed)")
            // A cancelled caller does not fail what it handed over: with a healthy receiver everything is acked,
            // with one that never acks nothing is.
            if fault == .none { #expect(total.failed == 0, "seed \(seed)") }
            if fault == .noAcks { #expect(total.acked == 0, "seed \(seed)") }
            let stored = Set(receiver.memorySink.records.map { String(buffer: $0.body) })
            let known = accepted.bodies.withLock { $0 }
            for report in all {
                if report.acked {
                    for id in report.ids {
                        guard let body = known[id] else { continue }
                        #expect(stored.contains(body), "seed \(seed): acked \(body) was not stored")
                    }
                } else if report.persistence == .notSent {
                    for body in report.bodies {
                        #expect(!stored.contains(body), "seed \(seed): \(body) was reported notSent and stored")
                    }
                }
            }
        }
    }

    /// One caller: a random mix of calls, some cancelled part way.
    static func caller(_ caller: Int, seed: UInt64, client: DataProxyClient, accepted: Accepted) async throws {
        var random = SplitMix64(seed: seed)
        for call in 0..<10 {
            let count = Int.random(in: 1...40, using: &random)
            let bodies = (0..<count).map { "c\(caller)-\(call)-\($0)-" + String(repeating: "x", count: $0 % 50) }
            let kind = Int.random(in: 0..<6, using: &random)
            let cancelAfter: Duration? = Int.random(in: 0..<3, using: &random) == 0 ? .microseconds(Int64.random(in: 0...5_000, using: &random)) : nil
            let flushFor = Duration.milliseconds(Int64.random(in: 0...200, using: &random))
            let task = Task { () throws -> Void in
                switch kind {
                case 0:
                    for body in bodies {
                        let id = try await client.send(body, group: "g", stream: "s\(caller % 3)")
                        accepted.add(DataProxyRecordIDs(id.rawValue..<id.rawValue + 1), [body])
                    }
                case 1:
                    let ids = try await client.send(contentsOf: bodies.map { ByteBuffer(string: $0) }, group: "g", stream: "runs")
                    accepted.add(ids, bodies)
                case 2:
                    let receipt = try await client.sendWithReceipt(contentsOf: bodies.map { ByteBuffer(string: $0) }, group: "g", stream: "receipts")
                    accepted.add(receipt.records, bodies)
                    _ = try await receipt.outcome()
                case 3:
                    let records = bodies.map { DataProxyRecord($0, attributes: [("k", "v")]) }
                    let receipt = try await client.sendWithReceipt(contentsOf: records, group: "g", stream: "attributed")
                    accepted.add(receipt.records, bodies)
                case 4:
                    _ = try await client.sendAndWait(contentsOf: bodies.map { ByteBuffer(string: $0) }, group: "h", stream: "wait")
                default:
                    let ids = try await client.send(contentsOf: bodies.map { ByteBuffer(string: $0) }, group: "g", stream: "flushed")
                    accepted.add(ids, bodies)
                    _ = await client.flush(deadline: .now + flushFor)
                }
            }
            if let cancelAfter {
                try? await Task.sleep(for: cancelAfter)
                task.cancel()
            }
            do {
                try await task.value
            } catch let error as DataProxyError {
                // Part of a call accepted: its records are named, and reported like any other.
                if let ids = error.acceptedRecords { accepted.add(ids, bodies) }
                #expect(error.code == .cancelled || error.code == .bufferFull || error.code == .deliveryTimeout, "\(error)")
            } catch is CancellationError {
                // Nothing more of this call was accepted (or, for sendAndWait, its records end in reports).
            }
        }
    }

    @Test(arguments: Array(zip(UInt64(0)..<5, Fault.allCases)))
    func everyAcceptedRecordEndsOnceWhateverTheCallersDo(seed: UInt64, fault: Fault) async throws {
        try await Self.run(seed: seed, fault: fault)
    }
}
