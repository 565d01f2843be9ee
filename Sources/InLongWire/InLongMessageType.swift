/// The message type: the low 5 bits of the type byte at offset 4 of every frame.
public enum InLongMessageType: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Text heartbeat; the reply is the fixed 5-byte frame `00 00 00 01 01`.
    case heartbeat = 1
    /// Text records separated by `\n`.
    case commonService = 2
    /// Text records separated by `\n`, acked.
    case ackService = 3
    /// Text; the ack echoes the request body.
    case originalReturn = 4
    /// Text body of `len(4) data` records.
    case multiBody = 5
    /// Text body of records with per-record attributes.
    case multiBodyAttributes = 6
    /// Binary multi-record message with a numeric header and the `0xEE01` trailer: the default data message.
    case binaryMultiBody = 7
    /// Binary heartbeat; the reply carries the proxy's load.
    case binaryHeartbeat = 8

    /// The mask that selects the type from the type byte; the upper bits are flags.
    public static let typeMask: UInt8 = 0x1F

    /// Reads the type from a raw type byte, ignoring flag bits.
    public init?(typeByte: UInt8) {
        self.init(rawValue: typeByte & Self.typeMask)
    }

    /// Whether this is one of the text ("protocol") message types 2 to 6.
    public var isText: Bool { (2...6).contains(self.rawValue) }

    public var description: String {
        switch self {
        case .heartbeat: "heartbeat(1)"
        case .commonService: "commonService(2)"
        case .ackService: "ackService(3)"
        case .originalReturn: "originalReturn(4)"
        case .multiBody: "multiBody(5)"
        case .multiBodyAttributes: "multiBodyAttributes(6)"
        case .binaryMultiBody: "binaryMultiBody(7)"
        case .binaryHeartbeat: "binaryHeartbeat(8)"
        }
    }
}

/// Flag bits of the extended field of a type-7 message (offset 9).
public struct InLongExtendedField: OptionSet, Sendable, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Each record is followed by its own attributes: `len(4) data attrLen(4) attr`.
    public static let perRecordAttributes = InLongExtendedField(rawValue: 0x0001)
    /// Trace: the client adds `node1ip`/`rtime1`, the server `node2ip`/`rtime2`.
    public static let trace = InLongExtendedField(rawValue: 0x0002)
    /// Group and stream ids are strings in the attributes; the numeric header ids are ignored.
    public static let stringIdentifiers = InLongExtendedField(rawValue: 0x0004)
    /// File-check index message; rejected by the server (error 112).
    public static let fileCheckIndex = InLongExtendedField(rawValue: 0x0008)
    /// Index message; rejected by the server (error 112).
    public static let index = InLongExtendedField(rawValue: 0x0010)
    /// The body is one length-prefixed chunk whose records are separated by `\n`.
    public static let newlineSeparatedBody = InLongExtendedField(rawValue: 0x0020)

    /// What the C++ and Java SDKs send, and this package's default: string ids in the attributes.
    public static let `default`: InLongExtendedField = .stringIdentifiers
}

/// Constants of the wire format.
public enum InLongWireConstants {
    /// The trailer of every type-7 and type-8 frame.
    public static let magic: UInt16 = 0xEE01
    /// Type-byte flag: the type-7 body is snappy-compressed.
    public static let snappyFlag: UInt8 = 0x20
    /// The frame limit the stock server and the Java and Go SDKs use, counting the length prefix.
    public static let defaultMaxFrameSize = 65536
    /// The default DataProxy TCP port.
    public static let defaultPort = 46801
    /// The largest attribute string a type-7 message can carry (the server reads the length as signed 16 bits).
    public static let maxBinaryAttributeLength = Int(Int16.max)
}
