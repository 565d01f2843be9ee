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
    var created: FixedInstant
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
            created: FixedInstant(createdAt), dataTime: dataTime
        )
    }

    init(
        key: BatchKey,
        block: ByteBuffer,
        recordCount: Int,
        chargedBytes: Int,
        ids: DataProxyRecordIDs,
        observers: [BatchObserver],
        created: FixedInstant,
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
        /// The records' ids but the last run, which is kept apart: a record that continues it changes two integers
        /// in place rather than the runs' array (its storage is one more cache line per record, which moved between
        /// cores on every record when several tasks sent at once).
        private var earlierIDs = DataProxyRecordIDs()
        private var lastIDs: Range<UInt64> = 0..<0
        var observers: [BatchObserver] = []
        var createdAt: FixedInstant
        var dataTime: UInt32
        /// Tells a fill whether the batch it kept room for is still the same one (with its record count).
        var generation: UInt64 = 0

        init(
            block: ByteBuffer,
            recordCount: Int = 0,
            chargedBytes: Int = 0,
            ids: Range<UInt64> = 0..<0,
            createdAt: FixedInstant,
            dataTime: UInt32,
            generation: UInt64 = 0
        ) {
            self.block = block
            self.recordCount = recordCount
            self.chargedBytes = chargedBytes
            self.lastIDs = ids
            self.createdAt = createdAt
            self.dataTime = dataTime
            self.generation = generation
        }

        /// The records' ids, in block order.
        var ids: DataProxyRecordIDs {
            var ids = self.earlierIDs
            ids.append(self.lastIDs)
            return ids
        }

        /// Adds the ids of records appended after every other (ids are handed out in increasing order).
        @inline(__always)
        mutating func appendIDs(_ run: Range<UInt64>) {
            if self.lastIDs.upperBound == run.lowerBound, !self.lastIDs.isEmpty {
                self.lastIDs = self.lastIDs.lowerBound..<run.upperBound
                return
            }
            self.earlierIDs.append(self.lastIDs)
            self.lastIDs = run
        }
    }

    enum AppendResult {
        case accepted
        /// Accepted, and a batch was sealed by it (the previous one when the record did not fit).
        case acceptedAndSealed(SealedBatch)
        /// Accepted without `maySeal`, and the key's open batch is full: the caller seals it with ``sealFull(_:)``
        /// when the backlog has room (or the next record or its linger does).
        case acceptedFull
        /// The quota is used up.
        case full
        /// The record does not fit the key's open batch, and the backlog has no room to seal that one.
        case noRoomToSeal
    }

    /// Per-record accounting overhead besides the body, as the C++ SDK charges.
    static let recordOverhead = 10

    var limits: Limits
    // Changed by the accumulator's methods only (here and in `+Fill`).
    var open = OpenBatches()
    /// Cleared full-size blocks of encoded batches, reused for new batches: a block per batch allocated on the
    /// sender's thread and freed on another fragments the allocator's per-thread arenas.
    var spareBlocks: [ByteBuffer] = []
    static let maxSpareBlocks = 16
    /// Quota held by accepted records until they end.
    var heldBytes = 0
    var heldRecords = 0
    /// Quota reserved by fills under way (``BatchFill``): not held by records yet, not free for others.
    var reservedBytes = 0
    var reservedRecords = 0
    /// Quota leased by lanes (``AppendLane``) for the records they take outside the lock: not held by records
    /// yet, not free for others. A lane gives back what it did not use when it hands its batch in.
    var leasedBytes = 0
    var leasedRecords = 0
    /// Room in the dispatcher's backlog reserved by fills under way: batches they may still seal.
    var reservedSeals = 0
    /// Fills under way.
    var fills = 0
    /// The generation of the next open batch.
    var nextGeneration: UInt64 = 1

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

    /// What a record weighs against the byte quota, ``recordOverhead`` included.
    static func charge(bodyLength: Int, attributesLength: Int?) -> Int {
        Self.quotaBytes(bodyLength: bodyLength, attributesLength: attributesLength) + Self.recordOverhead
    }

    /// Whether the quota has room for a record of `bytes`. An empty client always has room for one record, so
    /// that a record larger than the byte quota cannot wait forever.
    func hasRoom(forBytes bytes: Int) -> Bool {
        self.hasRoom(forBytes: bytes, besides: (self.reservedRecords + self.leasedRecords, self.reservedBytes + self.leasedBytes))
    }

    enum NoRoom {
        case leased
        case reserved
        case full
    }

    /// Whether a lane may lease `records` and `bytes` of the quota (for one batch): only while half the quota
    /// would stay free. A buffer fuller than that waits for acks whichever way records go, and its senders wait
    /// the machine's way, where room is handed out in order; a lease then would only keep room from them.
    func canLease(records: Int, bytes: Int) -> Bool {
        2 * (self.heldRecords + self.reservedRecords + self.leasedRecords + records) <= self.limits.quotaRecords
            && 2 * (self.heldBytes + self.reservedBytes + self.leasedBytes + bytes) <= self.limits.quotaBytes
    }

    /// Why a record of `bytes` (as charged) finds no room: the lanes' leases hold it (they are to be handed in
    /// at once), the fills under way do (they end within a turn), or the quota is used up.
    func whyNoRoom(forBytes bytes: Int) -> NoRoom {
        let leased = self.leasedRecords > 0 || self.leasedBytes > 0
        if leased, self.hasRoom(forBytes: bytes, besides: (self.reservedRecords, self.reservedBytes)) { return .leased }
        guard self.hasRoom(forBytes: bytes, besides: (0, 0)) else { return .full }
        return leased ? .leased : .reserved
    }

    @inline(__always)
    private func hasRoom(forBytes bytes: Int, besides reserved: (records: Int, bytes: Int)) -> Bool {
        let records = self.heldRecords + reserved.records
        if records == 0 { return true }
        return records < self.limits.quotaRecords && self.heldBytes + reserved.bytes + bytes <= self.limits.quotaBytes
    }

    /// Appends one record with its `id`. `attributes` is the per-record attribute string when the key says so;
    /// `observer` learns the record's outcome (a `sendAndWait` caller or a tracked call). The times are read only
    /// when the record starts a batch (a clock read per record costs more than the rest of its bookkeeping).
    /// Without `maySeal` (no room in the dispatcher's backlog) it seals nothing: a batch it fills stays open (the
    /// next record or its linger seals it), and a record the key's open batch cannot take is refused.
    mutating func append(
        _ body: ByteBuffer,
        attributes: String?,
        key: BatchKey,
        id: UInt64,
        now: @autoclosure () -> ContinuousClock.Instant,
        wallSeconds: @autoclosure () -> UInt32,
        observer: RecordObserver = .none,
        maySeal: Bool = true
    ) -> AppendResult {
        let attributesLength = attributes?.utf8.count
        let recordBytes = Self.blockBytes(bodyLength: body.readableBytes, attributesLength: attributesLength)
        let charge = Self.charge(bodyLength: body.readableBytes, attributesLength: attributesLength)
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
                guard full else { return .accepted }
                return maySeal ? .acceptedAndSealed(Self.sealed(self.open.remove(at: index), key: key)) : .acceptedFull
            case .doesNotFit:
                guard maySeal else { return .noRoomToSeal }
                sealed = Self.sealed(self.open.remove(at: index), key: key)
            }
        }
        var batch = OpenBatch(
            block: self.spareBlocks.popLast() ?? ByteBufferAllocator().buffer(capacity: min(maxBytes, max(recordBytes, 1024))),
            createdAt: FixedInstant(now()),
            dataTime: wallSeconds(),
            generation: self.takeGeneration()
        )
        // A record alone always fits a new batch (its size was checked against the limit).
        let appended = batch.append(body, attributes: attributes, recordBytes: recordBytes, charge: charge, id: id, observer: observer, maxBytes: .max, maxRecords: maxRecords)
        let full = appended != .appended(full: false) || batch.block.readableBytes >= maxBytes
        self.heldBytes += charge
        self.heldRecords += 1
        if full, sealed == nil, maySeal { return .acceptedAndSealed(Self.sealed(batch, key: key)) }
        // With a batch sealed already, a full new one waits for the next record or its linger.
        self.open.insert(batch, forKey: key)
        return sealed.map(AppendResult.acceptedAndSealed) ?? (full ? .acceptedFull : .accepted)
    }

    /// Seals `key`'s open batch, which an append left full (``AppendResult/acceptedFull``).
    mutating func sealFull(_ key: BatchKey) -> SealedBatch? {
        guard let index = self.open.index(forKey: key) else { return nil }
        return Self.sealed(self.open.remove(at: index), key: key)
    }

    mutating func takeGeneration() -> UInt64 {
        defer { self.nextGeneration += 1 }
        return self.nextGeneration
    }

    /// Writes a record's length and bytes into a block with one capacity check, not two.
    @inline(__always)
    static func writeRecord(_ source: UnsafeRawBufferPointer, to block: inout ByteBuffer) {
        _ = block.writeWithUnsafeMutableBytes(minimumWritableBytes: 4 + source.count) { destination in
            let base = destination.baseAddress!
            base.storeBytes(of: UInt32(source.count).bigEndian, as: UInt32.self)
            // Through the raw pointers: a slice of the buffer costs a generic call and bounds checks per record.
            if let bytes = source.baseAddress { (base + 4).copyMemory(from: bytes, byteCount: source.count) }
            return 4 + source.count
        }
    }

    static func sealed(_ batch: OpenBatch, key: BatchKey) -> SealedBatch {
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
        // A full batch stays open when the backlog had no room to seal it (a fill's commit, a record that filled it).
        guard self.recordCount == 0 || (self.recordCount < maxRecords && self.block.readableBytes + recordBytes <= maxBytes) else {
            return .doesNotFit
        }
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
        self.appendIDs(id..<(id + 1))
        switch observer {
        case .none: break
        case .waiter(let waiter): self.observers.append(.waiter(waiter))
        case .tracker(let tracker): self.observers.track(tracker, id..<(id + 1))
        }
    }
}
