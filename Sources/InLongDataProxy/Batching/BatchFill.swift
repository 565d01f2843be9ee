import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Records of one key written into batches outside the client's lock, so that a sender of many records never holds
/// the lock the dispatcher and the encoders take per batch: ``BatchAccumulator/beginFill(key:wanted:room:)``
/// reserves quota and hands out blocks (under the lock), ``fill(from:)`` writes the records into them in a tight
/// loop over raw bytes (no lock, no exclusivity checks, no retains per record), and
/// ``BatchAccumulator/commitFill(_:firstID:tracker:now:wallSeconds:accept:)`` accepts them (under the lock).
///
/// Records are accepted at the commit: a flush or a close between the two steps does not wait for them, and a
/// close refuses them. The first batch leaves room in front for the key's open batch as it was at the beginning,
/// and takes its place at the commit when it has not changed since (a copy of the open batch's bytes); otherwise
/// that room is skipped, and the open batch, older, is sealed before the filled ones.
struct BatchFill {
    /// Why a fill stopped before the end of its records.
    enum Stop: Equatable {
        /// Every record was written.
        case end
        /// The quota has no room for the next record (its body length).
        case quota(length: Int)
        /// The fill's reservation, smaller than the free quota, is used up: the call goes on with another turn.
        case turnOver
        /// The next record does not fit any batch (its body length).
        case tooLarge(length: Int)
        /// The fill sealed as many batches as the dispatcher's backlog allows (the next record's body length).
        case backlogged(length: Int)
    }

    /// One batch the fill wrote.
    struct Batch {
        /// The records written; for the first batch, after the room kept for the open batch.
        var block: ByteBuffer
        var records = 0
        var charged = 0
    }

    /// The key's open batch at the beginning: the first batch keeps room for its bytes and records.
    struct OpenBatchSnapshot {
        var generation: UInt64
        var records: Int
        var bytes: Int
    }

    let key: BatchKey
    /// The batch limits at the beginning.
    let maxBytes: Int
    let maxRecords: Int
    /// The quota reserved for the fill: no record goes past it.
    let reservedRecords: Int
    let reservedBytes: Int
    /// Whether the reserved records (bytes) are the turn's cap, less than the quota had free: running out of them
    /// means only that the turn is over, not that the quota is used up. A capped side holds at least one record.
    let recordsCapped: Bool
    let bytesCapped: Bool
    /// The client held nothing at the beginning: one record goes in whatever its size (as a single append would).
    let oneRecordAlways: Bool
    /// Batches the fill may seal: what it reserved of the room in the dispatcher's backlog.
    let maxSealed: Int
    /// Whether `maxSealed` is what the reserved quota fills, less than the backlog had room for: reaching it means
    /// only that the turn is over.
    let sealsCapped: Bool
    let open: OpenBatchSnapshot?
    /// Blocks to write into (spare ones of the accumulator); more are allocated when they run out.
    var spareBlocks: [ByteBuffer]

    /// The key's open batch could not take the first record: the first batch kept no room for it.
    private(set) var openSkipped = false
    /// Whether the first batch holds room for the open batch's bytes (the commit copies them there, or the new
    /// records behind them).
    var keptRoomForOpen: Bool { self.open != nil && !self.openSkipped }

    /// What was written, in order.
    private(set) var batches: [Batch] = []
    private(set) var records = 0
    private(set) var charged = 0
    /// The written records' body bytes.
    private(set) var bodyBytes = 0
    /// Empty records left out (they take no id).
    private(set) var empty = 0
    /// Where the next record starts (a byte offset of delimited records, an index of bodies).
    private(set) var cursor = 0
    private(set) var stop = Stop.end

