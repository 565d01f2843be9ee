import InLongWire
import NIOCore

/// The most a fuzzed compressed body may expand to, so that memory stays bounded.
let maxUncompressedLength = 1 << 20

// MARK: Frame decoder

func fuzzFrameDecoder(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    for frame in candidateFrames(data) {
        try decodeFrame(frame)
    }
}

/// The input as a frame and again with its length prefix fixed (so that mutations reach past the first check),
/// behind a few bytes already read (decoders must honour `readerIndex`).
func candidateFrames(_ data: UnsafeRawBufferPointer) -> [ByteBuffer] {
    let frame = ByteBuffer(bytes: data)
    guard data.count >= 4 else { return [frame] }
    var fixed = ByteBuffer(bytes: [0xA5, 0xA5, 0xA5])
    fixed.writeInteger(UInt32(data.count - 4))
    fixed.writeBytes(UnsafeRawBufferPointer(rebasing: data[4...]))
    fixed.moveReaderIndex(forwardBy: 3)
    return [frame, fixed]
}

/// Decodes `frame` as the receiver (request) and the client (response) do, and checks that whatever decodes
/// survives re-encoding.
func decodeFrame(_ frame: ByteBuffer) throws(FuzzFailure) {
    if let request = try? InLongRequest(frame: frame) {
        switch request {
        case .heartbeat:
            try check(frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self)! & 0x1F == 1, "not a type-1 frame")
        case .text(let message):
            try checkReencoding(message)
        case .binary(let message):
            try checkReencoding(message)
            try checkRecords(message)
        case .binaryHeartbeat(let heartbeat):
            try checkReencoding(heartbeat)
        }
    }
    if let response = try? InLongResponse(frame: frame) {
        switch response {
        case .heartbeat: break
        case .textAck(let ack): try checkReencoding(ack)
        case .binaryAck(let ack): try checkReencoding(ack)
        case .binaryHeartbeat(let reply): try checkReencoding(reply)
        }
    }
}

protocol WireFrame: Hashable {
    init(frame: ByteBuffer) throws(InLongWireError)
    func encode(into buffer: inout ByteBuffer) throws(InLongWireError)
    var frameLength: Int { get }
}

extension InLongBinaryMessage: WireFrame {}
extension InLongTextMessage: WireFrame {}
extension InLongBinaryAck: WireFrame {}
extension InLongBinaryHeartbeat: WireFrame {}
extension InLongBinaryHeartbeatResponse: WireFrame {}

/// A decoded frame, encoded, must decode to the same value.
func checkReencoding<Frame: WireFrame>(_ value: Frame) throws(FuzzFailure) {
    var buffer = ByteBuffer()
    do {
        try value.encode(into: &buffer)
    } catch {
        // Invalid UTF-8 decodes to U+FFFD, three bytes per bad byte, which may outgrow a 16-bit length field.
        try check(error.code == .fieldOutOfRange, "decoded \(Frame.self) does not encode: \(error)")
        return
    }
    try check(
        buffer.readableBytes == value.frameLength,
        "\(Frame.self) encodes to \(buffer.readableBytes) bytes, frameLength says \(value.frameLength)"
    )
    let decoded: Frame
    do {
        decoded = try Frame(frame: buffer)
    } catch {
        throw FuzzFailure("re-encoded \(Frame.self) does not decode: \(error); frame \(hex(buffer))")
    }
    try check(decoded == value, "\(Frame.self) changes when re-encoded: \(value) became \(decoded)")
}

/// The records of a type-7 body, written back as a record block, must decode to the same records.
func checkRecords(_ message: InLongBinaryMessage) throws(FuzzFailure) {
    guard let records = try? message.records(maxUncompressedLength: maxUncompressedLength), !records.isEmpty else {
        return
    }
    var block = ByteBuffer()
    if message.extendedField.contains(.newlineSeparatedBody) {
        var chunk = ByteBuffer()
        for (index, record) in records.enumerated() {
            try check(!record.data.readableBytesView.contains(UInt8(ascii: "\n")), "record holds a newline")
            if index > 0 { chunk.writeInteger(UInt8(ascii: "\n")) }
            chunk.writeImmutableBuffer(record.data)
        }
        block.writeInteger(UInt32(chunk.readableBytes))
        block.writeImmutableBuffer(chunk)
    } else {
        let withAttributes = message.extendedField.contains(.perRecordAttributes)
        for record in records {
            try check(record.data.readableBytes > 0, "empty record")
            try check((record.attributes != nil) == withAttributes, "per-record attributes do not follow the flag")
            InLongRecordBlock.write(record.data, attributes: record.attributes, into: &block)
        }
    }
    let decoded: [InLongRecord]
    do {
        decoded = try InLongRecordBlock.decode(block, extendedField: message.extendedField)
    } catch {
        throw FuzzFailure("rewritten record block does not decode: \(error)")
    }
    try check(decoded == records, "records change when their block is rewritten")
}

// MARK: Framer

