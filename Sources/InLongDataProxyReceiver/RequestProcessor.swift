import InLongSnappy
package import InLongWire
package import NIOCore

/// What the receiver does with one request frame: the DataProxy's validation and reply rules as a pure function
/// of the frame, with no I/O (wire-protocol.md §5 and §7). `package` for the fuzz targets.
package struct RequestProcessor: Sendable {
    /// The `dpIp` written in acks.
    var proxyIP: String
    /// The receiver's port, which the real server writes as `node2ip` on traced requests.
    var localPort: Int
    /// Groups the receiver accepts; `nil` accepts any. Others get error 115, as a proxy with no topic for them.
    var knownGroups: Set<String>?
    /// Whether records are split out of the body for the sink.
    var decodesRecords: Bool
    /// The load reported in type-8 replies; `nil` sends 0xFFFF like the stock server.
    var load: Int16?
    /// The largest decompressed body accepted.
    var maxUncompressedLength: Int

    package init(
        proxyIP: String,
        localPort: Int,
        knownGroups: Set<String>?,
        decodesRecords: Bool,
        load: Int16?,
        maxUncompressedLength: Int
    ) {
        self.proxyIP = proxyIP
        self.localPort = localPort
        self.knownGroups = knownGroups
        self.decodesRecords = decodesRecords
        self.load = load
        self.maxUncompressedLength = maxUncompressedLength
    }

    package enum Outcome {
        /// Answer with these bytes: a heartbeat reply (`error` nil) or an error ack.
        case reply(ByteBuffer, error: DataProxyResultCode?)
        /// Nothing to answer (an error on a request that asked for no ack).
        case noReply(DataProxyResultCode?)
        /// Hand the message to the sink, then answer with `ack`.
        case deliver(ReceivedMessage, PendingAck)
        /// Close the connection without a reply, as the server does on malformed framing.
        case close(InLongWireError)
    }

    /// How to answer a data request once the sink has taken it (or failed to).
    package struct PendingAck: Sendable {
        enum Kind: Sendable {
            case binary(uniq: UInt32)
            case text(InLongMessageType, body: ByteBuffer)
        }

        var kind: Kind
        /// The request's attributes as sent.
        var requestAttributes: String
        /// What the success path prepends to them (`rtms`, trace or `rt`).
        var successPrefix: String
        /// Whether any reply is sent (`isAck=false`, and text types with `proxySend`/`syncSend`, get none).
        var replies: Bool

        package func success(proxyIP: String) -> ByteBuffer? {
            guard self.replies else { return nil }
            return self.frame(
                join("dpIp=\(proxyIP)", self.successPrefix, self.requestAttributes),
                orElse: join("dpIp=\(proxyIP)", self.successPrefix)
            )
        }

        package func failure(_ code: DataProxyResultCode, message: String, proxyIP: String) -> ByteBuffer? {
            guard self.replies else { return nil }
            return self.frame(
                errorAttributes(proxyIP: proxyIP, code: code, message: message, request: self.requestAttributes),
                orElse: errorAttributes(
                    proxyIP: proxyIP,
                    code: code,
                    message: String(decoding: message.utf8.prefix(256), as: UTF8.self),
                    request: ""
                )
            )
        }

        /// The reply with `attributes`, or with `shorter` (without the request's attributes echoed) when those do
        /// not fit the reply's 16-bit attribute length: invalid UTF-8 in a request's attributes grows threefold
        /// once decoded, and the request must still be acked.
        private func frame(_ attributes: String, orElse shorter: String) -> ByteBuffer {
            var buffer = ByteBuffer()
            do {
                try self.encode(attributes, into: &buffer)
            } catch {
                buffer.clear()
                // Short attributes fit whatever the request held.
                try? self.encode(shorter, into: &buffer)
            }
            return buffer
        }

        private func encode(_ attributes: String, into buffer: inout ByteBuffer) throws {
            switch self.kind {
            case .binary(let uniq):
                try InLongBinaryAck(uniq: uniq, attributes: attributes).encode(into: &buffer)
            case .text(let type, let body):
                try InLongTextMessage(type: type, body: body, attributes: attributes).encode(into: &buffer)
            }
        }
    }

    package func process(_ frame: ByteBuffer, receivedAt: Int64, clientAddress: String) -> Outcome {
        let request: InLongRequest
        do {
            request = try InLongRequest(frame: frame)
        } catch {
            return self.reject(frame, error)
        }
        switch request {
        case .heartbeat:
            return .reply(ByteBuffer(bytes: InLongTextHeartbeat.response), error: nil)
        case .binaryHeartbeat(let heartbeat):
            var buffer = ByteBuffer()
            let response = InLongBinaryHeartbeatResponse(
                dataTime: UInt32(truncatingIfNeeded: receivedAt / 1000),
                bodyVersion: heartbeat.bodyVersion,
                load: self.load.flatMap { $0 > 0 ? $0 : nil } ?? InLongBinaryHeartbeatResponse.unknownLoad,
                attributes: heartbeat.attributes
            )
            try? response.encode(into: &buffer)
            return .reply(buffer, error: nil)
        case .binary(let message):
            return self.process(message, receivedAt: receivedAt, clientAddress: clientAddress)
        case .text(let message):
            return self.process(message, receivedAt: receivedAt, clientAddress: clientAddress)
        }
    }

    // MARK: Type 7

    private func process(_ message: InLongBinaryMessage, receivedAt: Int64, clientAddress: String) -> Outcome {
        let lenient = InLongAttributes(parsingLeniently: message.attributes)
        var ack = PendingAck(
            kind: .binary(uniq: message.uniq),
            requestAttributes: message.attributes,
            successPrefix: "",
            replies: lenient["isAck"] != "false"
        )
        func fail(_ code: DataProxyResultCode, _ text: String) -> Outcome {
            ack.failure(code, message: text, proxyIP: self.proxyIP).map { .reply($0, error: code) } ?? .noReply(code)
        }
        if !message.extendedField.isDisjoint(with: [.fileCheckIndex, .index]) {
            return fail(.unsupportedExtendedFieldValue, "unsupported extendField value \(message.extendedField.rawValue)")
        }
        let attributes: InLongAttributes
        do {
            attributes = try InLongAttributes(parsing: message.attributes)
        } catch {
            return fail(.splitAttributeError, "attribute string cannot be split")
        }
        let group: String
        let stream: String
        if message.extendedField.contains(.stringIdentifiers) {
            guard let name = attributes["groupId"], !name.allSatisfy(\.isWhitespace) else {
                return fail(.missRequiredGroupID, "groupId is required")
            }
            group = name
            stream = attributes["streamId"] ?? ""
        } else {
            guard message.groupIDNum != 0 else { return fail(.missRequiredGroupID, "groupIdNum is required") }
            // Numeric ids need the proxy's id table, which a local receiver does not have.
            return fail(
                .groupOrStreamNotConfigured,
                "groupIdNum=(\(message.groupIDNum)), streamIdNum=(\(message.streamIDNum)) not configured"
            )
        }
        if let knownGroups = self.knownGroups, !knownGroups.contains(group) {
            return fail(.topicIsBlank, "Topic not configured for groupId=(\(group)), streamId=(\(stream))")
        }
        let dataTime = message.dataTime == 0 ? receivedAt : Int64(message.dataTime) * 1000

        var records: [ReceivedRecord] = []
        var recordCount = max(Int(message.count), 1)
        if self.decodesRecords {
            let decoded: [InLongRecord]
            do {
                decoded = try message.records(maxUncompressedLength: self.maxUncompressedLength)
            } catch {
                return error.code == .decompressionFailed
                    ? fail(.uncompressDataError, "body cannot be decompressed")
                    : fail(.messageBodyItemsInvalid, "record block is malformed")
            }
            guard !decoded.isEmpty else { return fail(.messageBodyItemsInvalid, "record block holds no record") }
            records = receivedRecords(decoded, dataTime: dataTime)
            recordCount = records.count
        }

        var prefix: [String] = []
        if attributes["rtms"] == nil { prefix.append("rtms=\(receivedAt)") }
        if message.extendedField.contains(.trace) {
            prefix.append("node2ip=\(self.localPort)")
            prefix.append("rtime2=\(receivedAt)")
        }
        ack.successPrefix = prefix.joined(separator: "&")
        let received = ReceivedMessage(
            group: group,
            stream: stream,
            messageType: .binaryMultiBody,
            dataTime: dataTime,
            receivedAt: receivedAt,
            clientAddress: clientAddress,
            attributes: message.attributes,
            recordCount: recordCount,
            payloadBytes: uncompressedSize(message),
            records: records
        )
        return .deliver(received, ack)
    }

    // MARK: Types 2 to 6

    private func process(_ message: InLongTextMessage, receivedAt: Int64, clientAddress: String) -> Outcome {
        let lenient = InLongAttributes(parsingLeniently: message.attributes)
        let sinkAck = lenient["proxySend"] == "true" || lenient["syncSend"] == "true"
        var ack = PendingAck(
            kind: .text(message.type, body: message.type == .originalReturn ? message.body : InLongTextMessage.ackBody),
            requestAttributes: message.attributes,
            successPrefix: "",
            // Text types have no sink ack: with proxySend/syncSend the server never answers them.
            replies: lenient["isAck"] != "false" && !sinkAck
        )
        func fail(_ code: DataProxyResultCode, _ text: String) -> Outcome {
            ack.failure(code, message: text, proxyIP: self.proxyIP).map { .reply($0, error: code) } ?? .noReply(code)
        }
        let attributes: InLongAttributes
        do {
            attributes = try InLongAttributes(parsing: message.attributes)
        } catch {
            return fail(.splitAttributeError, "attribute string cannot be split")
        }
        guard let group = attributes["groupId"], !group.allSatisfy(\.isWhitespace) else {
            return fail(.missRequiredGroupID, "groupId is required")
        }
        let stream = attributes["streamId"] ?? ""
        if let knownGroups = self.knownGroups, !knownGroups.contains(group) {
            return fail(.topicIsBlank, "Topic not configured for groupId=(\(group)), streamId=(\(stream))")
        }
        var body = message.body
        if let compression = attributes["cp"], !compression.allSatisfy(\.isWhitespace) {
            do {
                body = try body.snappyDecompressed(maxLength: self.maxUncompressedLength)
            } catch {
                return fail(.uncompressDataError, "body cannot be decompressed")
            }
        }
        let dataTime = attributes["dt"].flatMap { Int64($0) } ?? receivedAt
        let bodies: [InLongRecord]
        switch message.type {
        case .multiBody:
            guard let items = try? InLongRecordBlock.decode(body, extendedField: []), !items.isEmpty else {
                return fail(.messageBodyItemsInvalid, "no valid item in the body")
            }
            bodies = items
        case .multiBodyAttributes:
            if let items = try? InLongRecordBlock.decode(body, extendedField: .perRecordAttributes), !items.isEmpty {
                bodies = items
            } else {
                bodies = [InLongRecord(data: body)]
            }
        case .originalReturn:
            bodies = [InLongRecord(data: body)]
        case .commonService, .ackService:
            bodies = splitLines(body, stripTrailingNewline: attributes["mt"] != "pb")
            guard !bodies.isEmpty else { return fail(.missRequiredBody, "body is empty") }
        case .heartbeat, .binaryMultiBody, .binaryHeartbeat:
            preconditionFailure("not a text type: \(message.type)")
        }

        var prefix: [String] = []
        if attributes["rt"] == nil { prefix.append("rt=\(receivedAt)") }
        if attributes["rtms"] == nil { prefix.append("rtms=\(receivedAt)") }
        ack.successPrefix = prefix.joined(separator: "&")
        let received = ReceivedMessage(
            group: group,
            stream: stream,
            messageType: message.type,
            dataTime: dataTime,
            receivedAt: receivedAt,
            clientAddress: clientAddress,
            attributes: message.attributes,
            recordCount: bodies.count,
            payloadBytes: body.readableBytes,
            records: self.decodesRecords ? receivedRecords(bodies, dataTime: dataTime) : []
        )
        return .deliver(received, ack)
    }

    // MARK: Malformed frames

    /// The reply to a frame the decoder refused: an error ack when the server answers that input, else close.
    private func reject(_ frame: ByteBuffer, _ error: InLongWireError) -> Outcome {
        guard let code = error.dataProxyErrorCode, let typeByte = error.typeByte,
            let type = InLongMessageType(typeByte: typeByte)
        else {
            return .close(error)
        }
        let attributes = peekAttributes(frame, type: type)
        if InLongAttributes(parsingLeniently: attributes)["isAck"] == "false" { return .noReply(code) }
        let kind: PendingAck.Kind
        if type == .binaryMultiBody {
            kind = .binary(uniq: error.uniq ?? 0)
        } else if type.isText {
            kind = .text(type, body: InLongTextMessage.ackBody)
        } else {
            return .close(error)
        }
        let ack = PendingAck(kind: kind, requestAttributes: attributes, successPrefix: "", replies: true)
        return ack.failure(code, message: error.detail, proxyIP: self.proxyIP).map { .reply($0, error: code) } ?? .noReply(code)
    }
}

