import InLongWire
import NIOCore

/// Batches of single records of the tasks that share a lane, written under the lane's lock rather than the
/// client's: tasks sending one record at a time on several threads no longer take turns at the one lock (and move
/// its state between cores) for every record.
///
/// The machine leases a lane quota and the batch limits for one batch of one key at a time
/// (``DeliveryStateMachine/laneTurn(_:next:now:wallSeconds:)``), up to ``maxBatches`` open at once. The lane
/// appends records within a batch's lease, each taking its id from the client's ``RecordIDSource``, and hands a
/// batch in to the machine when it is full, when the next record of its key does not fit it, to open a batch of
/// another key, at its linger, on a flush or a close, or when a sender needs the quota it leased. A record the lane
/// cannot take goes the machine's way.
struct AppendLane {
    /// What the machine leased for one batch.
    struct Lease {
        var key: BatchKey
        /// Quota taken from the client's: the batch's charges stay within it.
        var bytes: Int
        var records: Int
        /// The batch limits when leased.
        var maxBytes: Int
        var maxRecords: Int
        var created: FixedInstant
        var dataTime: UInt32
    }

    /// A lane's batch handed in to the machine, with the part of its lease it did not use.
    struct HandIn {
        /// `nil` when the lease took no record.
        var batch: SealedBatch?
        /// The block of a batch that took no record, to be reused.
        var unusedBlock: ByteBuffer?
        var leasedBytes: Int
        var leasedRecords: Int
    }

    enum Append: Equatable {
        /// Appended with `id`; `full` when its batch or the batch's lease can take no other record.
        case appended(id: UInt64, full: Bool)
        /// The lane has no batch of the key, or that batch cannot take the record: the machine's turn decides.
        case needsTurn
    }

    /// The most batches a lane holds open, each of its own key: a task sending to a few streams in turn keeps a
    /// batch for each; one sending to more hands the oldest in to open another.
    static let maxBatches = 4

    /// One open batch of one key, on its own lease.
    struct Batch {
        /// The quota and the batch limits it runs on: its charges stay within them.
        let lease: Lease
        fileprivate var block: ByteBuffer
        private(set) var records = 0
        /// Charged to the lease so far.
        private(set) var charged = 0
        /// The ids but the last run, and the last run: ids of other lanes' records come between a lane's own.
        private var earlierIDs = DataProxyRecordIDs()
        private var lastIDs: Range<UInt64> = 0..<0

        init(_ lease: Lease, block: ByteBuffer) {
            self.lease = lease
            self.block = block
        }

        var key: BatchKey { self.lease.key }
        var leasedBytes: Int { self.lease.bytes }
        var leasedRecords: Int { self.lease.records }

        @inline(__always)
        func canTake(recordBytes: Int, charge: Int) -> Bool {
            self.records < self.lease.records && self.charged + charge <= self.lease.bytes
                && self.block.readableBytes + recordBytes <= self.lease.maxBytes
        }

        /// Appends a record the batch can take; whether the batch can take no other.
        @inline(__always)
        mutating func append(_ body: ByteBuffer, charge: Int, id: UInt64) -> Bool {
            body.withUnsafeReadableBytes { BatchAccumulator.writeRecord($0, to: &self.block) }
            self.records += 1
            self.charged += charge
            if self.lastIDs.upperBound == id, !self.lastIDs.isEmpty {
                self.lastIDs = self.lastIDs.lowerBound..<(id + 1)
            } else {
                self.earlierIDs.append(self.lastIDs)
                self.lastIDs = id..<(id + 1)
            }
            // Full when no record could follow: the smallest takes a byte of body.
            return self.records >= self.lease.maxRecords || self.records >= self.lease.records
                || self.block.readableBytes + InLongRecordBlock.recordOverhead + 1 > self.lease.maxBytes
                || self.charged + BatchAccumulator.recordOverhead + 1 > self.lease.bytes
        }

        /// The batch for the machine, with its lease.
        var handIn: HandIn {
            var ids = self.earlierIDs
            ids.append(self.lastIDs)
            let batch =
                self.records == 0
                ? nil
                : SealedBatch(
                    key: self.lease.key, block: self.block, recordCount: self.records, chargedBytes: self.charged, ids: ids,
                    observers: [], created: self.lease.created, dataTime: self.lease.dataTime
                )
            return HandIn(
                batch: batch,
                unusedBlock: batch == nil ? self.block : nil,
                leasedBytes: self.lease.bytes,
                leasedRecords: self.lease.records
            )
        }
    }

    /// The open batches, oldest first.
    private(set) var batches: [Batch] = []
    /// Closed with the client: it takes no lease again.
    private(set) var isClosed = false

    var isOpen: Bool { !self.batches.isEmpty }
    /// The records the lane holds, and their charges.
    var records: Int { self.batches.reduce(0) { $0 + $1.records } }
    var charged: Int { self.batches.reduce(0) { $0 + $1.charged } }
    /// The quota the lane's batches leased.
    var leasedRecords: Int { self.batches.reduce(0) { $0 + $1.leasedRecords } }
    var leasedBytes: Int { self.batches.reduce(0) { $0 + $1.leasedBytes } }

    /// The index of `key`'s batch.
    @inline(__always)
    func index(of key: BatchKey) -> Int? {
        self.batches.firstIndex { $0.key == key }
    }

    /// Appends a record of `key` that adds `recordBytes` to a block and `charge` to the quota, when the lane has a
    /// batch of that key that can take it.
    @inline(__always)
    mutating func append(_ body: ByteBuffer, key: BatchKey, recordBytes: Int, charge: Int, ids: RecordIDSource) -> Append {
        guard let index = self.index(of: key), self.batches[index].canTake(recordBytes: recordBytes, charge: charge) else {
            return .needsTurn
        }
        let id = ids.take()
        let full = self.batches[index].append(body, charge: charge, id: id)
        return .appended(id: id, full: full)
    }

    /// Opens a batch for the lease, written into `block`.
    mutating func open(_ lease: Lease, block: ByteBuffer) {
        precondition(!self.isClosed && self.index(of: lease.key) == nil && self.batches.count < Self.maxBatches, "a lane leased past its batches")
        self.batches.append(Batch(lease, block: block))
    }

    /// Takes `key`'s batch, if the lane has one.
    mutating func take(_ key: BatchKey) -> HandIn? {
        guard let index = self.index(of: key) else { return nil }
        return self.batches.remove(at: index).handIn
    }

    /// Takes the batch opened first.
    mutating func takeOldest() -> HandIn? {
        self.batches.isEmpty ? nil : self.batches.removeFirst().handIn
    }

    /// Takes the batches lingering `linger` at `now`, or every batch (`now` `nil`).
    mutating func take(dueAt now: ContinuousClock.Instant?, linger: Duration) -> [HandIn] {
        var taken: [HandIn] = []
        self.batches.removeAll { batch in
            guard now.map({ $0 - batch.lease.created.instant >= linger }) ?? true else { return false }
            taken.append(batch.handIn)
            return true
        }
        return taken
    }

    /// Closes the lane (it takes no lease again) and takes its batches.
    mutating func close() -> [HandIn] {
        self.isClosed = true
        return self.take(dueAt: nil, linger: .zero)
    }

    /// Whether one of the lane's batches has lingered `linger` at `now`.
    func isDue(at now: ContinuousClock.Instant, linger: Duration) -> Bool {
        self.batches.contains { now - $0.lease.created.instant >= linger }
    }
}