    init(
        key: BatchKey,
        maxBytes: Int,
        maxRecords: Int,
        reservedRecords: Int,
        reservedBytes: Int,
        recordsCapped: Bool,
        bytesCapped: Bool,
        oneRecordAlways: Bool,
        maxSealed: Int,
        sealsCapped: Bool,
        open: OpenBatchSnapshot?,
        spareBlocks: [ByteBuffer]
    ) {
        self.key = key
        self.maxBytes = maxBytes
        self.maxRecords = maxRecords
        self.reservedRecords = reservedRecords
        self.reservedBytes = reservedBytes
        self.recordsCapped = recordsCapped
        self.bytesCapped = bytesCapped
        self.oneRecordAlways = oneRecordAlways
        self.maxSealed = maxSealed
        self.sealsCapped = sealsCapped
        self.open = open
        self.spareBlocks = spareBlocks
    }

    /// Takes the blocks out (the commit recycles or keeps them).
    mutating func takeBlocks() -> (batches: [Batch], spare: [ByteBuffer]) {
        defer {
            self.batches = []
            self.spareBlocks = []
        }
        return (self.batches, self.spareBlocks)
    }

    /// Writes the records of `source` from `cursor` on, as far as the reserved quota, the batch limits and the
    /// backlog allow.
    mutating func fill<Source: FillSource>(from source: Source, at cursor: Int) {
        self.cursor = cursor
        // The batches the reserved bytes can fill, and the one left open: one allocation.
        self.batches.reserveCapacity(min(self.maxSealed, self.reservedBytes / max(self.maxBytes, 1) + 1) + 1)
        while self.cursor < source.count {
            let first = self.batches.isEmpty
            if !first, self.batches.count >= self.maxSealed {
                let length = self.nextLength(in: source)
                if self.cursor >= source.count { break }
                // Batches of fewer records than the reservation was reckoned in: the turn is over, not the room.
                self.stop = self.sealsCapped ? .turnOver : .backlogged(length: length)
                return
            }
            let prefixBytes = first && !self.openSkipped ? (self.open?.bytes ?? 0) : 0
            let prefixRecords = first && !self.openSkipped ? (self.open?.records ?? 0) : 0
            var block = self.spareBlocks.popLast() ?? ByteBufferAllocator().buffer(capacity: self.maxBytes)
            if prefixBytes > 0 {
                // Blocks hold `maxBytes`: the room kept in front and the records after it fit.
                block.moveWriterIndex(to: prefixBytes)
                block.moveReaderIndex(to: prefixBytes)
            }
            var writer = Writer(room: self.maxBytes - prefixBytes, roomRecords: self.maxRecords - prefixRecords, prefixRecords: prefixRecords)
            var outcome: (stop: Stop?, full: Bool) = (nil, false)
            _ = block.writeWithUnsafeMutableBytes(minimumWritableBytes: writer.room) { destination in
                outcome = self.write(from: source, into: destination.baseAddress!, with: &writer)
                return writer.written
            }
            if prefixRecords > 0, writer.records == 0, outcome.stop == nil {
                // The open batch cannot take the next record: the records start a batch of their own, and the
                // commit seals the open batch before it. (Kept as an empty first batch, it counted against the
                // backlog's room: with room for one batch, every turn stopped there, having written nothing.)
                block.clear()
                self.spareBlocks.append(block)
                self.openSkipped = true
                continue
            }
            self.batches.append(Batch(block: block, records: writer.records, charged: writer.charged))
            if let stop = outcome.stop {
                self.stop = stop
                return
            }
            // Full, or the next record does not fit: the next batch starts (when records are left).
        }
        self.stop = .end
    }

    /// Where one batch's records go.
    private struct Writer {
        /// Bytes the batch may still take.
        let room: Int
        /// Records the batch may still take.
        let roomRecords: Int
        /// Records already in the batch (the open batch's, for the first).
        let prefixRecords: Int
        var written = 0
        var records = 0
        var charged = 0
    }

