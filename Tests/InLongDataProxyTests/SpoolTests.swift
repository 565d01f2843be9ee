import CInLongCRC32C
import Foundation
import InLongWire
import NIOCore
import Synchronization
import Testing

@testable import InLongDataProxy

/// The spool's record format (torn tails cut, corruption found), its segment bookkeeping (a segment goes only
/// once every record in it ended, whatever order writes and ends come in) and its directory lock.
@Suite struct SpoolTests {
    static func record(_ id: UInt64, _ random: inout SplitMix64) -> SpoolRecord {
        let length = Int(random.next() % 200) + 1
        let body = ByteBuffer(bytes: (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        let key = BatchKey(group: "g\(random.next() % 3)", stream: "s", perRecordAttributes: random.next() % 2 == 0, messageAttributes: random.next() % 2 == 0 ? "" : "k=v")
        return SpoolRecord(id: id, key: key, attributes: key.perRecordAttributes ? "dt=\(id)" : nil, body: body)
    }

    @Test func aRunOfBodiesEncodesAsItsRecordsDo() {
        var random = SplitMix64(seed: 5)
        let key = BatchKey(group: "g", stream: "s", perRecordAttributes: false, messageAttributes: "a=b")
        let bodies = (0..<40).map { index in ByteBuffer(bytes: (0..<(index * 7 % 150)).map { _ in UInt8(truncatingIfNeeded: random.next()) }) }
        var ids = DataProxyRecordIDs(100..<120)
        ids.formUnion(DataProxyRecordIDs(130..<150))
        var run = SpoolRecord.Encoder()
        run.appendRun(ids: ids, key: key, bodies: bodies[...])
        var single = ByteBuffer()
        for (body, id) in zip(bodies, ids) { SpoolRecord(id: id.rawValue, key: key, attributes: nil, body: body).encode(into: &single) }
        #expect(run.buffer == single)
        #expect(SpoolRecord.scan(run.buffer).records.map(\.id) == ids.map(\.rawValue))
    }

    @Test func recordsRoundTrip() {
        var random = SplitMix64(seed: 1)
        let records = (0..<50).map { Self.record(UInt64($0), &random) }
        var buffer = ByteBuffer()
        for record in records { record.encode(into: &buffer) }
        let scan = SpoolRecord.scan(buffer)
        #expect(scan.records == records)
        #expect(scan.stop == nil)
        #expect(scan.validLength == buffer.readableBytes)
    }

    /// Every cut of a segment keeps exactly the whole records before it; every flipped byte is found (as
    /// corruption, or as a torn tail when it lands in the last record's length), and the records before it kept.
    @Test(arguments: 0..<30) func tornAndCorruptSegmentsKeepTheRecordsBefore(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let records = (0..<Int(random.next() % 8) + 1).map { Self.record(UInt64($0), &random) }
        var buffer = ByteBuffer()
        var ends: [Int] = []
        for record in records {
            record.encode(into: &buffer)
            ends.append(buffer.readableBytes)
        }
        let cut = Int(random.next() % UInt64(buffer.readableBytes))
        let torn = SpoolRecord.scan(buffer.getSlice(at: 0, length: cut)!)
        let whole = ends.filter { $0 <= cut }.count
        #expect(torn.records == Array(records.prefix(whole)))
        #expect(torn.validLength == (whole == 0 ? 0 : ends[whole - 1]))
        #expect(torn.stop == (cut == torn.validLength ? nil : .tornTail))

        var damaged = buffer
        let position = Int(random.next() % UInt64(buffer.readableBytes))
        damaged.setInteger(damaged.getInteger(at: position, as: UInt8.self)! ^ UInt8(1 << (random.next() % 8)), at: position)
        let scan = SpoolRecord.scan(damaged)
        let intact = ends.filter { $0 <= position }.count
        #expect(scan.records == Array(records.prefix(intact)), "seed \(seed): a damaged record was taken")
        #expect(scan.stop != nil, "seed \(seed): damage at \(position) went unnoticed")
    }

    @Test func idRunsMatchASetOfIDs() {
        var random = SplitMix64(seed: 7)
        var runs = IDRuns()
        var model = Set<UInt64>()
        for _ in 0..<2_000 {
            let start = random.next() % 300
            let run = start..<start + random.next() % 20
            if random.next() % 3 == 0 {
                runs.remove(run)
                model.subtract(run)
            } else {
                runs.insert(run)
                model.formUnion(run)
            }
            #expect(Set(runs.runs.flatMap { $0 }) == model)
            // Ascending, disjoint, not adjacent.
            #expect(zip(runs.runs, runs.runs.dropFirst()).allSatisfy { $0.upperBound < $1.lowerBound })
            let probe = random.next() % 300
            let probeRun = probe..<probe + random.next() % 10
            #expect(runs.contains(probeRun) == probeRun.allSatisfy(model.contains))
            #expect(runs.intersects(probeRun) == probeRun.contains(where: model.contains))
        }
    }

    /// Seeded schedules of calls writing runs of ids (out of id order, as concurrent callers do), segment
    /// rotations, and ends (some before the write): a segment is deleted only when sealed and everything in it
    /// ended, and once every record ended and the spool closed, nothing is left.
    @Test(arguments: 0..<100) func aSegmentGoesOnlyOnceEverythingInItEnded(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var state = SpoolState(segmentBytes: 1_000, firstSegment: 1)
        var pending: [Range<UInt64>] = []  // accepted, not yet written
        var written: [Int: Set<UInt64>] = [:]  // segment → ids
        var ended = Set<UInt64>()
        var nextID: UInt64 = 0
        var deleted = Set<Int>()

        func check(_ numbers: [Int]) {
            for number in numbers {
                #expect(deleted.insert(number).inserted, "seed \(seed): segment \(number) deleted twice")
                #expect(written[number, default: []].isSubset(of: ended), "seed \(seed): segment \(number) deleted with records not ended")
            }
        }

        for _ in 0..<400 {
            switch random.next() % 3 {
            case 0:
                let count = random.next() % 10 + 1
                pending.append(nextID..<nextID + count)
                nextID += count
            case 1 where !pending.isEmpty:
                let run = pending.remove(at: Int(random.next() % UInt64(pending.count)))
                let bytes = run.count * 50
                let (number, _, delete) = state.segment(forWriteOf: bytes)
                check(delete)
                state.wrote([run], bytes: bytes, to: number)
                written[number, default: []].formUnion(run)
            case 2 where nextID > 0:
                // Each record ends once (some before their write).
                let start = random.next() % nextID
                let fresh = (start..<min(nextID, start + random.next() % 15 + 1)).filter { !ended.contains($0) }
                ended.formUnion(fresh)
                check(state.ended(fresh.map { $0..<$0 + 1 }))
            default:
                break
            }
            #expect(state.segments.allSatisfy { !deleted.contains($0.number) })
        }
        // Everything is written and ends; closing seals the last segment.
        for run in pending {
            let (number, _, delete) = state.segment(forWriteOf: run.count * 50)
            check(delete)
            state.wrote([run], bytes: run.count * 50, to: number)
            written[number, default: []].formUnion(run)
        }
        let rest = (0..<nextID).filter { !ended.contains($0) }
        ended.formUnion(rest)
        check(state.ended(rest.map { $0..<$0 + 1 }))
        check(state.sealCurrent())
        #expect(state.segments.isEmpty, "seed \(seed): segments left after everything ended")
        #expect(state.ended.isEmpty, "seed \(seed): ended ids kept after their segments went")
    }

    @Test func aSecondClientCannotTakeTheSpool() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try Spool(configuration: .init(directory: directory))
        #expect(throws: DataProxyError.self) { try Spool(configuration: .init(directory: directory)) }
        do {
            _ = try Spool(configuration: .init(directory: directory))
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(error.detail.contains("in use by another client (process \(getpid()))"))
        }
        first.close()
        // Released: the next one takes it.
        let second = try Spool(configuration: .init(directory: directory))
        second.close()
    }

    @Test func segmentsAreDeletedOnceAckedAndLeftoversListedForTheNextClient() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = DataProxyClient.Configuration.Spool(directory: directory)
        configuration.segmentBytes = 1_000
        var random = SplitMix64(seed: 3)
        let spool = try Spool(configuration: configuration)
        let records = (0..<100).map { Self.record(UInt64($0), &random) }
        for chunk in stride(from: 0, to: 100, by: 10) { try spool.write(records[chunk..<chunk + 10]) }
        #expect(spool.statistics.segments > 1)
        // The first half ends: the segments holding only those go.
        spool.ended(DataProxyRecordIDs(0..<50))
        let segmentFiles = { try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".spool") }.sorted() }
        let left = try segmentFiles()
        #expect(left.count == spool.statistics.segments)
        spool.close()
        // The next client finds what is left, and reads every record that did not end.
        let next = try Spool(configuration: configuration)
        #expect(next.leftovers.map { ($0 as NSString).lastPathComponent } == left)
        let replayed = try next.leftovers.flatMap { try Spool.read(segment: $0).records }
        #expect(Set(records[50...].map(\.id)).isSubset(of: Set(replayed.map(\.id))))
        #expect(replayed.allSatisfy { records[Int($0.id)] == $0 })
        next.close()
    }
}

