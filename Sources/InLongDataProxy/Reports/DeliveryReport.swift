public import InLongTransport
import InLongWire
public import NIOCore

/// One record handed to ``DataProxyClient/send(contentsOf:group:stream:attributes:)-(Sequence<DataProxyRecord>,_,_,_)``.
public struct DataProxyRecord: Sendable {
    /// The record's bytes; must not be empty.
    public var body: ByteBuffer
    /// The record's data time in milliseconds since the epoch, or `nil` for the batch's time.
    public var dataTime: Int64?
    /// The record's own attributes (sent with extended-field bit 0); keys and values must not contain `&` or `=`.
    public var attributes: [(String, String)]

    public init(_ body: ByteBuffer, dataTime: Int64? = nil, attributes: [(String, String)] = []) {
        self.body = body
        self.dataTime = dataTime
        self.attributes = attributes
    }

    public init(_ text: String, dataTime: Int64? = nil, attributes: [(String, String)] = []) {
        self.init(ByteBuffer(string: text), dataTime: dataTime, attributes: attributes)
    }
}

/// A proxy's ack of a batch.
public struct DataProxyAck: Sendable, Hashable {
    /// The proxy that acked.
    public var proxy: Endpoint
    /// The `dpIp` the proxy reported.
    public var proxyIP: String?
    /// From the moment the acked attempt was handed to a connection to its ack; time spent batching and in
    /// earlier attempts is not counted.
    public var latency: Duration
    /// Attempts it took.
    public var attempts: Int
}

/// The outcome of one batch of records: every record the client accepted is reported in exactly one.
public struct DeliveryReport: Sendable {
    public enum Outcome: Sendable {
        case acked(DataProxyAck)
        case failed(DataProxyError)
    }

    /// Where a failed batch's bodies can be read from: the encoded frame, or the record block when it was
    /// never encoded.
    enum Payload: Sendable {
        case frame(ByteBuffer)
        case block(ByteBuffer, perRecordAttributes: Bool)
    }

    public var group: String
    public var stream: String
    /// Exactly the records the batch held.
    public var records: DataProxyRecordIDs
    public var outcome: Outcome
    let payload: Payload?

    init(group: String, stream: String, records: DataProxyRecordIDs, outcome: Outcome, payload: Payload?) {
        self.group = group
        self.stream = stream
        self.records = records
        self.outcome = outcome
        self.payload = payload
    }

    /// Records in the batch.
    public var recordCount: Int { self.records.count }

    /// The records' bodies, in the order of ``records``, for failed batches (so that an application can keep or
    /// resend them); empty for acked ones. Decoded from the batch on each access.
    public var failedRecords: [ByteBuffer] {
        guard case .failed = self.outcome, let payload = self.payload else { return [] }
        switch payload {
        case .frame(let frame):
            return (try? InLongBinaryMessage(frame: frame).records())?.map(\.data) ?? []
        case .block(let block, let perRecordAttributes):
            let extendedField: InLongExtendedField = perRecordAttributes ? .perRecordAttributes : []
            return (try? InLongRecordBlock.decode(block, extendedField: extendedField))?.map(\.data) ?? []
        }
    }

    public var isAcked: Bool {
        if case .acked = self.outcome { return true }
        return false
    }
}