    /// Writes records into one batch until it is full (`full`), the records end (`nil`, not full), or something
    /// stops the fill (`stop`).
    @inline(__always)
    private mutating func write<Source: FillSource>(
        from source: Source,
        into destination: UnsafeMutableRawPointer,
        with writer: inout Writer
    ) -> (stop: Stop?, full: Bool) {
        while self.cursor < source.count {
            let outcome: (stop: Stop?, full: Bool)? = source.withRecord(at: self.cursor) { record, next in
                let length = record.count
                if length == 0 {
                    self.empty += 1
                    self.cursor = next
                    return nil
                }
                let recordBytes = BatchAccumulator.blockBytes(bodyLength: length, attributesLength: nil)
                if recordBytes > self.maxBytes { return (.tooLarge(length: length), false) }
                let charge = BatchAccumulator.charge(bodyLength: length, attributesLength: nil)
                let recordsLeft = self.records < self.reservedRecords
                let bytesLeft = self.charged + charge <= self.reservedBytes
                guard (self.oneRecordAlways && self.records == 0) || (recordsLeft && bytesLeft) else {
                    // The turn is over only when every side that ran out was capped: a side the quota bounds
                    // would stop the next turn before its first record, with nothing written (a sender spinning).
                    let quotaRanOut = (!recordsLeft && !self.recordsCapped) || (!bytesLeft && !self.bytesCapped)
                    return (quotaRanOut ? .quota(length: length) : .turnOver, false)
                }
                // The record does not fit this batch: it starts the next.
                if writer.records + writer.prefixRecords > 0, writer.written + recordBytes > writer.room { return (nil, true) }
                let at = destination + writer.written
                at.storeBytes(of: UInt32(truncatingIfNeeded: length).bigEndian, as: UInt32.self)
                // memcpy directly: copying through the buffer pointer's API checks its bounds again.
                memcpy(at + 4, record.baseAddress!, length)
                writer.written += recordBytes
                writer.records += 1
                writer.charged += charge
                self.records += 1
                self.charged += charge
                self.bodyBytes += length
                self.cursor = next
                if writer.records >= writer.roomRecords || writer.written >= writer.room { return (nil, true) }
                return nil
            }
            if let outcome { return outcome }
        }
        return (nil, false)
    }

    /// The body length of the next non-empty record (empty ones before it are counted and passed).
    private mutating func nextLength<Source: FillSource>(in source: Source) -> Int {
        while self.cursor < source.count {
            let (length, next) = source.withRecord(at: self.cursor) { record, next in (record.count, next) }
            if length > 0 { return length }
            self.empty += 1
            self.cursor = next
        }
        return 0
    }
}

/// Records a fill reads: delimited in one buffer, or bodies of their own.
protocol FillSource {
    /// The end of the cursor's range.
    var count: Int { get }
    /// Calls `body` with the record at `cursor` (empty for an empty one) and where the next one starts.
    func withRecord<Result>(at cursor: Int, _ body: (UnsafeRawBufferPointer, _ next: Int) -> Result) -> Result
}

/// Records delimited in one buffer (``DelimitedRecords``); the cursor is a byte offset.
struct DelimitedFillSource: FillSource {
    let bytes: UnsafeRawBufferPointer
    let delimiter: UInt8

    var count: Int { self.bytes.count }

    @inline(__always)
    func withRecord<Result>(at cursor: Int, _ body: (UnsafeRawBufferPointer, Int) -> Result) -> Result {
        let (length, next) = DelimitedRecords.next(in: self.bytes, from: cursor, delimiter: self.delimiter)
        return body(UnsafeRawBufferPointer(start: self.bytes.baseAddress! + cursor, count: length), next)
    }
}

/// Records with bodies of their own; the cursor is an index.
struct BodiesFillSource: FillSource {
    /// Read in place: iterating the array would retain and release every body.
    let bodies: UnsafeBufferPointer<ByteBuffer>

    var count: Int { self.bodies.count }

    @inline(__always)
    func withRecord<Result>(at cursor: Int, _ body: (UnsafeRawBufferPointer, Int) -> Result) -> Result {
        self.bodies[cursor].withUnsafeReadableBytes { body($0, cursor + 1) }
    }
}
