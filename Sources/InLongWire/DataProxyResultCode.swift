/// The result code a DataProxy writes into an ack (`errCode`; `DataProxyErrCode` on the server): `success`, or why
/// the request was not stored. Not to be confused with `DataProxyError`'s code in the SDK, which says how a record
/// failed on the client's side (one of its reasons is a rejection with one of these).
///
/// Codes are open-ended: unknown values are kept and classified as fatal, so a newer server cannot make a client
/// retry forever. ``disposition`` says what a client should do with a record that got the code.
public struct DataProxyResultCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// What a client should do with a request answered with a code.
    public enum Disposition: Sendable, Hashable {
        /// The request was accepted.
        case success
        /// The request was not accepted, and may succeed if sent again (preferably to another proxy).
        case retriable
        /// The request will never be accepted as it is; retrying cannot help.
        case fatal
        /// The server reports an error, but the data is already stored (a duplicate): count it as acked.
        case delivered
    }

    public static let success = Self(rawValue: 0)
    public static let sinkServiceUnready = Self(rawValue: 1)
    public static let serviceClosed = Self(rawValue: 2)
    public static let configServiceUnready = Self(rawValue: 3)
    public static let illegalVisitIP = Self(rawValue: 10)
    /// HTTP source: the request could not be decoded.
    public static let httpDecodeRequestFailure = Self(rawValue: 31)
    /// HTTP source: a method other than `GET` or `POST`.
    public static let httpUnsupportedMethod = Self(rawValue: 32)
    /// HTTP source: the request URI is blank.
    public static let httpRequestURIBlank = Self(rawValue: 33)
    /// HTTP source: the request URI cannot be decoded.
    public static let httpDecodeRequestURIFailure = Self(rawValue: 34)
    /// HTTP source: a path other than `/dataproxy/message` or `/dataproxy/heartbeat`.
    public static let httpUnsupportedServiceURI = Self(rawValue: 35)
    /// HTTP source: a body that is not `application/x-www-form-urlencoded`.
    public static let httpUnsupportedContentType = Self(rawValue: 36)
    public static let fieldMagicNotEqual = Self(rawValue: 94)
    public static let fieldLengthValueNotEqual = Self(rawValue: 95)
    public static let uncompressDataError = Self(rawValue: 96)
    public static let missRequiredGroupID = Self(rawValue: 100)
    public static let missRequiredStreamID = Self(rawValue: 101)
    public static let missRequiredDataTime = Self(rawValue: 102)
    public static let missRequiredBody = Self(rawValue: 103)
    public static let bodyExceedMaxLength = Self(rawValue: 104)
    public static let bodyLengthZero = Self(rawValue: 105)
    public static let bodyLengthLessThanZero = Self(rawValue: 106)
    public static let attributeLengthLessThanZero = Self(rawValue: 107)
    public static let errorProcessLogic = Self(rawValue: 108)
    public static let splitAttributeError = Self(rawValue: 109)
    public static let unsupportedMessageType = Self(rawValue: 110)
    public static let emptyMessage = Self(rawValue: 111)
    public static let unsupportedExtendedFieldValue = Self(rawValue: 112)
    public static let unconfiguredGroupOrStream = Self(rawValue: 113)
    public static let putEventToChannelFailure = Self(rawValue: 114)
    public static let topicIsBlank = Self(rawValue: 115)
    public static let noAvailableProducer = Self(rawValue: 116)
    public static let producerIsNull = Self(rawValue: 117)
    public static let sendRequestToMQFailure = Self(rawValue: 118)
    public static let mqReturnError = Self(rawValue: 119)
    public static let duplicatedMessage = Self(rawValue: 120)
    public static let groupOrStreamNotConfigured = Self(rawValue: 121)
    public static let groupOrStreamInconsistent = Self(rawValue: 122)
    public static let messageBodyItemsInvalid = Self(rawValue: 123)
    public static let attributeOrderControlConflict = Self(rawValue: 150)
    public static let attributeProxyControlConflict = Self(rawValue: 151)
    public static let unknownError = Self(rawValue: 2_147_483_647)

    /// What a client should do with a request that got this code (wire-protocol.md §5.6).
    public var disposition: Disposition {
        switch self.rawValue {
        case 0: .success
        case 1, 2, 3, 114, 116, 117, 118, 119, 2_147_483_647: .retriable
        case 120: .delivered
        default: .fatal
        }
    }

    /// Whether a retry should go to another proxy and the current connection be dropped (the node is going away).
    public var shouldAvoidProxy: Bool {
        self == .serviceClosed || self == .sinkServiceUnready
    }

    /// The server's name for the code, or `UNKNOWN_<n>`.
    public var name: String {
        switch self.rawValue {
        case 0: "SUCCESS"
        case 1: "SINK_SERVICE_UNREADY"
        case 2: "SERVICE_CLOSED"
        case 3: "CONF_SERVICE_UNREADY"
        case 10: "ILLEGAL_VISIT_IP"
        case 31: "HTTP_DECODE_REQ_FAILURE"
        case 32: "HTTP_UNSUPPORTED_METHOD"
        case 33: "HTTP_REQ_URI_BLANK"
        case 34: "HTTP_DECODE_REQ_URI_FAILURE"
        case 35: "HTTP_UNSUPPORTED_SERVICE_URI"
        case 36: "HTTP_UNSUPPORTED_CONTENT_TYPE"
        case 94: "FIELD_MAGIC_NOT_EQUAL"
        case 95: "FIELD_LENGTH_VALUE_NOT_EQUAL"
        case 96: "UNCOMPRESS_DATA_ERROR"
        case 100: "MISS_REQUIRED_GROUPID_ARGUMENT"
        case 101: "MISS_REQUIRED_STREAMID_ARGUMENT"
        case 102: "MISS_REQUIRED_DT_ARGUMENT"
        case 103: "MISS_REQUIRED_BODY_ARGUMENT"
        case 104: "BODY_EXCEED_MAX_LEN"
        case 105: "BODY_LENGTH_ZERO"
        case 106: "BODY_LENGTH_LESS_ZERO"
        case 107: "ATTR_LENGTH_LESS_ZERO"
        case 108: "ERROR_PROCESS_LOGIC"
        case 109: "SPLIT_ATTR_ERROR"
        case 110: "UNSUPPORTED_MSG_TYPE"
        case 111: "EMPTY_MSG"
        case 112: "UNSUPPORTED_EXTEND_FIELD_VALUE"
        case 113: "UNCONFIGURED_GROUPID_OR_STREAMID"
        case 114: "PUT_EVENT_TO_CHANNEL_FAILURE"
        case 115: "TOPIC_IS_BLANK"
        case 116: "NO_AVAILABLE_PRODUCER"
        case 117: "PRODUCER_IS_NULL"
        case 118: "SEND_REQUEST_TO_MQ_FAILURE"
        case 119: "MQ_RETURN_ERROR"
        case 120: "DUPLICATED_MESSAGE"
        case 121: "GROUPID_OR_STREAMID_NOT_CONFIGURE"
        case 122: "GROUPID_OR_STREAMID_INCONSTANT"
        case 123: "MSG_BODY_ITEMS_INVALID"
        case 150: "ATTR_ORDER_CONTROL_CONFLICT_ERROR"
        case 151: "ATTR_PROXY_CONTROL_CONFLICT_ERROR"
        case 2_147_483_647: "UNKNOWN_ERROR"
        default: "UNKNOWN_\(self.rawValue)"
        }
    }

    public var description: String { "\(self.rawValue) \(self.name)" }
}