private func join(_ parts: String...) -> String {
    parts.filter { !$0.isEmpty }.joined(separator: "&")
}

func errorAttributes(proxyIP: String, code: DataProxyResultCode, message: String, request: String) -> String {
    join("dpIp=\(proxyIP)", "errCode=\(code.rawValue)", "errMsg=\(message)", request)
}

/// The records for the sink, each with its own `dt` attribute as data time when it has one.
private func receivedRecords(_ records: [InLongRecord], dataTime: Int64) -> [ReceivedRecord] {
    records.map { record in
        let ownTime = record.attributes.flatMap { InLongAttributes(parsingLeniently: $0)["dt"] }.flatMap { Int64($0) }
        return ReceivedRecord(body: record.data, attributes: record.attributes, dataTime: ownTime ?? dataTime)
    }
}

/// The attributes of a frame that failed validation, read where its lengths say they are, or "" when they point
/// outside the frame.
private func peekAttributes(_ frame: ByteBuffer, type: InLongMessageType) -> String {
    let base = frame.readerIndex
    let size = frame.readableBytes
    if type == .binaryMultiBody {
        guard let bodyLength = frame.getInteger(at: base + 21, as: Int32.self) else { return "" }
        let offset = 25 + Int(bodyLength)
        guard offset >= 25, offset + 2 <= size, let length = frame.getInteger(at: base + offset, as: Int16.self),
            length > 0, offset + 2 + Int(length) <= size
        else { return "" }
        return frame.getString(at: base + offset + 2, length: Int(length)) ?? ""
    }
    guard let bodyLength = frame.getInteger(at: base + 5, as: Int32.self) else { return "" }
    let offset = 9 + Int(bodyLength)
    guard offset >= 9, offset + 4 <= size, let length = frame.getInteger(at: base + offset, as: Int32.self),
        length > 0, offset + 4 + Int(length) <= size
    else { return "" }
    return frame.getString(at: base + offset + 4, length: Int(length)) ?? ""
}

