import InLongWire
import NIOCore

/// Where records of one group and stream gather before they are sent.
struct BatchKey: Hashable, Sendable {
    var group: String
    var stream: String
    /// Whether records carry their own attributes (extended-field bit 0).
    var perRecordAttributes: Bool
    /// Key/value pairs added to the message's attribute string (`k=v&k=v`), empty for none: records with
    /// different message attributes never share a batch.
    var messageAttributes = ""
}

/// A batch closed for new records, ready to be encoded and sent.
struct SealedBatch: Sendable {
    var key: BatchKey
    /// The record block: `len(4) data [attrLen(4) attr]` per record.
    var block: ByteBuffer
    var recordCount: Int
    /// Bytes charged to the quota.
    var chargedBytes: Int
    /// The records' ids, in block order.
    var ids: DataProxyRecordIDs
    var observers: [BatchObserver]
    /// When the first record was accepted (``createdAt``), held with a fixed layout.
    var created: BatchInstant
    /// Data time of the message header, seconds.
    var dataTime: UInt32

    init(
        key: BatchKey,
        block: ByteBuffer,
        recordCount: Int,
        chargedBytes: Int,
        ids: DataProxyRecordIDs,
        observers: [BatchObserver],
        createdAt: ContinuousClock.Instant,
        dataTime: UInt32
    ) {
        self.init(
            key: key, block: block, recordCount: recordCount, chargedBytes: chargedBytes, ids: ids, observers: observers,
            created: BatchInstant(createdAt), dataTime: dataTime
        )
    }

    init(
        key: BatchKey,
        block: ByteBuffer,
        recordCount: Int,
        chargedBytes: Int,
        ids: DataProxyRecordIDs,
        observers: [BatchObserver],
        created: BatchInstant,
        dataTime: UInt32
    ) {
        self.key = key
        self.block = block
        self.recordCount = recordCount
        self.chargedBytes = chargedBytes
        self.ids = ids
        self.observers = observers
        self.created = created
        self.dataTime = dataTime
    }

    /// When the first record was accepted; delivery deadlines count from here.
    var createdAt: ContinuousClock.Instant { self.created.instant }
}

/// The batching and quota logic, with no I/O and no clock of its own: records are appended per key, batches are
/// sealed by count, size or age, and every record is charged to the byte and record quota until it is released
/// (acked or failed).
struct BatchAccumulator {
    struct Limits {
        var maxRecords: Int
        var maxBytes: Int
        var linger: Duration
        var quotaBytes: Int
        var quotaRecords: Int
    }

    struct OpenBatch {
        var block: ByteBuffer
        var recordCount = 0
        var chargedBytes = 0
        var ids = DataProxyRecordIDs()
        var observers: [BatchObserver] = []
        var createdAt: BatchInstant
        var dataTime: UInt32
    }

    enum AppendResult {
        case accepted
        /// Accepted, and a batch was sealed by it (the previous one when the record did not fit).
        case acceptedAndSealed(SealedBatch)
        /// The quota is used up.
        case full
    }

    /// Per-record accounting overhead besides the body, as the C++ SDK charges.
    static let recordOverhead = 10

    var limits: Limits
    private var open = OpenBatches()
    /// Cleared full-size blocks of encoded batches, reused for new batches: a block per batch allocated on the
    /// sender's thread and freed on another fragments the allocator's per-thread arenas.
    private var spareBlocks: [ByteBuffer] = []
    static let maxSpareBlocks = 16
    private(set) var heldBytes = 0
    private(set) var heldRecords = 0

    init(limits: Limits) {
        self.limits = limits
    }

    /// The bytes a record adds to a block.
    static func blockBytes(bodyLength: Int, attributesLength: Int?) -> Int {
        InLongRecordBlock.recordOverhead + bodyLength + (attributesLength.map { 4 + $0 } ?? 0)
    }

    /// What a record weighs against the byte quota, before ``recordOverhead``: its body and its own attributes
    /// (they are held and sent with it).
    static func quotaBytes(bodyLength: Int, attributesLength: Int?) -> Int {
        bodyLength + (attributesLength.map { 4 + $0 } ?? 0)
    }

    /// Whether the quota has room for a record of `bytes`. An empty client always has room for one record, so
    /// that a record larger than the byte quota cannot wait forever.
    func hasRoom(forBytes bytes: Int) -> Bool {
        if self.heldRecords == 0 { return true }
        return self.heldRecords < self.limits.quotaRecords && self.heldBytes + bytes <= self.limits.quotaBytes
    }

