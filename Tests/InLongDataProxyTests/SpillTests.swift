import InLongTransport
import InLongWire
import NIOCore
import Testing

@testable import InLongDataProxy

/// Spilling: records the memory quota has no room for, accepted onto the spool only and read back as memory frees.
/// The machine's rules, with the time given and the spool's files played by a dictionary.
@Suite struct SpillTests {
    typealias Machine = DeliveryStateMachine<Int>

    static let start = ContinuousClock.now
    static let key = BatchKey(group: "g", stream: "s", perRecordAttributes: false)
    static let proxy = Endpoint(host: "127.0.0.1", port: 1)

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { Self.start + .milliseconds(milliseconds) }

    func makeMachine(maxRecords: Int = 2, quotaRecords: Int = 4) -> Machine {
        var machine = Machine(
            configuration: .init(
                deliveryTimeout: .seconds(10),
                maxAttempts: nil,
                retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0),
                backlogLimit: .max
            ),
            limits: .init(maxRecords: maxRecords, maxBytes: 1 << 16, linger: .milliseconds(10), quotaBytes: 1 << 20, quotaRecords: quotaRecords)
        )
        machine.proxiesChanged([Self.proxy])
        return machine
    }

    func records(_ ids: Range<UInt64>) -> [SpoolRecord] {
        ids.map { SpoolRecord(id: $0, key: Self.key, attributes: nil, body: ByteBuffer(string: "r\($0)")) }
    }

    func location(_ seq: Int) -> SpillLocation { SpillLocation(segment: 1, offset: seq * 100, length: 100) }

    /// Dispatches and acks the next job; its record ids.
    @discardableResult
    func ackNext(_ machine: inout Machine, at now: Int, actions: inout [Machine.Actions]) -> [UInt64]? {
        guard var job = machine.nextJob(now: self.at(now)).next?.job else { return nil }
        job.frame = ByteBuffer(string: "frame")
        actions.append(machine.submitted(job, to: Self.proxy, now: self.at(now), spentBlock: nil))
        actions.append(machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: self.at(now)))
        return job.batch.ids.runs.flatMap { Array($0) }
    }

    // MARK: Examples

    @Test func recordsBeyondTheQuotaSpillAndComeBackInOrderWithTheirIDs() throws {
        var machine = self.makeMachine()
        let first = machine.appendRun(ArraySlice((0..<6).map { ByteBuffer(string: "r\($0)") }), key: Self.key, now: self.at(0), wallSeconds: 0)
        #expect(first.ids == 0..<4)
        #expect(first.blocked == .full)
        let reserved1 = machine.reserveSpill(count: 2, key: Self.key, observer: .none)
        let (seq, ids) = try #require(reserved1)
        #expect(ids == 4..<6)
        // Nothing to read while the write goes on; a new record waits behind the spill even once memory has room.
        #expect(machine.nextSpill() == .wait)
        let result2 = machine.parkDrainer(1, bytes: nil)
        #expect(result2)
        let written = machine.spillWritten(seq, at: self.location(seq), now: self.at(1))
        #expect(written.resumeSenders == [1])
        #expect(machine.nextSpill() == .read(seq: seq, ids: 4..<6, location: self.location(seq), skip: 0))
        // No room yet: nothing is appended, and the drainer waits for room.
        let full = machine.drainSpill(seq, self.records(4..<6)[...], now: self.at(1), wallSeconds: 0)
        #expect(full.appended == 0 && full.current)
        let result3 = machine.parkDrainer(2, bytes: 2)
        #expect(result3)
        var actions: [Machine.Actions] = []
        #expect(self.ackNext(&machine, at: 2, actions: &actions) == [0, 1])
        #expect(actions.flatMap(\.resumeSenders) == [2])
        let late = machine.appendRun(ArraySlice([ByteBuffer(string: "late")]), key: Self.key, now: self.at(2), wallSeconds: 0)
        #expect(late.blocked == .full)
        let drained = machine.drainSpill(seq, self.records(4..<6)[...], now: self.at(2), wallSeconds: 0)
        #expect(drained.appended == 2 && !drained.current)
        #expect(machine.spill.isEmpty)
        #expect(machine.nextSpill() == .wait)
        #expect(self.ackNext(&machine, at: 3, actions: &actions) == [2, 3])
        #expect(self.ackNext(&machine, at: 3, actions: &actions) == [4, 5])
        // With the spill drained, records go to memory again, with the next ids.
        let next = machine.appendRun(ArraySlice([ByteBuffer(string: "next")]), key: Self.key, now: self.at(4), wallSeconds: 0)
        #expect(next.ids == 6..<7)
    }

    @Test func aSpillThatCouldNotBeWrittenTakesNothingAndLetsTheNextGo() throws {
        var machine = self.makeMachine()
        machine.appendRun(ArraySlice((0..<4).map { ByteBuffer(string: "r\($0)") }), key: Self.key, now: self.at(0), wallSeconds: 0)
        let reserved6 = machine.reserveSpill(count: 1, key: Self.key, observer: .none)
        let (a, _) = try #require(reserved6)
        let reserved7 = machine.reserveSpill(count: 1, key: Self.key, observer: .none)
        let (b, idsB) = try #require(reserved7)
        _ = machine.spillWritten(b, at: self.location(b), now: self.at(0))
        #expect(machine.nextSpill() == .wait)  // the first is still being written
        _ = machine.spillAbandoned(a, now: self.at(0))
        #expect(machine.nextSpill() == .read(seq: b, ids: idsB, location: self.location(b), skip: 0))
        #expect(machine.spill.records == 1)
    }

    @Test func aFlushWaitsForSpilledRecordsAndThenForTheirBatches() throws {
        var machine = self.makeMachine(maxRecords: 10, quotaRecords: 2)
        machine.appendRun(ArraySlice((0..<2).map { ByteBuffer(string: "r\($0)") }), key: Self.key, now: self.at(0), wallSeconds: 0)
        let reserved8 = machine.reserveSpill(count: 2, key: Self.key, observer: .none)
        let (seq, ids) = try #require(reserved8)
        _ = machine.spillWritten(seq, at: self.location(seq), now: self.at(0))
        guard case .parked(let flush) = machine.flush(waiter: 9, now: self.at(0)).0 else {
            Issue.record("a flush ended with records spilled")
            return
        }
        var actions: [Machine.Actions] = []
        self.ackNext(&machine, at: 1, actions: &actions)
        #expect(actions.flatMap(\.resumeFlushes).isEmpty)
        let drained = machine.drainSpill(seq, self.records(ids)[...], now: self.at(1), wallSeconds: 0)
        #expect(drained.appended == 2)
        // Drained: the flush now waits for the batch the spilled records went into, sealed by it.
        #expect(drained.2.sealed.map(\.records) == [2])
        #expect(drained.2.resumeFlushes.isEmpty)
        self.ackNext(&machine, at: 2, actions: &actions)
        #expect(actions.flatMap(\.resumeFlushes).map(\.waiter) == [9])
        let result9 = machine.cancelFlush(flush)
        #expect(result9 == nil)
    }

    @Test func aFlushWaitingForTheSpillCanBeCancelled() throws {
        var machine = self.makeMachine(quotaRecords: 1)
        machine.appendRun(ArraySlice([ByteBuffer(string: "r")]), key: Self.key, now: self.at(0), wallSeconds: 0)
        let reserved = machine.reserveSpill(count: 1, key: Self.key, observer: .none)
        _ = try #require(reserved)
        guard case .parked(let flush) = machine.flush(waiter: 3, now: self.at(0)).0 else {
            Issue.record("a flush ended with records spilled")
            return
        }
        let result10 = machine.cancelFlush(flush)
        #expect(result10 == 3)
        let result11 = machine.cancelFlush(flush)
        #expect(result11 == nil)
    }

    @Test func aCloseWithNoGraceFailsSpilledRecordsAsShutDownAndThoseBeingWrittenOnceWritten() throws {
        var machine = self.makeMachine(quotaRecords: 1)
        machine.appendRun(ArraySlice([ByteBuffer(string: "r")]), key: Self.key, now: self.at(0), wallSeconds: 0)
        let waiter = AckWaiter()
        let reserved12 = machine.reserveSpill(count: 2, key: Self.key, observer: .none)
        let (written, writtenIDs) = try #require(reserved12)
        _ = machine.spillWritten(written, at: self.location(written), now: self.at(0))
        let reserved13 = machine.reserveSpill(count: 1, key: Self.key, observer: .waiter(waiter))
        let (writing, writingIDs) = try #require(reserved13)
        let result14 = machine.parkDrainer(5, bytes: 2)
        #expect(result14)
        let closed = machine.cancelled(now: self.at(1))
        let failed = closed.finish.filter { $0.job.id == -1 }
        #expect(failed.map { $0.job.batch.ids } == [DataProxyRecordIDs(writtenIDs)])
        #expect(failed.allSatisfy { $0.result.failureCode == .shutDown && !$0.reportHolds })
        #expect(closed.resumeSenders.contains(5))
        #expect(machine.nextSpill() == .stop)
        let result15 = machine.reserveSpill(count: 1, key: Self.key, observer: .none)
        #expect(result15 == nil)
        let late = machine.spillWritten(writing, at: self.location(writing), now: self.at(2))
        #expect(late.finish.map { $0.job.batch.ids } == [DataProxyRecordIDs(writingIDs)])
        #expect(late.finish.first?.job.batch.observers.count == 1)
        #expect(machine.spill.isEmpty)
        #expect(machine.spill.records == 0)
    }

    @Test func aClosingClientFinishesOnlyOnceTheSpillDrained() throws {
        var machine = self.makeMachine(maxRecords: 10, quotaRecords: 1)
        machine.appendRun(ArraySlice([ByteBuffer(string: "r")]), key: Self.key, now: self.at(0), wallSeconds: 0)
        let reserved16 = machine.reserveSpill(count: 1, key: Self.key, observer: .none)
        let (seq, ids) = try #require(reserved16)
        _ = machine.spillWritten(seq, at: self.location(seq), now: self.at(0))
        _ = machine.closeRequested(now: self.at(0), deadline: self.at(10_000))
        var actions: [Machine.Actions] = []
        self.ackNext(&machine, at: 1, actions: &actions)
        #expect(!machine.isFinished)
        #expect(machine.nextSpill() != .stop)
        // Read back while closing: sealed at once, not left to linger.
        let drained = machine.drainSpill(seq, self.records(ids)[...], now: self.at(2), wallSeconds: 0)
        #expect(drained.2.sealed.map(\.records) == [1])
        #expect(self.ackNext(&machine, at: 3, actions: &actions) == [1])
        #expect(machine.isFinished)
        #expect(machine.nextSpill() == .stop)
    }

    @Test func unreadableSpilledRecordsFailWithTheSpoolsError() throws {
        var machine = self.makeMachine(quotaRecords: 1)
        machine.appendRun(ArraySlice([ByteBuffer(string: "r")]), key: Self.key, now: self.at(0), wallSeconds: 0)
        let reserved17 = machine.reserveSpill(count: 3, key: Self.key, observer: .none)
        let (seq, ids) = try #require(reserved17)
        _ = machine.spillWritten(seq, at: self.location(seq), now: self.at(0))
        let actions = machine.spillUnreadable(seq, error: DataProxyError(.spoolFailed, "gone"), now: self.at(1))
        #expect(actions.finish.map { $0.job.batch.ids } == [DataProxyRecordIDs(ids)])
        #expect(actions.finish.first?.result.failureCode == .spoolFailed)
        #expect(machine.spill.isEmpty)
    }

    // MARK: Seeded schedules

    /// Random schedules of appends (spilling what does not fit; writes that end late or fail), the drainer's
    /// steps, acks, retries, flushes, the time, a close and a cancellation. After every step: memory holds at most
    /// its quota, the spill counts what it holds. At the end: every accepted record ended exactly once, no record
    /// whose spill failed did, and batches were sealed in id order (nothing overtook a spilled record).
    @Test(arguments: 0..<300)
    func seededSchedulesEndEveryAcceptedRecordOnceAndKeepTheOrder(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let quota = Int.random(in: 1...6, using: &random)
        var machine = self.makeMachine(maxRecords: Int.random(in: 1...4, using: &random), quotaRecords: quota)
        var now = 0
        var accepted = Set<UInt64>()
        var abandoned = Set<UInt64>()
        var ended: [UInt64: Int] = [:]
        var writing: [(seq: Int, ids: Range<UInt64>)] = []
        var disk: [Int: [SpoolRecord]] = [:]
        var pendingRead: (seq: Int, records: ArraySlice<SpoolRecord>)?
        var batchOrder: [(job: Int, ids: [UInt64])] = []
        var flushes = 0
        /// A call's fill begun and not committed yet (the client writes it outside the lock), with its count.
        var pendingFill: (fill: BatchFill, count: Int)?

        func apply(_ actions: Machine.Actions) {
            for (job, _, reportHolds) in actions.finish {
                #expect(!reportHolds)
                if job.id >= 0 { batchOrder.append((job.id, job.batch.ids.runs.flatMap { Array($0) })) }
                for run in job.batch.ids.runs { for id in run { ended[id, default: 0] += 1 } }
            }
        }
        func spillLeft(_ count: Int) {
            guard let (seq, ids) = machine.reserveSpill(count: count, key: Self.key, observer: .none) else { return }
            disk[seq] = self.records(ids)
            switch Int.random(in: 0..<10, using: &random) {
            case 0:
                apply(machine.spillAbandoned(seq, now: self.at(now)))
                abandoned.formUnion(ids)
            case 1, 2:
                writing.append((seq, ids))
            default:
                accepted.formUnion(ids)
                apply(machine.spillWritten(seq, at: self.location(seq), now: self.at(now)))
            }
        }

        /// A fill's commit, as the client takes it: what it accepted is accepted; what the buffer had no room for
        /// (or a spill meanwhile refused) is spilled behind.
        func commitPendingFill() {
            guard let (fill, count) = pendingFill else { return }
            pendingFill = nil
            let (committed, actions) = machine.commitFill(fill, now: self.at(now), wallSeconds: 0)
            if let actions { apply(actions) }
            accepted.formUnion(committed.ids)
            if committed.blocked == .full, committed.ids.count < count { spillLeft(count - committed.ids.count) }
        }

        for _ in 0..<200 {
            now += Int.random(in: 0...30, using: &random)
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<10 where pendingFill == nil:  // a call of several records begins a fill, committed later
                let count = Int.random(in: 1...5, using: &random)
                let bodies = (0..<count).map { ByteBuffer(string: "f\($0)") }
                switch bodies.withUnsafeBufferPointer({ machine.beginFill(key: Self.key, wanted: BatchAccumulator.wanted($0)) }) {
                case .blocked(.full): spillLeft(count)
                case .blocked: break
                case .fill(var fill):
                    bodies.withUnsafeBufferPointer { fill.fill(from: BodiesFillSource(bodies: $0), at: 0) }
                    pendingFill = (fill, count)
                }
            case 0..<10:
                commitPendingFill()
            case 10..<35:  // a call of several records
                let count = Int.random(in: 1...5, using: &random)
                let run = machine.appendRun(
                    ArraySlice((0..<count).map { ByteBuffer(string: "x\($0)") }), key: Self.key, now: self.at(now), wallSeconds: 0
                )
                accepted.formUnion(run.ids)
                if let sealed = run.sealed { apply(Machine.Actions(sealed)) }
                if run.blocked == .full, run.ids.count < count { spillLeft(count - run.ids.count) }
            case 35..<43:  // a write ends
                guard !writing.isEmpty else { continue }
                let (seq, ids) = writing.remove(at: Int.random(in: 0..<writing.count, using: &random))
                if Int.random(in: 0..<5, using: &random) == 0 {
                    apply(machine.spillAbandoned(seq, now: self.at(now)))
                    abandoned.formUnion(ids)
                } else {
                    accepted.formUnion(ids)
                    apply(machine.spillWritten(seq, at: self.location(seq), now: self.at(now)))
                }
            case 43..<55:  // the drainer
                if pendingRead == nil, case .read(let seq, let ids, let location, let skip) = machine.nextSpill() {
                    #expect(location == self.location(seq))
                    let records = try #require(disk[seq])
                    #expect(records.map(\.id) == Array(ids))
                    pendingRead = (seq, records[skip...])
                }
                guard let (seq, records) = pendingRead else { continue }
                let (appended, current, actions) = machine.drainSpill(seq, records, now: self.at(now), wallSeconds: 0)
                apply(actions)
                let rest = records.dropFirst(appended)
                pendingRead = current && !rest.isEmpty ? (seq, rest) : nil
            case 55..<85:  // the dispatcher: a job out, acked or failed to retry
                let (next, actions) = machine.nextJob(now: self.at(now))
                apply(actions)
                guard var job = next?.job else { continue }
                job.frame = job.frame ?? ByteBuffer(string: "frame")
                apply(machine.submitted(job, to: Self.proxy, now: self.at(now), spentBlock: nil))
                let outcome: DeliveryOutcome = Int.random(in: 0..<4, using: &random) == 0
                    ? .rejected(.serviceClosed, message: nil) : .acked(proxyIP: nil)
                apply(machine.completed(jobID: job.id, outcome: outcome, now: self.at(now)))
            case 85..<93:
                apply(machine.tick(now: self.at(now)))
            case 93..<97:
                let (result, actions) = machine.flush(waiter: 1_000 + flushes, now: self.at(now))
                apply(actions)
                flushes += 1
                if case .parked(let id) = result, Bool.random(using: &random) { _ = machine.cancelFlush(id) }
            case 97..<99:  // a close with a grace
                apply(machine.closeRequested(now: self.at(now), deadline: self.at(now + 500)))
            default:
                apply(machine.cancelled(now: self.at(now)))
            }
            // Memory never holds more than its quota (one record always fits an empty client).
            #expect(machine.accumulator.heldRecords <= max(quota, 1))
            #expect(machine.spill.records == machine.spill.entries.reduce(0) { $0 + $1.remaining.count })
            #expect(machine.spill.entries.map(\.seq) == machine.spill.entries.map(\.seq).sorted())
        }
        // The end: a fill under way commits, everything fails that did not end, and writes in progress end.
        commitPendingFill()
        apply(machine.cancelled(now: self.at(now + 1)))
        for (seq, ids) in writing {
            accepted.formUnion(ids)
            apply(machine.spillWritten(seq, at: self.location(seq), now: self.at(now + 2)))
        }
        #expect(machine.spill.isEmpty)
        #expect(Set(ended.keys) == accepted, "seed \(seed): accepted records without an outcome, or outcomes of records not accepted")
        #expect(ended.values.allSatisfy { $0 == 1 }, "seed \(seed): a record ended twice")
        #expect(abandoned.isDisjoint(with: accepted))
        let order = batchOrder.sorted { $0.job < $1.job }.flatMap(\.ids)
        #expect(order == order.sorted(), "seed \(seed): a batch holds records out of acceptance order")
    }
}
