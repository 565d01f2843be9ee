import InLongDataProxyReceiver
import InLongWire
import NIOCore

/// A receiver configuration and what it implies for the replies.
private struct Receiver {
    var decodesRecords: Bool
    var load: Int16?
    var processor: RequestProcessor

    init(knownGroups: Set<String>?, decodesRecords: Bool, load: Int16?, maxUncompressedLength: Int) {
        self.decodesRecords = decodesRecords
        self.load = load
        self.processor = RequestProcessor(
            proxyIP: "10.0.0.1",
            localPort: 46801,
            knownGroups: knownGroups,
            decodesRecords: decodesRecords,
            load: load,
            maxUncompressedLength: maxUncompressedLength
        )
    }
}

/// One open to any group that splits records; one with a group list, a reported load and a small decompression
/// limit that only counts them.
private let receivers = [
    Receiver(knownGroups: nil, decodesRecords: true, load: nil, maxUncompressedLength: maxUncompressedLength),
    Receiver(knownGroups: ["test_group"], decodesRecords: false, load: 35, maxUncompressedLength: 1 << 16),
]

func fuzzReceiverRequest(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    for frame in candidateFrames(data) {
        for receiver in receivers {
            try checkProcessing(frame, by: receiver)
        }
    }
}

/// Every answer is a well-formed reply to this request; the connection is closed only on frames that do not decode.
private func checkProcessing(_ frame: ByteBuffer, by receiver: Receiver) throws(FuzzFailure) {
    let request = try? InLongRequest(frame: frame)
    switch receiver.processor.process(frame, receivedAt: 1_700_000_000_456, clientAddress: "10.0.0.2:50000") {
    case .close(let error):
        try check(request == nil, "closed on a frame that decodes: \(error)")
    case .noReply:
        break
    case .reply(let reply, let error):
        try checkReply(reply, to: frame, error: error, load: receiver.load)
    case .deliver(let message, let ack):
        switch request {
        case .binary, .text: break
        default: throw FuzzFailure("delivered a frame that is not a data request")
        }
        try check(message.recordCount >= 1, "delivered \(message.recordCount) records")
        try check(
            receiver.decodesRecords ? message.records.count == message.recordCount : message.records.isEmpty,
            "\(message.records.count) records split, \(message.recordCount) counted"
        )
        if let reply = ack.success(proxyIP: "10.0.0.1") {
            try checkReply(reply, to: frame, error: nil, load: receiver.load)
        }
        if let reply = ack.failure(.topicIsBlank, message: "sink failed", proxyIP: "10.0.0.1") {
            try checkReply(reply, to: frame, error: .topicIsBlank, load: receiver.load)
        }
    }
}

private func checkReply(
    _ reply: ByteBuffer,
    to frame: ByteBuffer,
    error: DataProxyResultCode?,
    load: Int16?
) throws(FuzzFailure) {
    let response: InLongResponse
    do {
        response = try InLongResponse(frame: reply)
    } catch {
        throw FuzzFailure("reply \(hex(reply)) does not decode: \(error); request \(hex(frame))")
    }
    let typeByte = frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self)!
    switch (typeByte & InLongMessageType.typeMask, response) {
    case (1, .heartbeat):
        try check(reply.readableBytesView.elementsEqual(InLongTextHeartbeat.response), "type-1 reply")
    case (8, .binaryHeartbeat(let heartbeat)):
        let expected = load.flatMap { $0 > 0 ? $0 : nil } ?? InLongBinaryHeartbeatResponse.unknownLoad
        try check(heartbeat.load == expected, "heartbeat reply with load \(heartbeat.load)")
    case (7, .binaryAck(let ack)):
        let uniq = frame.getInteger(at: frame.readerIndex + 17, as: UInt32.self)
        try check(ack.uniq == uniq, "ack of uniq \(ack.uniq) to request uniq \(String(describing: uniq))")
        if let error { try check(ack.result.errorCode == error, "ack reports \(ack.result.errorCode), not \(error)") }
    case (2...6, .textAck(let ack)):
        try check(ack.type.rawValue == typeByte, "text ack of type \(ack.type) to type byte \(typeByte)")
        if let error {
            let reported = InLongAckResult(attributes: ack.attributes).errorCode
            try check(reported == error, "text ack reports \(reported), not \(error)")
        }
    default:
        throw FuzzFailure("reply \(response) to type byte \(typeByte)")
    }
}
