/// A frame, attribute string or record block that does not follow the wire format.
///
/// ``dataProxyErrorCode`` tells how the real DataProxy reacts to the same input: when it is set, the server answers
/// with that `errCode` and keeps the connection; when it is `nil`, the server closes the connection without a reply.
public struct InLongWireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What was wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case frameTooLarge, invalidFrameLength, truncatedFrame, unsupportedMessageType
            case invalidBodyLength, invalidAttributeLength, badMagic, inconsistentLengths
            case invalidAttributes, invalidRecordBlock, decompressionFailed, fieldOutOfRange
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The length prefix announces a frame above the configured limit.
        public static let frameTooLarge = Code(.frameTooLarge)
        /// The length prefix is zero or negative.
        public static let invalidFrameLength = Code(.invalidFrameLength)
        /// The frame is shorter than its fixed fields, or a length points past its end.
        public static let truncatedFrame = Code(.truncatedFrame)
        /// The type byte names no known message type (or a type not valid in this direction).
        public static let unsupportedMessageType = Code(.unsupportedMessageType)
        /// The body length is zero or negative.
        public static let invalidBodyLength = Code(.invalidBodyLength)
        /// The attribute length is negative.
        public static let invalidAttributeLength = Code(.invalidAttributeLength)
        /// The `0xEE01` trailer is missing.
        public static let badMagic = Code(.badMagic)
        /// The length fields do not add up to the frame length.
        public static let inconsistentLengths = Code(.inconsistentLengths)
        /// The attribute string breaks the server's `k=v&k=v` rules.
        public static let invalidAttributes = Code(.invalidAttributes)
        /// The record block inside the body is malformed.
        public static let invalidRecordBlock = Code(.invalidRecordBlock)
        /// The body is flagged as compressed but is not valid snappy, or is larger than allowed once decompressed.
        public static let decompressionFailed = Code(.decompressionFailed)
        /// A value does not fit its wire field (for example more than 65,535 records or 32,767 attribute bytes).
        public static let fieldOutOfRange = Code(.fieldOutOfRange)

        public var description: String {
            switch self.base {
            case .frameTooLarge: "frameTooLarge"
            case .invalidFrameLength: "invalidFrameLength"
            case .truncatedFrame: "truncatedFrame"
            case .unsupportedMessageType: "unsupportedMessageType"
            case .invalidBodyLength: "invalidBodyLength"
            case .invalidAttributeLength: "invalidAttributeLength"
            case .badMagic: "badMagic"
            case .inconsistentLengths: "inconsistentLengths"
            case .invalidAttributes: "invalidAttributes"
            case .invalidRecordBlock: "invalidRecordBlock"
            case .decompressionFailed: "decompressionFailed"
            case .fieldOutOfRange: "fieldOutOfRange"
            }
        }
    }

    /// What was wrong.
    public var code: Code
    /// A human-readable detail.
    public var detail: String
    /// The error code the real DataProxy answers with, or `nil` when it closes the connection instead.
    public var dataProxyErrorCode: DataProxyResultCode?
    /// The raw type byte of the offending frame, when it was read.
    public var typeByte: UInt8?
    /// The `uniq` of the offending type-7 frame, when it was read (the server echoes it in the error ack).
    public var uniq: UInt32?

    public init(
        _ code: Code,
        _ detail: String,
        dataProxyErrorCode: DataProxyResultCode? = nil,
        typeByte: UInt8? = nil,
        uniq: UInt32? = nil
    ) {
        self.code = code
        self.detail = detail
        self.dataProxyErrorCode = dataProxyErrorCode
        self.typeByte = typeByte
        self.uniq = uniq
    }

    /// Whether the real DataProxy closes the connection (no reply) on this input.
    public var closesConnection: Bool { self.dataProxyErrorCode == nil }

    public var description: String {
        var text = "InLong wire error \(self.code): \(self.detail)"
        if let code = self.dataProxyErrorCode { text += " (server errCode \(code))" }
        return text
    }
}