    /// Appends one record with its `id`. `attributes` is the per-record attribute string when the key says so;
    /// `observer` learns the record's outcome (a `sendAndWait` caller or a tracked call).
    mutating func append(
        _ body: ByteBuffer,
        attributes: String?,
        key: BatchKey,
        id: UInt64,
        now: ContinuousClock.Instant,
        wallSeconds: UInt32,
        observer: RecordObserver = .none
    ) -> AppendResult {
        let attributesLength = attributes?.utf8.count
        let recordBytes = Self.blockBytes(bodyLength: body.readableBytes, attributesLength: attributesLength)
        let charge = Self.quotaBytes(bodyLength: body.readableBytes, attributesLength: attributesLength) + Self.recordOverhead
        guard self.hasRoom(forBytes: charge) else { return .full }
        // The open batch changed in place through its index: reading it through the dictionary would copy it
        // (retains of its block, ids and observers).
        var sealed: SealedBatch?
        let maxBytes = self.limits.maxBytes
        let maxRecords = self.limits.maxRecords
        if let index = self.open.index(forKey: key) {
            switch self.open[index].append(body, attributes: attributes, recordBytes: recordBytes, charge: charge, id: id, observer: observer, maxBytes: maxBytes, maxRecords: maxRecords) {
            case .appended(let full):
                self.heldBytes += charge
                self.heldRecords += 1
                return full ? .acceptedAndSealed(Self.sealed(self.open.remove(at: index), key: key)) : .accepted
            case .doesNotFit:
                sealed = Self.sealed(self.open.remove(at: index), key: key)
            }
        }
        var batch = OpenBatch(
            block: self.spareBlocks.popLast() ?? ByteBufferAllocator().buffer(capacity: min(maxBytes, max(recordBytes, 1024))),
            createdAt: BatchInstant(now),
            dataTime: wallSeconds
        )
        // A record alone always fits a new batch (its size was checked against the limit).
        let appended = batch.append(body, attributes: attributes, recordBytes: recordBytes, charge: charge, id: id, observer: observer, maxBytes: .max, maxRecords: maxRecords)
        let full = appended != .appended(full: false) || batch.block.readableBytes >= maxBytes
        self.heldBytes += charge
        self.heldRecords += 1
        if full, sealed == nil { return .acceptedAndSealed(Self.sealed(batch, key: key)) }
        // With a batch sealed already, a full new one waits for the next record or its linger.
        self.open.insert(batch, forKey: key)
        return sealed.map(AppendResult.acceptedAndSealed) ?? .accepted
    }

    /// Appends records of one key, with ids from `firstID` on, without per-record dictionary lookups; stops at
    /// the first record the quota has no room for, or once `maxSealed` batches are sealed. Returns how many were
    /// appended and the batches sealed on the way.
    mutating func appendRun(
        _ bodies: ArraySlice<ByteBuffer>,
        key: BatchKey,
        firstID: UInt64,
        now: ContinuousClock.Instant,
        wallSeconds: UInt32,
        tracker: DeliveryTracker? = nil,
        maxSealed: Int = .max
    ) -> (appended: Int, sealed: [SealedBatch]) {
        var run = self.startRun(key: key, firstID: firstID, tracker: tracker, now: now, wallSeconds: wallSeconds)
        // The bodies are read in place: iterating the slice would retain and release every one.
        bodies.withUnsafeBufferPointer { bodies in
            for index in bodies.indices {
                guard run.sealed.count < maxSealed, self.hasRoom(forBytes: bodies[index].readableBytes + Self.recordOverhead) else { break }
                bodies[index].withUnsafeReadableBytes { self.append($0, to: &run) }
            }
        }
        return (Int(run.nextID - firstID), self.endRun(&run))
    }

    /// What ``appendDelimited(_:from:delimiter:key:firstID:now:wallSeconds:maxSealed:)`` did.
    struct DelimitedRun {
        /// Where the next record starts: the end of the bytes when every record was taken.
        var end: Int
        var appended = 0
        /// Empty records left out (they take no id).
        var empty = 0
        /// The appended records' bytes.
        var bytes = 0
        var sealed: [SealedBatch] = []
        /// The body length of the record it stopped before, when it stopped before the end.
        var stoppedBefore: Int?
        /// It stopped before a record that does not fit a batch of the current limit.
        var tooLarge = false
    }

