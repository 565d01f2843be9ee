import InLongWire
import NIOCore
import Synchronization
import Testing

@testable import InLongDataProxy

/// Batching and quota, with the time given.
@Suite struct BatchAccumulatorTests {
    static let start = ContinuousClock.now
    static let key = BatchKey(group: "g", stream: "s", perRecordAttributes: false)
    static let other = BatchKey(group: "g", stream: "t", perRecordAttributes: false)

    func makeAccumulator(maxRecords: Int = 3, maxBytes: Int = 1000, quotaBytes: Int = 1 << 20, quotaRecords: Int = 100) -> BatchAccumulator {
        BatchAccumulator(limits: .init(maxRecords: maxRecords, maxBytes: maxBytes, linger: .milliseconds(10), quotaBytes: quotaBytes, quotaRecords: quotaRecords))
    }

    func body(_ length: Int) -> ByteBuffer { ByteBuffer(repeating: UInt8(ascii: "x"), count: length) }

    /// Ids for appended records, in order.
    final class IDs: Sendable {
        let next = Mutex<UInt64>(0)
    }
    let ids = IDs()

    func append(_ accumulator: inout BatchAccumulator, _ length: Int, key: BatchKey = key) -> BatchAccumulator.AppendResult {
        let id = self.ids.next.withLock { id in
            defer { id += 1 }
            return id
        }
        return accumulator.append(self.body(length), attributes: nil, key: key, id: id, now: Self.start, wallSeconds: 7)
    }

    func sealedCount(_ result: BatchAccumulator.AppendResult) -> Int? {
        if case .acceptedAndSealed(let batch) = result { return batch.recordCount }
        return nil
    }

    @Test func aBatchIsSealedAtItsRecordCount() {
        var accumulator = self.makeAccumulator()
        #expect(self.sealedCount(self.append(&accumulator, 10)) == nil)
        #expect(self.sealedCount(self.append(&accumulator, 10)) == nil)
        #expect(self.sealedCount(self.append(&accumulator, 10)) == 3)
        #expect(accumulator.openRecords == 0)
        #expect(accumulator.heldRecords == 3)
        #expect(accumulator.heldBytes == 3 * (10 + BatchAccumulator.recordOverhead))
    }

    /// A record's own attributes are held and sent with it: they weigh against the byte quota too.
    @Test func perRecordAttributesCountAgainstTheByteQuota() {
        let key = BatchKey(group: "g", stream: "s", perRecordAttributes: true)
        let attributes = String(repeating: "k=v&", count: 50)
        let charge = 10 + 4 + attributes.utf8.count + BatchAccumulator.recordOverhead
        var accumulator = self.makeAccumulator(maxRecords: 100, maxBytes: 10_000, quotaBytes: 2 * charge)
        for id in UInt64(0)..<2 {
            let result = accumulator.append(self.body(10), attributes: attributes, key: key, id: id, now: Self.start, wallSeconds: 7)
            guard case .accepted = result else {
                Issue.record("record \(id) was not accepted: \(result)")
                return
            }
        }
        #expect(accumulator.heldBytes == 2 * charge)
        // Without the attributes counted, a third would still have fit the quota.
        guard case .full = accumulator.append(self.body(10), attributes: attributes, key: key, id: 2, now: Self.start, wallSeconds: 7) else {
            Issue.record("a third record was accepted past the quota")
            return
        }
    }

    @Test func aRecordThatDoesNotFitSealsThePreviousBatch() {
        var accumulator = self.makeAccumulator(maxRecords: 100, maxBytes: 100)
        #expect(self.sealedCount(self.append(&accumulator, 60)) == nil)
        #expect(self.sealedCount(self.append(&accumulator, 60)) == 1)
        #expect(accumulator.openRecords == 1)
    }

    @Test func streamsBatchApart() {
        var accumulator = self.makeAccumulator()
        _ = self.append(&accumulator, 10)
        _ = self.append(&accumulator, 10, key: Self.other)
        let sealed = accumulator.sealAll()
        #expect(sealed.count == 2)
        #expect(Set(sealed.map(\.key.stream)) == ["s", "t"])
        #expect(sealed.allSatisfy { $0.recordCount == 1 && $0.dataTime == 7 })
    }

