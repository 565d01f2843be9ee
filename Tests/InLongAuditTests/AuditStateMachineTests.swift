@testable import InLongAudit
import InLongTransport
import InLongWire
import Synchronization
import Testing

@Suite struct AuditStateMachineTests {
    static let start = ContinuousClock.now

    static func key(_ minuteOffset: Int64, _ stream: String = "s", _ id: AuditID = .sdkInput, second: Int64 = 0) -> AuditKey {
        AuditKey(logTime: 1_765_000_020_000 + minuteOffset * 60_000 + second * 1000, group: "g", stream: stream, auditID: id)
    }

    @Test func countsOfOneMinuteAreSummedIntoOneEntry() {
        var machine = AuditStateMachine()
        machine.add(Self.key(0, second: 1), AuditCounts(count: 2, size: 20, delay: 4))
        machine.add(Self.key(0, second: 39), AuditCounts(count: 3, size: 30, delay: 6))
        machine.add(Self.key(1), AuditCounts(count: 1, size: 10, delay: 1))
        #expect(machine.flush(wallMillis: 5) == 1)
        let sends = machine.nextSends(now: Self.start)
        #expect(sends.count == 1)
        #expect(sends[0].entries.map(\.counts) == [AuditCounts(count: 5, size: 50, delay: 10), AuditCounts(count: 1, size: 10, delay: 1)])
        #expect(sends[0].entries.map(\.key.minute) == [1_765_000_020_000, 1_765_000_080_000])
        #expect(sends[0].packetID == 1 && sends[0].sdkTime == 5)
    }

    @Test func aFlushSplitsIntoRequestsOfAtMostTheBatchSize() {
        var configuration = AuditStateMachine.Configuration()
        configuration.maxEntriesPerRequest = 2
        var machine = AuditStateMachine(configuration: configuration)
        for stream in ["a", "b", "c", "d", "e"] { machine.add(Self.key(0, stream), AuditCounts(count: 1)) }
        #expect(machine.flush(wallMillis: 0) == 3)
        let sends = machine.nextSends(now: Self.start)
        #expect(sends.map(\.entries.count) == [2, 2, 1])
        #expect(sends.map(\.packetID) == [1, 2, 3])
        #expect(Set(sends.map(\.id)).count == 3)
    }

    @Test func aFullBacklogDropsItsOldestRequestAndCountsIt() {
        var configuration = AuditStateMachine.Configuration()
        configuration.maxPendingRequests = 2
        var machine = AuditStateMachine(configuration: configuration)
        for minute in 0..<5 {
            machine.add(Self.key(Int64(minute)), AuditCounts(count: UInt64(minute + 1)))
            machine.flush(wallMillis: 0)
        }
        #expect(machine.waiting.map(\.records) == [4, 5])
        #expect(machine.droppedRequests == 3 && machine.droppedRecords == 1 + 2 + 3)
        #expect(machine.totals.all == 15)
    }

    @Test func aFailedRequestWaitsItsBackoffThenGoesAgainWithTheSameID() {
        var configuration = AuditStateMachine.Configuration()
        configuration.retryBackoff = ExponentialBackoff(initial: .seconds(1), maximum: .seconds(8), jitter: 0)
        var machine = AuditStateMachine(configuration: configuration)
        machine.add(Self.key(0), AuditCounts(count: 1))
        machine.flush(wallMillis: 0)
        let first = machine.nextSends(now: Self.start)
        machine.answered(first[0].id, success: false, now: Self.start)
        #expect(machine.nextSends(now: Self.start + .milliseconds(999)).isEmpty)
        let again = machine.nextSends(now: Self.start + .seconds(1))
        #expect(again.map(\.id) == first.map(\.id))
        machine.answered(again[0].id, success: false, now: Self.start + .seconds(1))
        #expect(machine.nextRetryDue == Self.start + .seconds(3))
        machine.answered(again[0].id, success: true, now: Self.start)  // not in flight: ignored
        #expect(machine.acknowledgedRequests == 0 && machine.failedAttempts == 2)
    }

