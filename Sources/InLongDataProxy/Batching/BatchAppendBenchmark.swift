public import NIOCore

/// Not API: the batch accumulator's append-and-seal paths, driven as the client drives them, for the benchmarks
/// in `Benchmarks/` (a package of its own, which sees public symbols only). Every sealed batch is dropped as the
/// dispatcher drops an encoded one: its block recycled, its quota released.
@_spi(Benchmarks)
public struct BatchAppendBenchmark {
    private var accumulator: BatchAccumulator
    private var nextID: UInt64 = 0
    private let key = BatchKey(group: "bench", stream: "s", perRecordAttributes: false)
    private let now = ContinuousClock.now
    /// Batches sealed so far.
    public private(set) var sealedBatches = 0
    /// Records appended so far.
    public private(set) var appendedRecords = 0

    /// An accumulator with the client's default batching and buffer limits.
    public init() {
        let configuration = DataProxyClient.Configuration(proxies: [])
        self.accumulator = BatchAccumulator(
            limits: .init(
                maxRecords: configuration.batching.maxRecords,
                maxBytes: DataProxyClient.blockLimit(configuration.batching, frameSize: configuration.batching.maxFrameSize),
                linger: configuration.batching.linger,
                quotaBytes: configuration.buffer.maxBytes,
                quotaRecords: configuration.buffer.maxRecords
            )
        )
    }

    /// Appends `count` records one at a time, as `send` does, taking them from `records` in turn.
    public mutating func appendOneByOne(_ records: [ByteBuffer], count: Int) {
        let now = self.now
        for index in 0..<count {
            switch self.accumulator.append(
                records[index % records.count], attributes: nil, key: self.key, id: self.nextID, now: now, wallSeconds: 0
            ) {
            case .accepted, .acceptedFull: break
            case .acceptedAndSealed(var batch): self.drop(&batch)
            case .full, .noRoomToSeal: preconditionFailure("the quota is released as batches seal")
            }
            self.nextID += 1
        }
        self.appendedRecords += count
    }

    /// Appends `records` as one run, as `send(contentsOf:)` does.
    public mutating func appendRun(_ records: [ByteBuffer]) {
        let (appended, sealedBatches) = self.accumulator.appendRun(records[...], key: self.key, firstID: self.nextID, now: self.now, wallSeconds: 0)
        var sealed = consume sealedBatches
        precondition(appended == records.count, "the quota is released as batches seal")
        for index in sealed.indices { self.drop(&sealed[index]) }
        self.nextID += UInt64(appended)
        self.appendedRecords += appended
    }

    /// Appends the newline-delimited records of `lines`, as `send(lines:)` does.
    public mutating func appendLines(_ lines: ByteBuffer) {
        var run = lines.withUnsafeReadableBytes { bytes in
            self.accumulator.appendDelimited(
                bytes, from: 0, delimiter: UInt8(ascii: "\n"), key: self.key, firstID: self.nextID, now: self.now, wallSeconds: 0
            )
        }
        precondition(run.end == lines.readableBytes && run.stop == .end, "the quota is released as batches seal")
        for index in run.sealed.indices { self.drop(&run.sealed[index]) }
        self.nextID += UInt64(run.appended)
        self.appendedRecords += run.appended
    }

    private mutating func drop(_ batch: inout SealedBatch) {
        self.sealedBatches += 1
        self.accumulator.release(bytes: batch.chargedBytes, records: batch.recordCount)
        // Taken out of the batch, so that the block is recycled uniquely referenced, as an encoded batch's is.
        let block = batch.block
        batch.block = ByteBuffer()
        self.accumulator.recycle(block)
    }
}