    @Test func theBlockHoldsTheRecordsInTheWireLayout() throws {
        var accumulator = self.makeAccumulator()
        _ = accumulator.appendRun([ByteBuffer(string: "a"), ByteBuffer(string: "bc")], key: Self.key, firstID: 0, now: Self.start, wallSeconds: 0)
        let batch = try #require(accumulator.sealAll().first)
        let records = try InLongRecordBlock.decode(batch.block, extendedField: [])
        #expect(records.map { String(buffer: $0.data) } == ["a", "bc"])
    }

    @Test func aFullQuotaRefusesUntilReleased() {
        var accumulator = self.makeAccumulator(quotaRecords: 2)
        _ = self.append(&accumulator, 10)
        _ = self.append(&accumulator, 10)
        guard case .full = self.append(&accumulator, 10) else {
            Issue.record("a record past the quota was accepted")
            return
        }
        #expect(accumulator.hasRoom(forBytes: 20) == false)
        accumulator.release(bytes: 20, records: 1)
        #expect(accumulator.hasRoom(forBytes: 20))
    }

    @Test func anEmptyClientHasRoomForARecordLargerThanTheQuota() {
        let accumulator = self.makeAccumulator(quotaBytes: 10)
        #expect(accumulator.hasRoom(forBytes: 1000))
    }

    @Test func aRunStopsAtTheQuotaAndAtTheSealedLimit() {
        var quota = self.makeAccumulator(quotaRecords: 4)
        let byQuota = quota.appendRun(ArraySlice((0..<10).map { _ in self.body(5) }), key: Self.key, firstID: 0, now: Self.start, wallSeconds: 0)
        #expect(byQuota.appended == 4)
        #expect(byQuota.sealed.map(\.recordCount) == [3])
        var sealedLimit = self.makeAccumulator()
        let bySealed = sealedLimit.appendRun(ArraySlice((0..<10).map { _ in self.body(5) }), key: Self.key, firstID: 0, now: Self.start, wallSeconds: 0, maxSealed: 2)
        #expect(bySealed.appended == 6)
        #expect(bySealed.sealed.map(\.recordCount) == [3, 3])
        #expect(sealedLimit.openRecords == 0)
    }

    @Test func aRunContinuesTheOpenBatch() {
        var accumulator = self.makeAccumulator()
        _ = self.append(&accumulator, 5)
        let run = accumulator.appendRun([self.body(5), self.body(5), self.body(5)], key: Self.key, firstID: 1, now: Self.start, wallSeconds: 0)
        #expect(run.sealed.map(\.recordCount) == [3])
        #expect(accumulator.openRecords == 1)
    }

    @Test func batchesAreSealedAfterTheirLinger() {
        var accumulator = self.makeAccumulator()
        _ = self.append(&accumulator, 5)
        #expect(accumulator.nextDeadline == Self.start + .milliseconds(10))
        #expect(accumulator.sealExpired(now: Self.start + .milliseconds(9)).isEmpty)
        #expect(accumulator.sealExpired(now: Self.start + .milliseconds(10)).map(\.recordCount) == [1])
        #expect(accumulator.nextDeadline == nil)
    }

    @Test func aRecycledBlockIsReusedEmpty() throws {
        var accumulator = self.makeAccumulator(maxRecords: 1)
        guard case .acceptedAndSealed(let batch) = self.append(&accumulator, 5) else {
            Issue.record("not sealed")
            return
        }
        accumulator.recycle(batch.block)
        guard case .acceptedAndSealed(let next) = self.append(&accumulator, 7) else {
            Issue.record("not sealed")
            return
        }
        #expect(next.block.readableBytes == 4 + 7)
        #expect(next.block.capacity >= 1000)
    }

    /// The body lengths of a block's records (`len(4) data` each).
    func recordLengths(_ block: ByteBuffer) -> [Int] {
        var block = block
        var lengths: [Int] = []
        while let length = block.readInteger(as: UInt32.self) {
            lengths.append(Int(length))
            block.moveReaderIndex(forwardBy: Int(length))
        }
        return lengths
    }

