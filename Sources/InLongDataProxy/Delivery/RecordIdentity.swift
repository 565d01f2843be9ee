import Synchronization

/// The identity of one record accepted by a ``DataProxyClient``: unique within the client, increasing in the
/// order records were accepted. Returned by `send`, named by the ``DeliveryReport`` that ends the record.
public struct DataProxyRecordID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "#\(self.rawValue)" }
}

/// A set of record ids, kept as ascending runs: records accepted together take consecutive ids, so a batch or a
/// `send(contentsOf:)` call is usually one run however many records it holds.
public struct DataProxyRecordIDs: Sequence, Hashable, Sendable, CustomStringConvertible {
    /// Ascending, disjoint and not adjacent.
    public private(set) var runs: [Range<UInt64>]
    public private(set) var count: Int

    public init() {
        self.runs = []
        self.count = 0
    }

    public init(_ run: Range<UInt64>) {
        self.runs = run.isEmpty ? [] : [run]
        self.count = run.count
    }

    public var isEmpty: Bool { self.count == 0 }

    public func contains(_ id: DataProxyRecordID) -> Bool {
        // Binary search for the last run starting at or before the id.
        var low = 0
        var high = self.runs.count
        while low < high {
            let middle = (low + high) / 2
            if self.runs[middle].lowerBound <= id.rawValue { low = middle + 1 } else { high = middle }
        }
        return low > 0 && self.runs[low - 1].contains(id.rawValue)
    }

    /// Adds ids above every id held (ids are handed out in increasing order).
    mutating func append(_ run: Range<UInt64>) {
        guard !run.isEmpty else { return }
        if let last = self.runs.last, last.upperBound == run.lowerBound {
            self.runs[self.runs.count - 1] = last.lowerBound..<run.upperBound
        } else {
            precondition(self.runs.last.map { $0.upperBound <= run.lowerBound } ?? true, "record ids out of order")
            self.runs.append(run)
        }
        self.count += run.count
    }

    mutating func append(_ id: UInt64) {
        // The per-record path: the id usually extends the last run, changed in place.
        let last = self.runs.count - 1
        if last >= 0, self.runs[last].upperBound == id {
            self.runs.withUnsafeMutableBufferPointer { runs in runs[last] = runs[last].lowerBound..<(id + 1) }
            self.count += 1
            return
        }
        self.append(id..<(id + 1))
    }

    /// Adds the ids of `other`, in any order relative to these.
    public mutating func formUnion(_ other: DataProxyRecordIDs) {
        guard !other.isEmpty else { return }
        if let last = self.runs.last, let first = other.runs.first, last.upperBound <= first.lowerBound {
            for run in other.runs { self.append(run) }
            return
        }
        var merged: [Range<UInt64>] = []
        for run in (self.runs + other.runs).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, run.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<Swift.max(last.upperBound, run.upperBound)
            } else {
                merged.append(run)
            }
        }
        self.runs = merged
        self.count = merged.reduce(0) { $0 + $1.count }
    }

    public func makeIterator() -> Iterator {
        Iterator(runs: self.runs)
    }

    public struct Iterator: IteratorProtocol {
        let runs: [Range<UInt64>]
        var run = 0
        var upcoming: UInt64?

        init(runs: [Range<UInt64>]) {
            self.runs = runs
            self.upcoming = runs.first?.lowerBound
        }

        public mutating func next() -> DataProxyRecordID? {
            guard let value = self.upcoming else { return nil }
            if value + 1 < self.runs[self.run].upperBound {
                self.upcoming = value + 1
            } else {
                self.run += 1
                self.upcoming = self.run < self.runs.count ? self.runs[self.run].lowerBound : nil
            }
            return DataProxyRecordID(rawValue: value)
        }
    }

    public var underestimatedCount: Int { self.count }

    public var description: String {
        "[" + self.runs.map { $0.count == 1 ? "#\($0.lowerBound)" : "#\($0.lowerBound)..<#\($0.upperBound)" }.joined(separator: ", ") + "]"
    }
}

/// Where a client's record ids come from: one counter for the state machine's appends and the lanes' (which append
/// outside its lock), so that ids stay unique and increase in the order records were accepted, whichever way they
/// went. An id taken for a record that was then not accepted is given back when no other was taken since; otherwise
/// the ids skip it.
final class RecordIDSource: Sendable {
    private let counter = Atomic<UInt64>(0)

    /// The id the next record would take.
    var next: UInt64 { self.counter.load(ordering: .relaxed) }

    @inline(__always)
    func take() -> UInt64 {
        self.counter.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    func take(_ count: Int) -> Range<UInt64> {
        let first = self.counter.wrappingAdd(UInt64(count), ordering: .relaxed).oldValue
        return first..<first + UInt64(count)
    }

    /// Gives back `id`, taken last by a record that was not accepted.
    func giveBack(_ id: UInt64) {
        _ = self.counter.compareExchange(expected: id + 1, desired: id, ordering: .relaxed)
    }
}
