public import InLongWire
public import NIOCore

/// One record as the receiver got it.
public struct ReceivedRecord: Sendable, Hashable {
    /// The record's bytes.
    public var body: ByteBuffer
    /// The record's own attributes (type-7 extended-field bit 0, type 6), or `nil`.
    public var attributes: String?
    /// The record's data time in milliseconds since the epoch: its own `dt` attribute when it has one, else the
    /// message's.
    public var dataTime: Int64

    public init(body: ByteBuffer, attributes: String? = nil, dataTime: Int64) {
        self.body = body
        self.attributes = attributes
        self.dataTime = dataTime
    }
}

/// A decoded data request (types 2 to 7) handed to a ``DataProxyReceiverSink``.
public struct ReceivedMessage: Sendable {
    /// The InLong group (`groupId` attribute).
    public var group: String
    /// The InLong stream (`streamId` attribute; may be empty on text types).
    public var stream: String
    /// The request type.
    public var messageType: InLongMessageType
    /// The message's data time in milliseconds since the epoch (header or `dt`, else the receive time).
    public var dataTime: Int64
    /// When the receiver got the frame, in milliseconds since the epoch.
    public var receivedAt: Int64
    /// The client's address, `ip:port`.
    public var clientAddress: String
    /// The request's attribute string as sent.
    public var attributes: String
    /// How many records the message holds.
    public var recordCount: Int
    /// The records' bytes once decompressed (record-block framing included for type 7).
    public var payloadBytes: Int
    /// The records, in order; empty when the sink said it does not need them
    /// (``DataProxyReceiverSink/needsRecords``).
    public var records: [ReceivedRecord]

    public init(
        group: String,
        stream: String,
        messageType: InLongMessageType,
        dataTime: Int64,
        receivedAt: Int64,
        clientAddress: String,
        attributes: String,
        recordCount: Int,
        payloadBytes: Int,
        records: [ReceivedRecord]
    ) {
        self.group = group
        self.stream = stream
        self.messageType = messageType
        self.dataTime = dataTime
        self.receivedAt = receivedAt
        self.clientAddress = clientAddress
        self.attributes = attributes
        self.recordCount = recordCount
        self.payloadBytes = payloadBytes
        self.records = records
    }
}
