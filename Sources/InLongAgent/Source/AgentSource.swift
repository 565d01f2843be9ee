import NIOCore

/// Records a source collected, and the position that marks them all delivered (InLong Agent's `SourceData`, one
/// per read rather than one per line, so that tracking costs nothing per record).
struct SourceData<Position: Sendable>: Sendable {
    var records: [ByteBuffer]
    /// Where each record starts in the source, when the sink sends it as an attribute (else empty).
    var offsets: [Int64]
    /// Each record's own attributes (a syslog message's header fields), when the source gives them (else empty).
    var attributes: [[(String, String)]] = []
    var position: Position
    /// Bytes of the source the read covered (newlines included): what the read takes of the byte budget.
    var bytes: Int

    init(records: [ByteBuffer], offsets: [Int64] = [], position: Position, bytes: Int) {
        self.records = records
        self.offsets = offsets
        self.position = position
        self.bytes = bytes
    }
}

/// Where an instance reads from (InLong Agent's Source): files first; standard input or a listener fit the
/// same shape. Used by one task at a time.
protocol AgentSource: AnyObject {
    associatedtype Position: Sendable

    /// What is there now, up to about `maxBytes`; `nil` when nothing new is complete. `now` times what waits for
    /// more (a multiline record's timeout). With `maxRecords` (a rate-limited read) the read is exact: at most that
    /// many records, and it ends with the record that reaches `maxBytes` (a record is never split).
    func read(maxBytes: Int, maxRecords: Int?, now: ContinuousClock.Instant) throws -> SourceData<Position>?
    /// The records of `position` ended (acked, or set aside as undeliverable): their position may be committed.
    func ack(_ position: Position)
    /// After a `read` found nothing: whether nothing more will come, so that the instance ends once its records
    /// ended.
    func isExhausted(now: ContinuousClock.Instant) -> Bool
    /// The records of the last `read` were handed to the sink (sent, owed or set aside): a source whose drain waits
    /// for them (a listener's queue at a stop) may count them as gone.
    func handedOn()
}

extension AgentSource {
    func handedOn() {}
}
