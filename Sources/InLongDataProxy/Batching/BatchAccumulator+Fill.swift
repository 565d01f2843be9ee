import NIOCore

/// The accumulator's two steps of a ``BatchFill``: the beginning reserves and hands out, the commit accepts.
extension BatchAccumulator {
    /// The most batches' worth of quota one fill reserves.
    static let maxFillBatches = 16

    /// Starts a fill of `key`'s records: reserves quota for at most `wanted` (records, and bytes as charged) out of
    /// what is free, and of the `room` left in the dispatcher's backlog the batches that quota fills (and one for
    /// the key's open batch, which the commit may seal first), and hands out spare blocks. Nothing is reserved when
    /// the first record (`wanted.first`, as charged) does not fit what is free.
    mutating func beginFill(key: BatchKey, wanted: Wanted, room: Int) -> BatchFill {
        let taken = self.heldRecords + self.reservedRecords + self.leasedRecords
        // As for one record: an empty client always has room for one, whatever its size. The reservation of that
        // record keeps another sender from taking the same exception meanwhile.
        let oneRecordAlways = taken == 0
        let freeRecords = self.limits.quotaRecords - taken
        let freeBytes = self.limits.quotaBytes - self.heldBytes - self.reservedBytes - self.leasedBytes
        // At most what a turn of 16 full batches holds: a fill of a large call does not keep the rest of the
        // quota from other senders (it stops there, and the call goes on with another turn).
        let cap = (records: Self.maxFillBatches * self.limits.maxRecords, bytes: Self.maxFillBatches * (self.limits.maxBytes + 16 * Self.recordOverhead))
        var records = max(0, min(wanted.records, freeRecords, cap.records))
        if oneRecordAlways { records = max(records, 1) }
        var bytes = max(0, min(wanted.bytes, freeBytes, cap.bytes))
        if !oneRecordAlways, records == 0 || bytes < wanted.first {
            // The fill can take no record: a reservation would only hold other senders back (quota, and room in the
            // backlog), and its end would wake them to find the same.
            records = 0
            bytes = 0
        }
        // Whether each side of the reservation is the turn's cap, less than the quota has free: running out of
        // that side means only that the turn is over (the cap always holds a record, so such a turn wrote one).
        let recordsCapped = min(wanted.records, freeRecords) > cap.records
        let bytesCapped = min(wanted.bytes, freeBytes) > cap.bytes
        // Reserved, so that fills under way at once do not each seal up to the same room: the batches the reserved
        // records fill (each holds one at least), and the key's open batch. Records of uneven sizes can fill more
        // than reckoned: the turn is over there (`sealsCapped`), and the call goes on. A fill that can take no
        // record seals nothing.
        let byBytes = (bytes + self.limits.maxBytes - 1) / self.limits.maxBytes
        let reckoned = records == 0 ? 0 : min(records, max((records + self.limits.maxRecords - 1) / self.limits.maxRecords, byBytes)) + 1
        let seals = min(room, reckoned)
        self.reservedRecords += records
        self.reservedBytes += bytes
        self.reservedSeals += seals
        self.fills += 1
        var open: BatchFill.OpenBatchSnapshot?
        if let index = self.open.index(forKey: key) {
            let batch = self.open[index]
            if batch.recordCount < self.limits.maxRecords, batch.block.readableBytes < self.limits.maxBytes {
                open = .init(generation: batch.generation, records: batch.recordCount, bytes: batch.block.readableBytes)
            }
        }
        // Every spare block goes with the fill (moved, not copied: no allocation), and what it does not use comes
        // back with it; a record appended meanwhile that starts a batch allocates its block.
        let spare = self.spareBlocks
        self.spareBlocks = []
        return BatchFill(
            key: key,
            maxBytes: self.limits.maxBytes,
            maxRecords: self.limits.maxRecords,
            reservedRecords: records,
            reservedBytes: bytes,
            recordsCapped: recordsCapped,
            bytesCapped: bytesCapped,
            oneRecordAlways: oneRecordAlways,
            maxSealed: seals,
            sealsCapped: seals < room,
            open: open,
            spareBlocks: spare
        )
    }

