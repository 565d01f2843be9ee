/// What the spool knows about its segment files, as a pure machine: which record ids each segment holds, which
/// ids ended (acked or failed, and reported), and so which segments can go. Records may end before their write
/// reached the spool (a batch sealed and acked while the appending call was still writing), so ended ids are
/// kept until the segment that holds them is collected, whatever the order.
struct SpoolState {
    struct Segment: Hashable {
        let number: Int
        var bytes = 0
        var ids = IDRuns()
        /// No more writes go to it: it can be deleted once every id in it ended.
        var sealed = false
    }

    /// Oldest first; the last is the one written to.
    private(set) var segments: [Segment]
    private(set) var ended = IDRuns()
    private var nextNumber: Int
    let segmentBytes: Int

    init(segmentBytes: Int, firstSegment: Int) {
        precondition(segmentBytes > 0)
        self.segmentBytes = segmentBytes
        self.nextNumber = firstSegment
        self.segments = [Segment(number: firstSegment)]
    }

    /// The segment written to, `nil` once the last was sealed and collected.
    var current: Segment? { self.segments.last.flatMap { $0.sealed ? nil : $0 } }
    var totalBytes: Int { self.segments.reduce(0) { $0 + $1.bytes } }

    /// Bytes written to segment `number` so far.
    func bytes(of number: Int) -> Int {
        self.segments.last(where: { $0.number == number })?.bytes ?? 0
    }

    /// Before a write of `bytes`: the segment to write to, and whether it is a new one (the previous is sealed,
    /// and may be deleted at once when everything in it ended).
    mutating func segment(forWriteOf bytes: Int) -> (number: Int, isNew: Bool, delete: [Int]) {
        if let current = self.current, current.bytes == 0 || current.bytes + bytes <= self.segmentBytes {
            return (current.number, false, [])
        }
        if !self.segments.isEmpty { self.segments[self.segments.count - 1].sealed = true }
        self.nextNumber += 1
        self.segments.append(Segment(number: self.nextNumber))
        return (self.nextNumber, true, self.collect())
    }

    /// A write of the records `ids` (`bytes` long) reached segment `number`.
    mutating func wrote(_ ids: some Sequence<Range<UInt64>>, bytes: Int, to number: Int) {
        guard let index = self.segments.firstIndex(where: { $0.number == number }) else { return }
        self.segments[index].bytes += bytes
        for run in ids { self.segments[index].ids.insert(run) }
    }

    /// Records ended; the segments that now hold nothing unended, to delete.
    mutating func ended(_ ids: some Sequence<Range<UInt64>>) -> [Int] {
        for run in ids { self.ended.insert(run) }
        return self.collect()
    }

    /// Seals the segment written to (the client closes): it too goes once everything in it ended.
    mutating func sealCurrent() -> [Int] {
        if !self.segments.isEmpty { self.segments[self.segments.count - 1].sealed = true }
        return self.collect()
    }

    private mutating func collect() -> [Int] {
        var deleted: [Segment] = []
        self.segments.removeAll { segment in
            guard segment.sealed, segment.ids.runs.allSatisfy({ self.ended.contains($0) }) else { return false }
            deleted.append(segment)
            return true
        }
        // Each id is written once: the ended ids of a deleted segment are never needed again.
        for segment in deleted { for run in segment.ids.runs { self.ended.remove(run) } }
        return deleted.map(\.number)
    }
}

/// Ascending, disjoint, non-adjacent id ranges.
struct IDRuns: Hashable {
    private(set) var runs: [Range<UInt64>] = []

    /// The index of the first run ending after `id`.
    private func firstRun(endingAfter id: UInt64) -> Int {
        var low = 0
        var high = self.runs.count
        while low < high {
            let middle = (low + high) / 2
            if self.runs[middle].upperBound <= id { low = middle + 1 } else { high = middle }
        }
        return low
    }

    mutating func insert(_ run: Range<UInt64>) {
        guard !run.isEmpty else { return }
        // Runs touching or overlapping `run` merge with it.
        var start = self.firstRun(endingAfter: run.lowerBound)
        if start > 0, self.runs[start - 1].upperBound == run.lowerBound { start -= 1 }
        var end = start
        var merged = run
        while end < self.runs.count, self.runs[end].lowerBound <= merged.upperBound {
            merged = min(merged.lowerBound, self.runs[end].lowerBound)..<max(merged.upperBound, self.runs[end].upperBound)
            end += 1
        }
        self.runs.replaceSubrange(start..<end, with: [merged])
    }

    mutating func remove(_ run: Range<UInt64>) {
        guard !run.isEmpty else { return }
        let start = self.firstRun(endingAfter: run.lowerBound)
        var end = start
        var pieces: [Range<UInt64>] = []
        while end < self.runs.count, self.runs[end].lowerBound < run.upperBound {
            let existing = self.runs[end]
            if existing.lowerBound < run.lowerBound { pieces.append(existing.lowerBound..<run.lowerBound) }
            if existing.upperBound > run.upperBound { pieces.append(run.upperBound..<existing.upperBound) }
            end += 1
        }
        self.runs.replaceSubrange(start..<end, with: pieces)
    }

    var isEmpty: Bool { self.runs.isEmpty }

    func contains(_ run: Range<UInt64>) -> Bool {
        guard !run.isEmpty else { return true }
        let index = self.firstRun(endingAfter: run.lowerBound)
        return index < self.runs.count && self.runs[index].lowerBound <= run.lowerBound && self.runs[index].upperBound >= run.upperBound
    }

    func intersects(_ run: Range<UInt64>) -> Bool {
        guard !run.isEmpty else { return false }
        let index = self.firstRun(endingAfter: run.lowerBound)
        return index < self.runs.count && self.runs[index].lowerBound < run.upperBound
    }
}