    /// Seeded random schedules of counts, flushes, sends, answers and clock steps: after every step each count
    /// is in exactly one place (summed, waiting, in flight, acknowledged or dropped), the backlog and the
    /// requests in flight stay within their bounds, ids are unique; at the end, with every request answered,
    /// each key's acknowledged plus dropped counts equal what was added to it, in the minute of its data time.
    @Test(arguments: [1, 2, 3, 42, 2026, 0xA0D17] as [UInt64])
    func randomSchedulesConserveEveryCount(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var configuration = AuditStateMachine.Configuration()
        configuration.maxEntriesPerRequest = Int.random(in: 1...4, using: &random)
        configuration.maxPendingRequests = Int.random(in: 1...6, using: &random)
        configuration.maxInFlight = Int.random(in: 1...3, using: &random)
        configuration.retryBackoff = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(2), jitter: 0.5)
        let jitter = JitterSource(seed: seed)
        configuration.random = { jitter.next(in: $0) }
        var machine = AuditStateMachine(configuration: configuration)
        var now = Self.start
        var added: [AuditKey: UInt64] = [:]
        var acknowledged: [AuditKey: UInt64] = [:]
        var total: UInt64 = 0
        var inFlight: [AuditStateMachine.Request] = []
        for step in 0..<2000 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0...3:
                let time = 1_765_000_000_000 + Int64.random(in: 0..<(5 * 60_000), using: &random)
                let key = AuditKey(logTime: time, group: "g", stream: ["a", "b", "c"].randomElement(using: &random)!, auditID: [.sdkInput, .sdkOutput, .dataProxyInput].randomElement(using: &random)!)
                #expect(key.minute % 60_000 == 0 && key.minute <= time && time < key.minute + 60_000)
                let count = UInt64.random(in: 1...100, using: &random)
                machine.add(key, AuditCounts(count: count, size: count * 10))
                added[key, default: 0] += count
                total += count
            case 4:
                machine.flush(wallMillis: Int64(step))
            case 5, 6:
                let sends = machine.nextSends(now: now)
                inFlight += sends
            case 7, 8:
                guard !inFlight.isEmpty else { break }
                let request = inFlight.remove(at: Int.random(in: 0..<inFlight.count, using: &random))
                let success = Bool.random(using: &random)
                machine.answered(request.id, success: success, now: now)
                if success { for entry in request.entries { acknowledged[entry.key, default: 0] += entry.counts.count } }
            default:
                now += .milliseconds(Int64.random(in: 1...500, using: &random))
            }
            try Self.checkInvariants(machine, total: total, seed: seed, step: step)
        }
        // Drain: every request answered with success until nothing is left.
        machine.flush(wallMillis: 0)
        for request in inFlight {
            machine.answered(request.id, success: true, now: now)
            for entry in request.entries { acknowledged[entry.key, default: 0] += entry.counts.count }
        }
        var rounds = 0
        while !machine.isIdle {
            now += .seconds(3)
            for request in machine.nextSends(now: now) {
                machine.answered(request.id, success: true, now: now)
                for entry in request.entries { acknowledged[entry.key, default: 0] += entry.counts.count }
            }
            rounds += 1
            try #require(rounds < 10_000, "seed \(seed): the backlog never drained")
        }
        #expect(machine.totals.all == total, "seed \(seed)")
        #expect(acknowledged.values.reduce(0, +) + machine.droppedRecords == total, "seed \(seed)")
        if machine.droppedRecords == 0 { #expect(acknowledged == added, "seed \(seed)") }
        for (key, count) in acknowledged { #expect(count <= added[key] ?? 0, "seed \(seed): \(key) acknowledged more than added") }
    }

    static func checkInvariants(_ machine: AuditStateMachine, total: UInt64, seed: UInt64, step: Int) throws {
        let configuration = machine.configuration
        try #require(machine.totals.all == total, "seed \(seed) step \(step): counts not conserved")
        try #require(machine.waiting.count <= configuration.maxPendingRequests, "seed \(seed) step \(step): backlog over its bound")
        try #require(machine.inFlight.count <= configuration.maxInFlight, "seed \(seed) step \(step): too many in flight")
        let requests = Array(machine.waiting) + Array(machine.inFlight.values)
        try #require(requests.allSatisfy { $0.entries.count <= configuration.maxEntriesPerRequest && !$0.entries.isEmpty })
        try #require(Set(requests.map(\.id)).count == requests.count, "seed \(seed) step \(step): duplicate request ids")
        try #require(zip(machine.waiting, machine.waiting.dropFirst()).allSatisfy { $0.id < $1.id }, "seed \(seed) step \(step): backlog out of order")
    }
}

/// Seeded jitter for the machine's backoff.
final class JitterSource: Sendable {
    private let state: Mutex<SplitMix64>
    init(seed: UInt64) { self.state = Mutex(SplitMix64(seed: seed ^ 0x5EED)) }
    func next(in range: ClosedRange<Double>) -> Double { self.state.withLock { Double.random(in: range, using: &$0) } }
}

extension AuditStateMachineTests {
    /// At close, whatever was not acknowledged counts as dropped once, even when its answer comes later.
    @Test func abandoningCountsEveryUnacknowledgedRecordOnce() {
        var machine = AuditStateMachine()
        machine.add(Self.key(0), AuditCounts(count: 2))
        machine.flush(wallMillis: 0)
        let sent = machine.nextSends(now: Self.start)
        machine.add(Self.key(1), AuditCounts(count: 3))
        machine.flush(wallMillis: 0)
        machine.add(Self.key(2), AuditCounts(count: 4))
        machine.abandonAll()
        machine.answered(sent[0].id, success: false, now: Self.start)
        machine.answered(sent[0].id, success: true, now: Self.start)
        #expect(machine.droppedRecords == 9 && machine.droppedRequests == 2 && machine.acknowledgedRecords == 0)
        #expect(machine.isIdle && machine.totals.all == 9)
    }
}
