import InLongTransport
import InLongWire
import NIOCore
import Testing

@testable import InLongDataProxy

/// Records written into batches between two turns of the lock (``BatchFill``): whatever happens between the
/// beginning and the commit (appends, seals, other fills, a close), every record accepted is in exactly one batch,
/// byte for byte, in id order, and the quota and its reservations add up.
@Suite struct BatchFillTests {
    static let start = ContinuousClock.now
    static let key = BatchKey(group: "g", stream: "s", perRecordAttributes: false)

    func makeAccumulator(maxRecords: Int = 4, maxBytes: Int = 100, quotaBytes: Int = 1 << 20, quotaRecords: Int = 1_000) -> BatchAccumulator {
        BatchAccumulator(limits: .init(maxRecords: maxRecords, maxBytes: maxBytes, linger: .milliseconds(10), quotaBytes: quotaBytes, quotaRecords: quotaRecords))
    }

    func makeMachine(limits: BatchAccumulator.Limits) -> DeliveryStateMachine<Int> {
        DeliveryStateMachine<Int>(
            configuration: .init(
                deliveryTimeout: .seconds(30),
                retryBackoff: ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0),
                backlogLimit: 8
            ),
            limits: limits
        )
    }

    /// The records of a block (`len(4) data` each).
    static func records(_ block: ByteBuffer) -> [String] {
        var block = block
        var records: [String] = []
        while let length = block.readInteger(as: UInt32.self) {
            records.append(block.readString(length: Int(length))!)
        }
        return records
    }

    static func fill(_ accumulator: inout BatchAccumulator, _ lines: String, key: BatchKey = key, maxSealed: Int = .max) -> BatchFill {
        let buffer = ByteBuffer(string: lines)
        var fill = accumulator.beginFill(key: key, wanted: buffer.withUnsafeReadableBytes { BatchAccumulator.wanted(delimited: $0, from: 0, delimiter: 10) }, room: maxSealed)
        buffer.withUnsafeReadableBytes { fill.fill(from: DelimitedFillSource(bytes: $0, delimiter: UInt8(ascii: "\n")), at: 0) }
        return fill
    }

    func append(_ accumulator: inout BatchAccumulator, _ text: String, id: UInt64, key: BatchKey = key) -> [SealedBatch] {
        switch accumulator.append(ByteBuffer(string: text), attributes: nil, key: key, id: id, now: Self.start, wallSeconds: 7) {
        case .accepted: return []
        case .acceptedFull: Issue.record("\(text) left a full batch open with room to seal it")
        case .acceptedAndSealed(let batch): return [batch]
        case .full, .noRoomToSeal: Issue.record("\(text) was refused")
        }
        return []
    }

    @Test func aFillWithNothingBetweenContinuesTheOpenBatch() {
        var accumulator = self.makeAccumulator()
        #expect(self.append(&accumulator, "a", id: 0).isEmpty)
        let fill = Self.fill(&accumulator, "b\n\nc\r\nd\ne\n")
        #expect(fill.records == 4 && fill.empty == 1 && fill.stop == .end)
        let sealed = accumulator.commitFill(fill, firstID: 1, tracker: nil, now: Self.start, wallSeconds: 7, accept: true)
        #expect(sealed.map { Self.records($0.block) } == [["a", "b", "c", "d"]])
        #expect(sealed.map { $0.ids.map(\.rawValue) } == [[0, 1, 2, 3]])
        let rest = accumulator.sealAll()
        #expect(rest.map { Self.records($0.block) } == [["e"]])
        #expect(rest.map { $0.ids.map(\.rawValue) } == [[4]])
        #expect(accumulator.heldRecords == 5 && accumulator.reservedRecords == 0 && accumulator.reservedBytes == 0 && accumulator.fills == 0)
    }

    /// The open batch was sealed (a flush, its linger) while the fill wrote: the room kept for it is skipped.
    @Test func anOpenBatchSealedDuringTheFillKeepsItsOwnRecords() {
        var accumulator = self.makeAccumulator()
        _ = self.append(&accumulator, "a", id: 0)
        let fill = Self.fill(&accumulator, "b\nc\n")
        let flushed = accumulator.sealAll()
        #expect(flushed.map { Self.records($0.block) } == [["a"]])
        #expect(accumulator.commitFill(fill, firstID: 1, tracker: nil, now: Self.start, wallSeconds: 7, accept: true).isEmpty)
        let rest = accumulator.sealAll()
        #expect(rest.map { Self.records($0.block) } == [["b", "c"]])
        #expect(rest.map { $0.ids.map(\.rawValue) } == [[1, 2]])
    }

    /// A record appended to the open batch while the fill wrote: that batch, older, is sealed first.
    @Test func anOpenBatchThatGrewDuringTheFillGoesFirst() {
        var accumulator = self.makeAccumulator()
        _ = self.append(&accumulator, "a", id: 0)
        let fill = Self.fill(&accumulator, "c\nd\n")
        _ = self.append(&accumulator, "b", id: 1)
        let sealed = accumulator.commitFill(fill, firstID: 2, tracker: nil, now: Self.start, wallSeconds: 7, accept: true)
        #expect(sealed.map { Self.records($0.block) } == [["a", "b"]])
        #expect(accumulator.sealAll().map { Self.records($0.block) } == [["c", "d"]])
    }

    /// The reservation keeps the quota from others until the commit, which returns what the fill did not use.
    @Test func aReservationHoldsTheQuotaUntilTheCommit() {
        var accumulator = self.makeAccumulator(maxRecords: 100, maxBytes: 1_000, quotaBytes: 100)
        _ = self.append(&accumulator, "x", id: 0)
        let fill = Self.fill(&accumulator, "0123456789\n")
        #expect(fill.records == 1)
        #expect(!accumulator.hasRoom(forBytes: 89 - 11 - 20 + 1), "the fill reserved what its bytes can take")
        _ = accumulator.commitFill(fill, firstID: 1, tracker: nil, now: Self.start, wallSeconds: 7, accept: true)
        #expect(accumulator.heldBytes == 11 + 20 && accumulator.reservedBytes == 0)
        #expect(accumulator.hasRoom(forBytes: 100 - 31))
    }

    /// A fill stops at the quota: the record it stopped before is named, and nothing past the quota was written.
    @Test func aFillStopsAtTheQuotaAndNamesTheRecord() {
        var accumulator = self.makeAccumulator(maxRecords: 100, maxBytes: 1_000, quotaRecords: 3)
        _ = self.append(&accumulator, "x", id: 0)
        let fill = Self.fill(&accumulator, "a\nbb\nccc\n")
        #expect(fill.records == 2)
        #expect(fill.stop == .quota(length: 3))
        _ = accumulator.commitFill(fill, firstID: 1, tracker: nil, now: Self.start, wallSeconds: 7, accept: true)
        #expect(accumulator.heldRecords == 3)
    }

    /// A record larger than a batch stops the fill before it, with what came before accepted.
    @Test func aRecordTooLargeForABatchStopsTheFill() {
        var accumulator = self.makeAccumulator(maxBytes: 20)
        let fill = Self.fill(&accumulator, "a\n" + String(repeating: "z", count: 17) + "\nb\n")
        #expect(fill.records == 1)
        #expect(fill.stop == .tooLarge(length: 17))
    }

    /// A refused fill (the client closed meanwhile) leaves nothing held or reserved, and its blocks are kept.
    @Test func aRefusedFillLeavesNothingBehind() {
        var accumulator = self.makeAccumulator()
        _ = self.append(&accumulator, "a", id: 0)
        let fill = Self.fill(&accumulator, "b\nc\nd\ne\nf\n")
        #expect(accumulator.commitFill(fill, firstID: 1, tracker: nil, now: Self.start, wallSeconds: 7, accept: false).isEmpty)
        #expect(accumulator.heldRecords == 1 && accumulator.heldBytes == 11)
        #expect(accumulator.reservedRecords == 0 && accumulator.reservedBytes == 0 && accumulator.fills == 0)
        #expect(accumulator.sealAll().map { Self.records($0.block) } == [["a"]])
    }

    /// The machine refuses a fill the close overtook: no ids, blocked as closed, and the quota as before.
    @Test func theMachineRefusesAFillTheCloseOvertook() {
        var machine = self.makeMachine(limits: self.makeAccumulator().limits)
        guard case .fill(var fill) = machine.beginFill(key: Self.key, wanted: (10, 100, 0)) else {
            Issue.record("the fill did not begin")
            return
        }
        ByteBuffer(string: "a\nb\n").withUnsafeReadableBytes { fill.fill(from: DelimitedFillSource(bytes: $0, delimiter: 10), at: 0) }
        _ = machine.closeRequested(now: Self.start, deadline: Self.start + .seconds(1))
        let (committed, _) = machine.commitFill(fill, now: Self.start, wallSeconds: 7)
        #expect(committed.ids.isEmpty)
        #expect(committed.blocked == .closed)
        #expect(machine.accumulator.heldRecords == 0 && machine.accumulator.reservedRecords == 0)
        #expect(machine.isFinished)
    }

    /// A sender that found no room because of a fill's reservation is resumed by its commit.
    @Test func aSenderParkedOnAReservationIsResumedByTheCommit() {
        var machine = self.makeMachine(limits: self.makeAccumulator(maxRecords: 100, maxBytes: 1_000, quotaBytes: 100).limits)
        _ = machine.append(ByteBuffer(string: "x"), attributes: nil, key: Self.key, now: Self.start, wallSeconds: 7)
        guard case .fill(var fill) = machine.beginFill(key: Self.key, wanted: (1, 200, 0)) else {
            Issue.record("the fill did not begin")
            return
        }
        #expect(machine.wait(for: .full, bytes: 10, waiter: 42) == .parked(id: 0))
        ByteBuffer(string: "a\n").withUnsafeReadableBytes { fill.fill(from: DelimitedFillSource(bytes: $0, delimiter: 10), at: 0) }
        let (committed, actions) = machine.commitFill(fill, now: Self.start, wallSeconds: 7)
        #expect(committed.ids == 1..<2)
        #expect(actions?.resumeSenders == [42])
        // With nobody parked during a fill, a commit resumes nobody.
        guard case .fill(let quiet) = machine.beginFill(key: Self.key, wanted: (0, 0, 0)) else {
            Issue.record("the fill did not begin")
            return
        }
        #expect(machine.commitFill(quiet, now: Self.start, wallSeconds: 7).1?.resumeSenders ?? [] == [])
    }

    /// With room for one more batch in the backlog and an open batch that cannot take the next record, a fill
    /// still writes: the open batch is sealed first and the records start their own batch. (The first batch, kept
    /// empty, used up the room: every turn stopped having written nothing, and a sender spun; seen as a hang of
    /// `send(lines:)` and as lines an agent never sent before its stop.)
    @Test func aFullOpenBatchDoesNotStopAFillWithRoomForOneBatch() {
        var accumulator = self.makeAccumulator(maxRecords: 100, maxBytes: 30)
        _ = self.append(&accumulator, String(repeating: "a", count: 20), id: 0)
        let fill = Self.fill(&accumulator, "bbbbbbbbbb\ncc\n", maxSealed: 1)
        #expect(fill.records >= 1)
        let sealed = accumulator.commitFill(fill, firstID: 1, tracker: nil, now: Self.start, wallSeconds: 7, accept: true)
        #expect(sealed.map { Self.records($0.block) }.first == [String(repeating: "a", count: 20)])
        let all = sealed + accumulator.sealAll()
        #expect(all.flatMap { Self.records($0.block) } == [String(repeating: "a", count: 20), "bbbbbbbbbb", "cc"].prefix(1 + fill.records).map { $0 })
        #expect(all.flatMap { $0.ids.map(\.rawValue) } == Array(0...UInt64(fill.records)))
    }

    /// A record spilled to the spool while a fill wrote goes before the fill's records: the commit refuses them
    /// (the call spills them behind), and the spilled record, read back, joins its key's batch in id order. Found
    /// by review: the fill's records were accepted with higher ids, and reading the spilled one back into their
    /// open batch stopped the process ("record ids out of order"). A sender that finds the room held by a fill's
    /// reservation alone waits for it (`.reserved`) rather than spill; the spill here stands for one that saw the
    /// buffer full.
    @Test func aRecordSpilledDuringAFillGoesFirst() throws {
        var machine = self.makeMachine(limits: self.makeAccumulator(maxRecords: 10, maxBytes: 1 << 16, quotaRecords: 3).limits)
        machine.proxiesChanged([Endpoint(host: "127.0.0.1", port: 1)])
        _ = machine.appendRun(ArraySlice([ByteBuffer(string: "r0")]), key: Self.key, now: Self.start, wallSeconds: 0)
        _ = machine.tick(now: Self.start + .milliseconds(20))
        let bodies = [ByteBuffer(string: "f2"), ByteBuffer(string: "f3")]
        guard case .fill(var fill) = bodies.withUnsafeBufferPointer({ machine.beginFill(key: Self.key, wanted: BatchAccumulator.wanted($0)) }) else {
            Issue.record("the fill did not begin")
            return
        }
        // The reservation holds the rest of the quota: a single record waits for the fill, it does not spill.
        let single = machine.append(ByteBuffer(string: "s1"), attributes: nil, key: Self.key, now: Self.start, wallSeconds: 0).0
        #expect(single == .blocked(.reserved))
        let reserved = machine.reserveSpill(count: 1, key: Self.key, observer: .none)
        let (seq, ids) = try #require(reserved)
        _ = machine.spillWritten(seq, at: SpillLocation(segment: 1, offset: 0, length: 100), now: Self.start)
        bodies.withUnsafeBufferPointer { fill.fill(from: BodiesFillSource(bodies: $0), at: 0) }
        let (committed, _) = machine.commitFill(fill, now: Self.start, wallSeconds: 0)
        #expect(committed.refused && committed.ids.isEmpty && committed.blocked == .full)
        #expect(machine.accumulator.reservedRecords == 0 && machine.accumulator.heldRecords == 1)
        // The first record is acked; the spilled one is read back into memory.
        guard var job = machine.nextJob(now: Self.start).next?.job else {
            Issue.record("no job")
            return
        }
        job.frame = ByteBuffer(string: "frame")
        _ = machine.submitted(job, to: Endpoint(host: "127.0.0.1", port: 1), now: Self.start, spentBlock: nil)
        _ = machine.completed(jobID: job.id, outcome: .acked(proxyIP: nil), now: Self.start)
        let drained = machine.drainSpill(
            seq, [SpoolRecord(id: ids.lowerBound, key: Self.key, attributes: nil, body: ByteBuffer(string: "s1"))][...], now: Self.start, wallSeconds: 0
        )
        #expect(drained.appended == 1)
        #expect(machine.accumulator.sealAll().map { Self.records($0.block) } == [["s1"]])
    }

    /// Random schedules: fills of random lines (empty ones, CRLF ends, lines longer than a batch) begun, written
    /// and committed or refused at random steps, with single appends, other fills, seals by age and all at once,
    /// and acks that release quota between. After every step the quota, the reservations and the open batches add
    /// up; at the end every accepted record is in exactly one batch, byte for byte, and each key's batches are in
    /// id order.
    @Test(arguments: Array(UInt64(1)...60)) func randomSchedulesOfFillsKeepEveryRecordOnce(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let keys = [Self.key, BatchKey(group: "g", stream: "t", perRecordAttributes: false)]
        let maxBytes = Int.random(in: 24...120, using: &random)
        // Tight quotas make fills stop and senders wait; loose ones let appends and fills interleave on one batch.
        let tight = seed % 2 == 0
        let quotaRecords = tight ? Int.random(in: 3...40, using: &random) : 1_000
        let quotaBytes = tight ? Int.random(in: 40...600, using: &random) : 1 << 20
        var accumulator = self.makeAccumulator(maxRecords: Int.random(in: 1...6, using: &random), maxBytes: maxBytes, quotaBytes: quotaBytes, quotaRecords: quotaRecords)
        var now = Self.start
        var nextID: UInt64 = 0
        var nextToken = 0
        /// What each accepted id must hold.
        var expected: [UInt64: (key: BatchKey, body: String)] = [:]
        var sealed: [SealedBatch] = []
        /// Every batch sealed, in the order sealed: its key, ids and records (read when sealed: a released
        /// batch's block is recycled).
        var log: [(key: BatchKey, ids: [UInt64], records: [String], count: Int)] = []
        func seal(_ batches: [SealedBatch]) {
            for batch in batches { log.append((batch.key, batch.ids.map(\.rawValue), Self.records(batch.block), batch.recordCount)) }
            sealed += batches
        }
        struct Pending {
            var fill: BatchFill
            var bodies: [String]
            var key: BatchKey
            var written: Bool
            var lines: String
        }
        var pending: [Pending] = []
        func body() -> String {
            nextToken += 1
            let length = Int.random(in: 0...(maxBytes / 2), using: &random)
            return "\(nextToken)" + String(repeating: "-", count: length)
        }
        func checkQuota(_ step: Int) {
            let open = accumulator.openRecords
            let inSealed = sealed.reduce(0) { $0 + $1.recordCount }
            #expect(accumulator.heldRecords == open + inSealed, "seed \(seed) step \(step): held records")
            #expect(accumulator.reservedRecords == pending.reduce(0) { $0 + $1.fill.reservedRecords }, "seed \(seed) step \(step)")
            #expect(accumulator.reservedBytes == pending.reduce(0) { $0 + $1.fill.reservedBytes }, "seed \(seed) step \(step)")
            #expect(accumulator.fills == pending.count, "seed \(seed) step \(step)")
            #expect(accumulator.heldRecords <= max(quotaRecords, 1), "seed \(seed) step \(step): record quota")
            #expect(accumulator.heldBytes <= quotaBytes || accumulator.heldRecords == 1, "seed \(seed) step \(step): byte quota")
        }
        for step in 0..<400 {
            let key = keys[Int.random(in: 0..<keys.count, using: &random)]
            switch Int.random(in: 0..<12, using: &random) {
            case 0, 1, 2:
                // A fill begins; its lines are written now or at a later step.
                var bodies: [String] = []
                var lines = ""
                for _ in 0..<Int.random(in: 0...8, using: &random) {
                    switch Int.random(in: 0..<10, using: &random) {
                    case 0: lines += "\n"
                    case 1:
                        let text = body()
                        bodies.append(text)
                        lines += text + "\r\n"
                    case 2:
                        // Longer than any batch: the fill stops before it.
                        let text = "\(nextToken)" + String(repeating: "L", count: maxBytes)
                        nextToken += 1
                        bodies.append(text)
                        lines += text + "\n"
                    default:
                        let text = body()
                        bodies.append(text)
                        lines += text + "\n"
                    }
                }
                let maxSealed = Int.random(in: 1...4, using: &random)
                let wanted = ByteBuffer(string: lines).withUnsafeReadableBytes { BatchAccumulator.wanted(delimited: $0, from: 0, delimiter: 10) }
                let fill = accumulator.beginFill(key: key, wanted: wanted, room: maxSealed)
                pending.append(Pending(fill: fill, bodies: bodies, key: key, written: false, lines: lines))
            case 3, 4:
                // A pending fill writes its lines (outside the lock: nothing of the accumulator is read).
                guard let index = pending.indices.filter({ !pending[$0].written }).randomElement(using: &random) else { break }
                let lines = ByteBuffer(string: pending[index].lines)
                lines.withUnsafeReadableBytes { pending[index].fill.fill(from: DelimitedFillSource(bytes: $0, delimiter: 10), at: 0) }
                pending[index].written = true
            case 5, 6:
                // A written fill commits; now and then the client closed meanwhile and it is refused.
                guard let index = pending.indices.filter({ pending[$0].written }).randomElement(using: &random) else { break }
                let entry = pending.remove(at: index)
                let accept = Int.random(in: 0..<8, using: &random) != 0
                let taken = entry.fill.records
                // The records taken are the first non-empty ones, in order.
                if accept {
                    for (offset, text) in entry.bodies.prefix(taken).enumerated() {
                        expected[nextID + UInt64(offset)] = (entry.key, text)
                    }
                }
                seal(accumulator.commitFill(entry.fill, firstID: nextID, tracker: nil, now: now, wallSeconds: 7, accept: accept))
                if accept { nextID += UInt64(taken) }
            case 7, 8:
                let text = body()
                guard text.utf8.count + 4 <= maxBytes, accumulator.hasRoom(forBytes: text.utf8.count + BatchAccumulator.recordOverhead) else { break }
                switch accumulator.append(ByteBuffer(string: text), attributes: nil, key: key, id: nextID, now: now, wallSeconds: 7) {
                case .accepted: break
                case .acceptedFull: Issue.record("seed \(seed) step \(step): a full batch left open")
                case .acceptedAndSealed(let batch): seal([batch])
                case .full, .noRoomToSeal: Issue.record("seed \(seed) step \(step): refused with room")
                }
                expected[nextID] = (key, text)
                nextID += 1
            case 9:
                now += .milliseconds(Int64.random(in: 0...15, using: &random))
                seal(accumulator.sealExpired(now: now))
            case 10:
                seal(accumulator.sealAll())
            default:
                // The oldest sealed batch is acked: its quota is released and its block recycled.
                guard !sealed.isEmpty else { break }
                var batch = sealed.removeFirst()
                accumulator.release(bytes: batch.chargedBytes, records: batch.recordCount)
                let block = batch.block
                batch.block = ByteBuffer()
                accumulator.recycle(block)
            }
            checkQuota(step)
        }
        for var entry in pending {
            if !entry.written {
                let lines = ByteBuffer(string: entry.lines)
                lines.withUnsafeReadableBytes { entry.fill.fill(from: DelimitedFillSource(bytes: $0, delimiter: 10), at: 0) }
            }
            for (offset, text) in entry.bodies.prefix(entry.fill.records).enumerated() { expected[nextID + UInt64(offset)] = (entry.key, text) }
            let taken = entry.fill.records
            seal(accumulator.commitFill(entry.fill, firstID: nextID, tracker: nil, now: now, wallSeconds: 7, accept: true))
            nextID += UInt64(taken)
        }
        pending = []
        seal(accumulator.sealAll())
        checkQuota(-1)
        var seen: [UInt64: Int] = [:]
        var lastID: [BatchKey: UInt64] = [:]
        for batch in log {
            #expect(batch.records.count == batch.count && batch.ids.count == batch.count, "seed \(seed)")
            for (id, record) in zip(batch.ids, batch.records) {
                seen[id, default: 0] += 1
                #expect(expected[id]?.body == record, "seed \(seed): id \(id)")
                #expect(expected[id]?.key == batch.key, "seed \(seed): id \(id) in its key's batch")
            }
            if let first = batch.ids.first {
                #expect(lastID[batch.key].map { $0 < first } ?? true, "seed \(seed): \(batch.key.stream)'s batches in id order")
                lastID[batch.key] = batch.ids.last
            }
        }
        #expect(seen.count == expected.count, "seed \(seed): every accepted record in a batch")
        #expect(seen.values.allSatisfy { $0 == 1 }, "seed \(seed): no record twice")
    }
}