    /// Appends the records delimited in `bytes` from `start` on (see ``DelimitedRecords``), with ids from `firstID`
    /// on, read in place: no buffer per record. Stops at the first record the quota has no room for, or that does
    /// not fit a batch, or once `maxSealed` batches are sealed.
    mutating func appendDelimited(
        _ bytes: UnsafeRawBufferPointer,
        from start: Int,
        delimiter: UInt8,
        key: BatchKey,
        firstID: UInt64,
        now: ContinuousClock.Instant,
        wallSeconds: UInt32,
        maxSealed: Int = .max
    ) -> DelimitedRun {
        var run = DelimitedRun(end: start)
        guard start < bytes.count, let base = bytes.baseAddress else { return run }
        var appending = self.startRun(key: key, firstID: firstID, tracker: nil, now: now, wallSeconds: wallSeconds)
        let maxBytes = self.limits.maxBytes
        var cursor = start
        while cursor < bytes.count {
            let (length, next) = DelimitedRecords.next(in: bytes, from: cursor, delimiter: delimiter)
            if length == 0 {
                run.empty += 1
                cursor = next
                continue
            }
            guard Self.blockBytes(bodyLength: length, attributesLength: nil) <= maxBytes else {
                run.tooLarge = true
                run.stoppedBefore = length
                break
            }
            guard appending.sealed.count < maxSealed, self.hasRoom(forBytes: length + Self.recordOverhead) else {
                run.stoppedBefore = length
                break
            }
            self.append(UnsafeRawBufferPointer(start: base + cursor, count: length), to: &appending)
            run.bytes += length
            cursor = next
        }
        run.end = cursor
        run.appended = Int(appending.nextID - firstID)
        run.sealed = self.endRun(&appending)
        return run
    }

    /// A run of records of one key appended by one call (``appendRun(_:key:firstID:now:wallSeconds:tracker:maxSealed:)``
    /// and ``appendDelimited(_:from:delimiter:key:firstID:now:wallSeconds:maxSealed:)``).
    private struct Run {
        let key: BatchKey
        let tracker: DeliveryTracker?
        let now: ContinuousClock.Instant
        let wallSeconds: UInt32
        /// The batch being filled: taken out of the dictionary (so that its block stays uniquely referenced) and
        /// never optional, so that no record costs a copy of it.
        var batch: OpenBatch
        var sealed: [SealedBatch] = []
        /// The ids of the run's records in `batch` start here; written to the batch when it seals or at the end.
        var segmentStart: UInt64
        /// The id of the run's next record.
        var nextID: UInt64
    }

    private mutating func startRun(key: BatchKey, firstID: UInt64, tracker: DeliveryTracker?, now: ContinuousClock.Instant, wallSeconds: UInt32) -> Run {
        let batch = self.open.removeValue(forKey: key) ?? self.newBatch(capacity: self.limits.maxBytes, now: now, wallSeconds: wallSeconds)
        return Run(key: key, tracker: tracker, now: now, wallSeconds: wallSeconds, batch: batch, segmentStart: firstID, nextID: firstID)
    }

    /// Appends one record's bytes to a run (the quota was checked): its batch seals before the record when the
    /// record does not fit, and after it when full.
    @inline(__always)
    private mutating func append(_ record: UnsafeRawBufferPointer, to run: inout Run) {
        let maxBytes = self.limits.maxBytes
        if run.batch.recordCount > 0, run.batch.block.readableBytes + Self.blockBytes(bodyLength: record.count, attributesLength: nil) > maxBytes {
            self.sealBatch(of: &run)
        }
        // Written here rather than through `OpenBatch.append`: its attribute and waiter cases cost a fifth of the
        // throughput of 100 B records (measured with `inlong bench`).
        Self.writeRecord(record, to: &run.batch.block)
        let charge = record.count + Self.recordOverhead
        run.batch.recordCount += 1
        run.batch.chargedBytes += charge
        self.heldBytes += charge
        self.heldRecords += 1
        run.nextID += 1
        if run.batch.recordCount >= self.limits.maxRecords || run.batch.block.readableBytes >= maxBytes {
            self.sealBatch(of: &run)
        }
    }

    /// Seals a run's batch and starts the next.
    private mutating func sealBatch(of run: inout Run) {
        Self.closeSegment(of: &run)
        run.sealed.append(Self.sealed(run.batch, key: run.key))
        run.batch = self.newBatch(capacity: self.limits.maxBytes, now: run.now, wallSeconds: run.wallSeconds)
    }

    /// Writes the ids of the run's records in its batch to the batch.
    private static func closeSegment(of run: inout Run) {
        guard run.nextID > run.segmentStart else { return }
        run.batch.ids.append(run.segmentStart..<run.nextID)
        if let tracker = run.tracker { run.batch.observers.track(tracker, run.segmentStart..<run.nextID) }
        run.segmentStart = run.nextID
    }

    /// Ends a run: its batch stays open when it holds records. Returns the batches it sealed.
    private mutating func endRun(_ run: inout Run) -> [SealedBatch] {
        Self.closeSegment(of: &run)
        if run.batch.recordCount > 0 {
            self.open.insert(run.batch, forKey: run.key)
        } else {
            self.recycle(run.batch.block)
        }
        return run.sealed
    }

