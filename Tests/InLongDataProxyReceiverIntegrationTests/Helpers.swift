import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import NIOCore
import Testing

/// Builds a type-7 frame.
func binaryFrame(
    _ records: [String],
    attributes: String = "groupId=test_group&streamId=test_stream",
    uniq: UInt32 = 1,
    extendedField: InLongExtendedField = .default,
    compress: Bool = false
) throws -> ByteBuffer {
    let message = try InLongBinaryMessage(
        records: records.map { InLongRecord($0) },
        attributes: attributes,
        uniq: uniq,
        dataTime: 1_700_000_000,
        extendedField: extendedField,
        compressionThreshold: compress ? 0 : nil
    )
    var buffer = ByteBuffer()
    try message.encode(into: &buffer)
    return buffer
}

/// Builds a text frame (types 2 to 6).
func textFrame(_ type: InLongMessageType, body: ByteBuffer, attributes: String) throws -> ByteBuffer {
    var buffer = ByteBuffer()
    try InLongTextMessage(type: type, body: body, attributes: attributes).encode(into: &buffer)
    return buffer
}

/// Replaces the digits of the time-valued attributes the server fills in (`rt`, `rtms`, `rtime2`) with `*`.
func maskTimes(_ attributes: String) -> String {
    attributes.split(separator: "&", omittingEmptySubsequences: false).map { entry -> String in
        for key in ["rt=", "rtms=", "rtime2="] where entry.hasPrefix(key) {
            return key + "*"
        }
        return String(entry)
    }.joined(separator: "&")
}

/// The ack a frame got, decoded; fails the test on anything else.
func readAck(_ client: RawClient, sourceLocation: SourceLocation = #_sourceLocation) async throws -> InLongResponse? {
    switch await client.read() {
    case .frame(let frame):
        return try InLongResponse(frame: frame)
    case .closed:
        Issue.record("connection closed instead of an ack", sourceLocation: sourceLocation)
        return nil
    case .timedOut:
        Issue.record("no ack", sourceLocation: sourceLocation)
        return nil
    }
}

/// The result of a type-7 ack.
func binaryAck(_ response: InLongResponse?) -> InLongBinaryAck? {
    if case .binaryAck(let ack) = response { return ack }
    Issue.record("expected a type-7 ack, got \(String(describing: response))")
    return nil
}

extension ByteBuffer {
    init(hex: String) { self.init(bytes: Hex.decode(hex)) }
}