/// CRC-32C against its published check value and a bit-at-a-time reference, at every length and alignment.
@Suite struct CRC32CTests {
    static func reference(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }

    @Test func matchesTheCheckValueAndTheReference() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        var random = SplitMix64(seed: 11)
        let bytes = (0..<300).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        for start in 0..<9 {
            for end in stride(from: start, through: bytes.count, by: 7) {
                let slice = Array(bytes[start..<end])
                #expect(CRC32C.checksum(slice) == Self.reference(slice), "bytes \(start)..<\(end)")
                let software = slice.withUnsafeBytes { inlong_crc32c_software(0, $0.baseAddress, $0.count) }
                #expect(software == Self.reference(slice), "bytes \(start)..<\(end), without the instruction")
            }
        }
    }
}

/// The gate `flush()` waits behind until the spool's leftovers were appended again: seeded schedules of waiters,
/// cancellations and the opening; every waiter returns, and one returns before the opening only if cancelled.
@Suite struct SpoolReplayGateTests {
    @Test(arguments: 0..<50) func everyWaiterReturnsAndOnlyCancelledOnesBeforeTheOpening(seed: UInt64) async {
        var random = SplitMix64(seed: seed)
        let gate = SpoolReplayGate(open: false)
        let opened = OpenedFlag()
        var waiters: [(task: Task<Bool, Never>, cancelled: Bool)] = []
        for _ in 0..<20 {
            switch random.next() % 4 {
            case 0, 1:
                // The waiter records whether the gate was open when it returned.
                waiters.append((Task { await gate.wait(); return opened.isSet }, false))
            case 2 where !waiters.isEmpty:
                let index = Int(random.next() % UInt64(waiters.count))
                waiters[index].task.cancel()
                waiters[index].cancelled = true
            default:
                await Task.yield()
            }
        }
        opened.set()
        gate.open()
        for (task, cancelled) in waiters {
            let sawOpen = await task.value
            #expect(sawOpen || cancelled, "seed \(seed): a waiter that was not cancelled returned before the opening")
        }
        // After the opening, waiting returns at once.
        await gate.wait()
    }
}

final class OpenedFlag: Sendable {
    private let value = Atomic(false)
    func set() { self.value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { self.value.load(ordering: .sequentiallyConsistent) }
}

// Ways to write records as values, for these tests (the client writes from its own append paths).

extension Spool {
    /// Writes whole records.
    func write(_ records: some Collection<SpoolRecord>) throws(DataProxyError) {
        var ids = DataProxyRecordIDs()
        for record in records { ids.append(record.id) }
        let array = Array(records)
        try self.write(ids: ids) { (array[$0].body, array[$0].key, array[$0].attributes) }
    }
}

extension SpoolRecord {
    func encode(into buffer: inout ByteBuffer) {
        var encoder = Encoder(buffer: buffer)
        encoder.append(id: self.id, key: self.key, attributes: self.attributes, body: self.body)
        buffer = encoder.buffer
    }
}

extension CRC32C {
    static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        Array(bytes).withUnsafeBytes { Self.checksum($0) }
    }
}