    private mutating func newBatch(capacity: Int, now: ContinuousClock.Instant, wallSeconds: UInt32) -> OpenBatch {
        OpenBatch(
            block: self.spareBlocks.popLast() ?? ByteBufferAllocator().buffer(capacity: capacity),
            createdAt: BatchInstant(now),
            dataTime: wallSeconds
        )
    }

    /// Writes a record's length and bytes into a block with one capacity check, not two.
    @inline(__always)
    fileprivate static func writeRecord(_ source: UnsafeRawBufferPointer, to block: inout ByteBuffer) {
        _ = block.writeWithUnsafeMutableBytes(minimumWritableBytes: 4 + source.count) { destination in
            destination.storeBytes(of: UInt32(source.count).bigEndian, toByteOffset: 0, as: UInt32.self)
            UnsafeMutableRawBufferPointer(rebasing: destination[4...]).copyMemory(from: source)
            return 4 + source.count
        }
    }

    private static func sealed(_ batch: OpenBatch, key: BatchKey) -> SealedBatch {
        SealedBatch(
            key: key,
            block: batch.block,
            recordCount: batch.recordCount,
            chargedBytes: batch.chargedBytes,
            ids: batch.ids,
            observers: batch.observers,
            created: batch.createdAt,
            dataTime: batch.dataTime
        )
    }

    /// Seals the batches older than the linger time.
    mutating func sealExpired(now: ContinuousClock.Instant) -> [SealedBatch] {
        let due = self.open.batches.filter { now - $0.value.createdAt.instant >= self.limits.linger }.map(\.key)
        return due.compactMap { self.seal($0) }
    }

    /// Seals every open batch (flush, shutdown).
    mutating func sealAll() -> [SealedBatch] {
        Array(self.open.batches.keys).compactMap { self.seal($0) }
    }

    /// The earliest instant an open batch becomes due, if any.
    var nextDeadline: ContinuousClock.Instant? {
        self.open.batches.values.map(\.createdAt).min().map { $0.instant + self.limits.linger }
    }

    /// Records waiting in open batches.
    var openRecords: Int { self.open.batches.values.reduce(0) { $0 + $1.recordCount } }

    /// Keeps the block of an encoded batch for a later batch, when it is full-size and there is room.
    mutating func recycle(_ block: consuming ByteBuffer) {
        guard self.spareBlocks.count < Self.maxSpareBlocks, block.capacity >= self.limits.maxBytes else { return }
        block.clear()
        self.spareBlocks.append(block)
    }

    /// Returns quota held by records that ended (acked or failed).
    mutating func release(bytes: Int, records: Int) {
        self.heldBytes -= bytes
        self.heldRecords -= records
        precondition(self.heldBytes >= 0 && self.heldRecords >= 0, "released more than was held")
    }

    private mutating func seal(_ key: BatchKey) -> SealedBatch? {
        guard let batch = self.open.removeValue(forKey: key), batch.recordCount > 0 else { return nil }
        return Self.sealed(batch, key: key)
    }
}

/// Who learns the outcome of one appended record, besides the report readers.
enum RecordObserver {
    case none
    /// A `sendAndWait` caller of this one record.
    case waiter(AckWaiter)
    /// A tracked call this record belongs to.
    case tracker(DeliveryTracker)
}

extension BatchAccumulator.OpenBatch {
    fileprivate enum Append: Equatable {
        /// Appended; `full` when the batch reached a limit and is to be sealed.
        case appended(full: Bool)
        /// The record would take the block past `maxBytes`: nothing was appended.
        case doesNotFit
    }

    fileprivate mutating func append(
        _ body: ByteBuffer,
        attributes: String?,
        recordBytes: Int,
        charge: Int,
        id: UInt64,
        observer: RecordObserver,
        maxBytes: Int,
        maxRecords: Int
    ) -> Append {
        guard self.recordCount == 0 || self.block.readableBytes + recordBytes <= maxBytes else { return .doesNotFit }
        self.append(body, attributes: attributes, charge: charge, id: id, observer: observer)
        return .appended(full: self.recordCount >= maxRecords || self.block.readableBytes >= maxBytes)
    }

    fileprivate mutating func append(_ body: ByteBuffer, attributes: String?, charge: Int, id: UInt64, observer: RecordObserver) {
        if let attributes {
            InLongRecordBlock.write(body, attributes: attributes, into: &self.block)
        } else {
            // One capacity check, and none of the exclusivity checks NIO's writes make of the block's storage.
            body.withUnsafeReadableBytes { BatchAccumulator.writeRecord($0, to: &self.block) }
        }
        self.recordCount += 1
        self.chargedBytes += charge
        self.ids.append(id)
        switch observer {
        case .none: break
        case .waiter(let waiter): self.observers.append(.waiter(waiter))
        case .tracker(let tracker): self.observers.track(tracker, id..<(id + 1))
        }
    }
}
