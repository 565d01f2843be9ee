import DequeModule

/// Where records written to the spool only (spilled) are: a byte range of one segment.
struct SpillLocation: Hashable, Sendable {
    var segment: Int
    var offset: Int
    var length: Int
}

extension DeliveryStateMachine {
    /// Records accepted while the memory quota was full, written to the spool only, in acceptance order. The
    /// spool's drainer reads them back into batches as the quota frees, oldest first; while any wait, new records
    /// spill too, so that none overtakes them.
    ///
    /// Invariants: entries are in id order; only the first may be partly appended; an entry is read only once its
    /// write ended (it has a location); `records` is the count of ids not appended yet.
    struct SpillQueue {
        struct Entry {
            let seq: Int
            let ids: Range<UInt64>
            let key: BatchKey
            let observer: RecordObserver
            /// Where its records are in the spool; `nil` while they are being written.
            var location: SpillLocation?
            /// How many of its first records were appended into batches.
            var appended = 0
            /// Everything failed while it was being written: it fails as soon as its write ends.
            var failOnWrite = false

            /// The ids not appended yet.
            var remaining: Range<UInt64> { (self.ids.lowerBound + UInt64(self.appended))..<self.ids.upperBound }
        }

        private(set) var entries = Deque<Entry>()
        private(set) var nextSeq = 0
        /// Records on disk only.
        private(set) var records = 0
        /// The drainer, parked until there is something to read or room for what it read: none or one. Held in
        /// an array, not an optional: a waiter (a checked continuation) has a resilient layout, which an optional
        /// stored here would give the whole machine, every field then reached through runtime metadata.
        private var parked: [Waiter] = []
        var drainer: Waiter? { self.parked.first }
        /// The bytes the parked drainer waits to fit, when it parked while a fill held quota reserved: the fill's
        /// end may give it that room.
        private(set) var drainerRoomDuringFill: Int?

        var isEmpty: Bool { self.entries.isEmpty }
        /// Every entry with a lower seq was appended or failed.
        var drainedBefore: Int { self.entries.first?.seq ?? self.nextSeq }

        mutating func add(ids: Range<UInt64>, key: BatchKey, observer: RecordObserver) -> Int {
            let seq = self.nextSeq
            self.nextSeq += 1
            self.entries.append(Entry(seq: seq, ids: ids, key: key, observer: observer))
            self.records += ids.count
            return seq
        }

        private func index(of seq: Int) -> Int? {
            // Seqs ascend: the entry is at most `seq - first` from the front.
            guard let first = self.entries.first?.seq, seq >= first else { return nil }
            let guess = min(seq - first, self.entries.count - 1)
            for index in stride(from: guess, through: 0, by: -1) where self.entries[index].seq == seq { return index }
            return nil
        }

        /// The write of `seq` ended: the entry, when it must fail now (everything failed meanwhile; it is taken out).
        mutating func written(_ seq: Int, at location: SpillLocation) -> Entry? {
            guard let index = self.index(of: seq) else { return nil }
            if self.entries[index].failOnWrite { return self.remove(at: index) }
            self.entries[index].location = location
            return nil
        }

        /// Takes an entry out (its write failed, or it fails); its records are no longer counted.
        @discardableResult
        mutating func remove(_ seq: Int) -> Entry? {
            self.index(of: seq).map { self.remove(at: $0) }
        }

        private mutating func remove(at index: Int) -> Entry {
            let entry = self.entries.remove(at: index)
            self.records -= entry.remaining.count
            return entry
        }

        /// `count` more records of the first entry were appended; whether it is done (and gone).
        mutating func appended(_ count: Int) -> Bool {
            guard !self.entries.isEmpty else { return false }
            self.entries[0].appended += count
            self.records -= count
            precondition(self.entries[0].appended <= self.entries[0].ids.count, "appended more records than were spilled")
            guard self.entries[0].appended == self.entries[0].ids.count else { return false }
            self.entries.removeFirst()
            return true
        }

        /// Everything fails: the entries written (to fail now, taken out); those being written fail when written.
        mutating func failAll() -> [Entry] {
            var failed: [Entry] = []
            var index = 0
            while index < self.entries.count {
                if self.entries[index].location == nil {
                    self.entries[index].failOnWrite = true
                    index += 1
                } else {
                    failed.append(self.remove(at: index))
                }
            }
            return failed
        }

        mutating func park(_ drainer: Waiter, duringFillFor bytes: Int? = nil) {
            precondition(self.parked.isEmpty, "one drainer at a time")
            self.parked.append(drainer)
            self.drainerRoomDuringFill = bytes
        }

        /// Hands the parked drainer to `resumed`.
        mutating func resumeDrainer(into resumed: inout [Waiter]) {
            self.drainerRoomDuringFill = nil
            guard let drainer = self.parked.popLast() else { return }
            resumed.append(drainer)
        }

        mutating func takeDrainer() -> Waiter? {
            self.drainerRoomDuringFill = nil
            return self.parked.popLast()
        }

        /// The parked drainer no longer waits on a fill (no fill holds quota now: only an ack gives it room).
        mutating func forgetDrainerDuringFill() {
            self.drainerRoomDuringFill = nil
        }
    }

    /// What the drainer does next.
    enum SpillStep: Equatable {
        /// Read the first entry's records at `location`, skipping the first `skip` (appended already).
        case read(seq: Int, ids: Range<UInt64>, location: SpillLocation, skip: Int)
        /// Nothing to read yet.
        case wait
        /// Nothing will be: the client closed.
        case stop
    }
}

extension DeliveryStateMachine.SpillQueue: Sendable where Waiter: Sendable {}