    /// Ends a fill: releases its reservation and, when `accept`, accepts its records with ids from `firstID` on
    /// (observed by `tracker`). Returns the batches sealed: the key's open batch when the fill could not take its
    /// place, then the filled ones that are full; the last one stays open when it is not, or when sealing it would
    /// take more of the backlog than the fill reserved (the next record or its linger seals it).
    mutating func commitFill(
        _ fill: consuming BatchFill,
        firstID: UInt64,
        tracker: DeliveryTracker?,
        now: ContinuousClock.Instant,
        wallSeconds: UInt32,
        accept: Bool
    ) -> [SealedBatch] {
        self.fills -= 1
        self.reservedRecords -= fill.reservedRecords
        self.reservedBytes -= fill.reservedBytes
        self.reservedSeals -= fill.maxSealed
        precondition(self.fills >= 0 && self.reservedRecords >= 0 && self.reservedBytes >= 0 && self.reservedSeals >= 0, "a fill ended twice")
        let key = fill.key
        // Blocks are moved out of the arrays, never copied: a recycled or written block must be uniquely referenced.
        var (filled, spare) = fill.takeBlocks()
        if self.spareBlocks.isEmpty {
            self.spareBlocks = spare
        } else {
            while let block = spare.popLast() { self.recycle(block) }
        }
        filled.reverse()
        guard accept else {
            while let batch = filled.popLast() { self.recycle(batch.block) }
            return []
        }
        self.heldBytes += fill.charged
        self.heldRecords += fill.records
        var sealed: [SealedBatch] = []
        sealed.reserveCapacity(filled.count + 1)
        var nextID = firstID
        let count = filled.count
        var index = -1
        while let popped = filled.popLast() {
            index += 1
            let records = popped.records
            let charged = popped.charged
            // Moved out, so that the block is the only reference to its storage (a write would copy it otherwise).
            var block = (consume popped).block
            guard records > 0 else {
                self.recycle(block)
                continue
            }
            let ids = nextID..<nextID + UInt64(records)
            nextID = ids.upperBound
            var batch: OpenBatch
            if index == 0, fill.keptRoomForOpen, let snapshot = fill.open, let openIndex = self.open.index(forKey: key),
                self.open[openIndex].generation == snapshot.generation, self.open[openIndex].recordCount == snapshot.records
            {
                // The open batch is as it was: the fewer bytes are copied, the open batch's into the room kept for
                // them, or the new records behind the open batch's.
                batch = self.open.remove(at: openIndex)
                if block.readableBytes < snapshot.bytes {
                    block.withUnsafeReadableBytes { _ = batch.block.writeBytes($0) }
                } else {
                    batch.block.withUnsafeReadableBytes { _ = block.setBytes($0, at: 0) }
                    block.moveReaderIndex(to: 0)
                    swap(&batch.block, &block)
                }
                self.recycle(block)
                batch.recordCount += records
                batch.chargedBytes += charged
                batch.appendIDs(ids)
            } else {
                // The key's open batch changed or is new: its records are older than these, it goes first.
                if let older = self.open.removeValue(forKey: key) { sealed.append(Self.sealed(older, key: key)) }
                batch = OpenBatch(
                    block: block,
                    recordCount: records,
                    chargedBytes: charged,
                    ids: ids,
                    createdAt: FixedInstant(now),
                    dataTime: wallSeconds,
                    generation: self.takeGeneration()
                )
            }
            if let tracker { batch.observers.track(tracker, ids) }
            let isLast = index == count - 1
            let full = batch.recordCount >= self.limits.maxRecords || batch.block.readableBytes >= self.limits.maxBytes
            if !isLast || (full && sealed.count < fill.maxSealed) {
                sealed.append(Self.sealed(batch, key: key))
            } else {
                self.open.insert(batch, forKey: key)
            }
        }
        return sealed
    }

    /// Appends records of one key with ids from `firstID` on: a fill begun and committed at once. Stops at the
    /// first record the quota has no room for, or once `maxSealed` batches are sealed. Returns how many were
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
        bodies.withUnsafeBufferPointer { bodies in
            var appended = 0
            var sealed: [SealedBatch] = []
            // Turn after turn while a turn's reservation, not the quota, stops it.
            while true {
                let rest = UnsafeBufferPointer(rebasing: bodies[appended...])
                var fill = self.beginFill(key: key, wanted: Self.wanted(rest), room: maxSealed - sealed.count)
                fill.fill(from: BodiesFillSource(bodies: bodies), at: appended)
                let (records, stop) = (fill.records, fill.stop)
                sealed += self.commitFill(fill, firstID: firstID + UInt64(appended), tracker: tracker, now: now, wallSeconds: wallSeconds, accept: true)
                appended += records
                guard stop == .turnOver, sealed.count < maxSealed else { return (appended, sealed) }
            }
        }
    }

    /// What a fill asks of the quota: at most `records` and `bytes` (as charged); `first` is what its first record
    /// is charged (0 for none).
    typealias Wanted = (records: Int, bytes: Int, first: Int)

    /// The quota a fill of `bodies` reserves: their records and bytes as charged.
    static func wanted(_ bodies: UnsafeBufferPointer<ByteBuffer>) -> Wanted {
        var bytes = 0
        for index in bodies.indices { bytes += bodies[index].readableBytes }
        let first = bodies.first.map { Self.charge(bodyLength: $0.readableBytes, attributesLength: nil) } ?? 0
        return (bodies.count, bytes + bodies.count * Self.recordOverhead, first)
    }

    /// The quota a fill of the records delimited in `bytes` from `start` on reserves at most: each has at least a
    /// byte and its delimiter. The first record is found (empty ones passed): one scan of a line.
    static func wanted(delimited bytes: UnsafeRawBufferPointer, from start: Int, delimiter: UInt8) -> Wanted {
        let count = bytes.count - start
        let records = (count + 1) / 2
        var cursor = start
        var first = 0
        while cursor < bytes.count, first == 0 {
            let (length, next) = DelimitedRecords.next(in: bytes, from: cursor, delimiter: delimiter)
            if length > 0 { first = Self.charge(bodyLength: length, attributesLength: nil) }
            cursor = next
        }
        return (records, count + records * Self.recordOverhead, first)
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
        /// Why it stopped before the end, if it did.
        var stop = BatchFill.Stop.end
    }

    /// Appends the records delimited in `bytes` from `start` on (see ``DelimitedRecords``), with ids from `firstID`
    /// on: a fill begun and committed at once.
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
        // Turn after turn while a turn's reservation, not the quota, stops it.
        repeat {
            var fill = self.beginFill(key: key, wanted: Self.wanted(delimited: bytes, from: run.end, delimiter: delimiter), room: maxSealed - run.sealed.count)
            fill.fill(from: DelimitedFillSource(bytes: bytes, delimiter: delimiter), at: run.end)
            let records = fill.records
            run.end = fill.cursor
            run.empty += fill.empty
            run.bytes += fill.bodyBytes
            run.stop = fill.stop
            run.sealed += self.commitFill(fill, firstID: firstID + UInt64(run.appended), tracker: nil, now: now, wallSeconds: wallSeconds, accept: true)
            run.appended += records
        } while run.stop == .turnOver && run.sealed.count < maxSealed
        return run
    }
}
