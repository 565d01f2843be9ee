public import InLongTransport
public import NIOCore

/// One record handed to ``DataProxyClient/send(contentsOf:group:stream:)``.
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
    /// From the batch's first write to its ack.
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

    public var group: String
    public var stream: String
    /// Records in the batch.
    public var recordCount: Int
    public var outcome: Outcome
    /// The records' bodies, only for failed batches (so an application can keep or resend them).
    public var failedRecords: [ByteBuffer]

    public var isAcked: Bool {
        if case .acked = self.outcome { return true }
        return false
    }
}
