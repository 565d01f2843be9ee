/// The open batches by key, with the key last looked up and its index remembered: a sender appending record after
/// record to one stream then costs a comparison of the key per record rather than a hash of its strings. The
/// remembered index is forgotten by every change that may move entries (an insertion, a removal).
struct OpenBatches {
    typealias Index = Dictionary<BatchKey, BatchAccumulator.OpenBatch>.Index

    private(set) var batches: [BatchKey: BatchAccumulator.OpenBatch] = [:]
    private var last: (key: BatchKey, index: Index)?

    /// The index of `key`'s batch, if it has one.
    @inline(__always)
    mutating func index(forKey key: BatchKey) -> Index? {
        if let last = self.last, last.key == key { return last.index }
        guard let index = self.batches.index(forKey: key) else { return nil }
        self.last = (key, index)
        return index
    }

    /// The batch at `index`, changed in place (no entry moves).
    subscript(index: Index) -> BatchAccumulator.OpenBatch {
        get { self.batches.values[index] }
        _modify { yield &self.batches.values[index] }
    }

    mutating func remove(at index: Index) -> BatchAccumulator.OpenBatch {
        self.last = nil
        return self.batches.remove(at: index).value
    }

    mutating func removeValue(forKey key: BatchKey) -> BatchAccumulator.OpenBatch? {
        self.last = nil
        return self.batches.removeValue(forKey: key)
    }

    /// Opens `batch` for `key`, which has none.
    mutating func insert(_ batch: BatchAccumulator.OpenBatch, forKey key: BatchKey) {
        self.last = nil
        self.batches[key] = batch
    }
}
