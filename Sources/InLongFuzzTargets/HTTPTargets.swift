import InLongDataProxyReceiver
import InLongWire
import NIOCore

// MARK: Form encoding

/// Any bytes encoded as a form value decode back to themselves (both encoders alike), and any input decodes as
/// a form or throws, never traps.
func fuzzHTTPForm(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    let input = ByteBuffer(bytes: data)
    var fast = ByteBuffer()
    InLongHTTPForm.appendEncoded(input, to: &fast)
    var generic = ByteBuffer()
    InLongHTTPForm.appendEncoded(input.readableBytesView, to: &generic)
    try check(fast == generic, "the two encoders disagree")
    try check(!fast.readableBytesView.contains { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "=") || $0 == UInt8(ascii: "\n") }, "an encoded value holds a separator")
    do {
        let decoded = try InLongHTTPForm.decodeComponent(fast.readableBytesView)
        try check(decoded == input, "a value does not round-trip")
    } catch let error as FuzzFailure {
        throw error
    } catch {
        throw FuzzFailure("an encoded value does not decode: \(error)")
    }
    _ = try? InLongHTTPForm.decode(input)
}

// MARK: The receiver's HTTP source

private let httpProcessor = HTTPMessageProcessor(knownGroups: nil, maxBodyLength: 1 << 16)

/// The input as a form body and as a query: every outcome is an answer with the server's JSON, or a message
/// whose records are non-empty, hold no separator, and add up to what it counts.
func fuzzReceiverHTTPRequest(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    let body = ByteBuffer(bytes: data)
    let requests = [
        HTTPMessageProcessor.Request(
            method: "POST",
            path: InLongHTTPForm.messagePath,
            query: nil,
            contentType: InLongHTTPForm.contentType,
            contentLength: body.readableBytes,
            close: false,
            body: body
        ),
        HTTPMessageProcessor.Request(
            method: "GET",
            path: InLongHTTPForm.messagePath,
            query: String(decoding: data, as: UTF8.self),
            contentType: nil,
            contentLength: nil,
            close: false,
            body: ByteBuffer()
        ),
    ]
    for request in requests {
        switch httpProcessor.process(request, receivedAt: 1_700_000_000_456, clientAddress: "10.0.0.2:50000", decodesRecords: true) {
        case .notFound:
            throw FuzzFailure("the message path was left unanswered")
        case .answer(let answer):
            try check(answer.code != .success, "a message request answered success without delivering")
            try check(answer.body.hasPrefix(#"{"code":""#) || answer.callback != nil, "answer \(answer.body)")
        case .deliver(let message, _, _):
            try check(!message.records.isEmpty, "delivered no record")
            try check(message.records.count == message.recordCount, "\(message.records.count) records, \(message.recordCount) counted")
            try check(message.records.allSatisfy { $0.body.readableBytes > 0 }, "an empty record")
        }
    }
}