/// The first byte picks the chunk size and the frame limit; the rest is a byte stream. The stream is framed the
/// way the client's codec delimits replies (`InLongFraming.frameLength`) in one piece, and by the receiver's
/// `InLongFrameDecoder` fed in chunks: both must cut the same frames and fail at the same place.
func fuzzFramer(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    guard let first = data.first else { return }
    let chunkSize = Int(first & 0x3F) + 1
    let maxFrameSize = first & 0x40 != 0 ? 512 : InLongWireConstants.defaultMaxFrameSize
    let stream = ByteBuffer(bytes: data.dropFirst())

    var rest = stream
    var frames: [ByteBuffer] = []
    var failed = false
    while true {
        let length: Int?
        do {
            length = try InLongFraming.frameLength(in: rest, maxFrameSize: maxFrameSize)
        } catch {
            failed = true
            break
        }
        guard let length, rest.readableBytes >= length else { break }
        try check((5...maxFrameSize).contains(length), "frame length \(length) outside 5...\(maxFrameSize)")
        let frame = rest.readSlice(length: length)!
        try check(Int(frame.getInteger(at: frame.readerIndex, as: UInt32.self)!) + 4 == length, "length prefix")
        frames.append(frame)
    }

    let processor = NIOSingleStepByteToMessageProcessor(InLongFrameDecoder(maxFrameSize: maxFrameSize))
    var chunkedFrames: [ByteBuffer] = []
    var chunkedFailed = false
    var offset = 0
    do {
        while offset < stream.readableBytes {
            let chunk = stream.getSlice(at: offset, length: min(chunkSize, stream.readableBytes - offset))!
            offset += chunk.readableBytes
            try processor.process(buffer: chunk) { chunkedFrames.append($0) }
        }
    } catch {
        chunkedFailed = true
    }
    try check(chunkedFailed == failed, "chunked framing \(chunkedFailed ? "failed" : "passed"), whole did not")
    try check(chunkedFrames == frames, "chunked framing cut \(chunkedFrames.count) frames, whole \(frames.count)")

    for frame in frames {
        try decodeFrame(frame)
    }
}

// MARK: Acks

func fuzzBinaryAck(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    for frame in candidateFrames(data) {
        if let ack = try? InLongBinaryAck(frame: frame) {
            try checkReencoding(ack)
            try checkAckResult(ack.attributes)
        }
        if let ack = try? InLongTextMessage(frame: frame) {
            try checkReencoding(ack)
            try checkAckResult(ack.attributes)
        }
    }
    try checkAckResult(String(decoding: data, as: UTF8.self))
}

/// The client's fast read of an ack must agree with the lenient attribute parser it mirrors.
func checkAckResult(_ attributes: String) throws(FuzzFailure) {
    let result = InLongAckResult(attributes: attributes)
    let parsed = InLongAttributes(parsingLeniently: attributes)
    try check(result.proxyIP == parsed["dpIp"], "dpIp \(String(describing: result.proxyIP)) in '\(attributes)'")
    try check(
        result.errorMessage == parsed["errMsg"],
        "errMsg \(String(describing: result.errorMessage)) in '\(attributes)'"
    )
    if let code = parsed["errCode"] {
        if let number = Int(code) {
            try check(result.errorCode.rawValue == number, "errCode \(result.errorCode) in '\(attributes)'")
        }
    } else {
        try check(result.errorCode == .success, "errCode \(result.errorCode) without one in '\(attributes)'")
    }
}

// MARK: Heartbeats

func fuzzHeartbeat(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    for frame in candidateFrames(data) {
        let request = try? InLongBinaryHeartbeat(frame: frame)
        let response = try? InLongBinaryHeartbeatResponse(frame: frame)
        // Requests and responses share the type-8 layout and its checks.
        try check((request == nil) == (response == nil), "type-8 request and response decoders disagree")
        if let request {
            try checkReencoding(request)
        }
        if let response {
            try checkReencoding(response)
            try check(response.reportedLoad.map { $0 > 0 } ?? true, "reported load \(response.load)")
        }
        if let request, let response {
            try check(
                request.dataTime == response.dataTime && request.bodyVersion == response.bodyVersion
                    && request.attributes == response.attributes,
                "type-8 fields read differently as request and response"
            )
            let load =
                request.body.readableBytes == 2
                ? request.body.getInteger(at: request.body.readerIndex, as: Int16.self) : -1
            try check(response.load == load, "load \(response.load) from a \(request.body.readableBytes)-byte body")
        }
        if case .heartbeat = try? InLongRequest(frame: frame) {
            try check(frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self)! & 0x1F == 1, "not a type-1 frame")
        }
    }
}

// MARK: Attributes

func fuzzAttributes(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    let text = String(decoding: data, as: UTF8.self)
    let lenient = InLongAttributes(parsingLeniently: text)
    for entry in lenient {
        try check(lenient[entry.key] != nil, "lenient lookup misses key '\(entry.key)' in '\(text)'")
    }
    if let strict = try? InLongAttributes(parsing: text) {
        // Accepted entries are trimmed and hold one `=`: their wire form parses back to them, strictly or not.
        let encoded = strict.encoded
        let again: InLongAttributes
        do {
            again = try InLongAttributes(parsing: encoded)
        } catch {
            throw FuzzFailure("'\(encoded)', encoded from accepted '\(text)', is refused: \(error)")
        }
        try check(again == strict, "'\(text)' parses to \(strict.entries), its encoding to \(again.entries)")
        try check(
            InLongAttributes(parsingLeniently: encoded).entries == strict.entries,
            "'\(encoded)' parses differently leniently"
        )
        for entry in strict {
            try check(strict[entry.key] == entry.value, "strict lookup of '\(entry.key)' in '\(text)'")
        }
    }
    if InLongAttributes.isValidComponent(text) {
        let single = "\(text)=\(text)"
        let parsed: InLongAttributes
        do {
            parsed = try InLongAttributes(parsing: single)
        } catch {
            throw FuzzFailure("'\(single)' of a valid component is refused: \(error)")
        }
        try check(parsed.entries == [.init(key: text, value: text)], "'\(single)' parses to \(parsed.entries)")
    }
}

// MARK: Helpers

func hex(_ bytes: some Sequence<UInt8>, limit: Int = 512) -> String {
    var result = ""
    for (index, byte) in bytes.enumerated() {
        if index == limit { return result + "..." }
        result += String(byte, radix: 16).count == 1 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
    }
    return result
}

func hex(_ buffer: ByteBuffer) -> String { hex(buffer.readableBytesView) }