    /// The open batches remember the key last appended to and its place: random appends to three keys, one by one
    /// and in runs, mixed with seals by count, by size, by age and all at once (each of which moves or removes
    /// batches), must still put every record in a batch of its own key, once, and in order. Each key's records
    /// have a length of their own, so that a record in the wrong batch shows.
    @Test(arguments: [1, 2, 3] as [UInt64]) func randomAppendsToSeveralKeysLandInTheirOwnBatches(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let keys = [Self.key, Self.other, BatchKey(group: "h", stream: "s", perRecordAttributes: false)]
        let lengths = [10, 20, 30]
        var accumulator = self.makeAccumulator(maxRecords: 7, maxBytes: 200, quotaRecords: 1_000_000)
        var now = Self.start
        var nextID: UInt64 = 0
        var sealed: [SealedBatch] = []
        func take(_ result: BatchAccumulator.AppendResult) {
            if case .acceptedAndSealed(let batch) = result { sealed.append(batch) }
        }
        for _ in 0..<2_000 {
            let which = Int.random(in: 0..<keys.count, using: &random)
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:
                take(accumulator.append(self.body(lengths[which]), attributes: nil, key: keys[which], id: nextID, now: now, wallSeconds: 7))
                nextID += 1
            case 6, 7:
                let bodies = Array(repeating: self.body(lengths[which]), count: Int.random(in: 1...9, using: &random))
                let run = accumulator.appendRun(bodies[...], key: keys[which], firstID: nextID, now: now, wallSeconds: 7)
                #expect(run.appended == bodies.count, "seed \(seed)")
                nextID += UInt64(run.appended)
                sealed += run.sealed
            case 8:
                now += .milliseconds(Int64.random(in: 0...15, using: &random))
                sealed += accumulator.sealExpired(now: now)
            default:
                sealed += accumulator.sealAll()
            }
        }
        sealed += accumulator.sealAll()
        var seen: [UInt64] = []
        var perKey: [BatchKey: [UInt64]] = [:]
        for batch in sealed {
            let length = lengths[keys.firstIndex(of: batch.key)!]
            #expect(self.recordLengths(batch.block) == Array(repeating: length, count: batch.recordCount), "seed \(seed)")
            #expect(batch.ids.count == batch.recordCount, "seed \(seed)")
            seen += batch.ids.map(\.rawValue)
            perKey[batch.key, default: []] += batch.ids.map(\.rawValue)
        }
        #expect(seen.sorted() == Array(0..<nextID), "seed \(seed): every record in exactly one batch")
        for (key, ids) in perKey { #expect(ids == ids.sorted(), "seed \(seed): \(key.stream) in order") }
        #expect(accumulator.openRecords == 0)
    }

    /// A batch's creation instant is held as an offset, and read back as the same instant.
    @Test func aFixedInstantReadsBackTheSameInstant() {
        let instants = [Self.start, Self.start + .nanoseconds(1), Self.start - .seconds(3_600), Self.start + .seconds(86_400)]
        for instant in instants {
            #expect(FixedInstant(instant).instant == instant)
        }
        #expect(FixedInstant(instants[2]) < FixedInstant(instants[0]))
        #expect(FixedInstant(instants[0]) < FixedInstant(instants[1]))
    }
}

/// Ack latency quantiles are real values, not bucket bounds.
@Suite struct LatencyHistogramTests {
    @Test func quantilesOfAKnownDistributionAreExact() throws {
        var histogram = LatencyHistogram()
        #expect(histogram.value(at: 0.5) == nil)
        // 1 ms to 1,000 ms, one each.
        for milliseconds in 1...1000 { histogram.record(.milliseconds(milliseconds)) }
        let p50 = try #require(histogram.value(at: 0.5))
        let p99 = try #require(histogram.value(at: 0.99))
        // Within HdrHistogram's 1 % resolution (two digits) of 500 ms and 990 ms; bucket bounds would say 512 ms
        // and 1,024 ms.
        #expect((Duration.microseconds(495_000)...Duration.microseconds(505_000)).contains(p50), "\(p50)")
        #expect((Duration.microseconds(980_100)...Duration.microseconds(999_900)).contains(p99), "\(p99)")
    }
}