/// Text types 2 and 3: records separated by `\n`, one trailing `\n` or `\r\n` stripped unless `mt=pb`.
private func splitLines(_ body: ByteBuffer, stripTrailingNewline: Bool) -> [InLongRecord] {
    var end = body.writerIndex
    let view = body.readableBytesView
    if stripTrailingNewline, view.last == UInt8(ascii: "\n") {
        end -= 1
        if end > body.readerIndex, body.getInteger(at: end - 1, as: UInt8.self) == UInt8(ascii: "\r") { end -= 1 }
    }
    var records: [InLongRecord] = []
    var start = body.readerIndex
    var index = start
    while index < end {
        if body.getInteger(at: index, as: UInt8.self) == UInt8(ascii: "\n") {
            if index > start { records.append(InLongRecord(data: body.getSlice(at: start, length: index - start)!)) }
            start = index + 1
        }
        index += 1
    }
    if end > start { records.append(InLongRecord(data: body.getSlice(at: start, length: end - start)!)) }
    return records
}

private func uncompressedSize(_ message: InLongBinaryMessage) -> Int {
    guard message.isCompressed else { return message.body.readableBytes }
    return message.body.withUnsafeReadableBytes { try? Snappy.uncompressedLength(of: $0) } ?? message.body.readableBytes
}
