package import InLongWire
package import NIOCore

/// What the receiver's HTTP source does with one request: DataProxy's HTTP source rules (method, path, content
/// type, then `groupId`, `streamId`, topic, `dt`, `body`, its length, `cnt`, in that order, each with the server's
/// code) as a pure function of the request, with no I/O. `package` for the fuzz targets and tests.
package struct HTTPMessageProcessor: Sendable {
    /// Groups accepted; `nil` accepts any. Others get error 115, as a proxy with no topic for them.
    var knownGroups: Set<String>?
    /// The longest decoded `body` accepted.
    var maxBodyLength: Int

    package init(knownGroups: Set<String>?, maxBodyLength: Int) {
        self.knownGroups = knownGroups
        self.maxBodyLength = maxBodyLength
    }

    /// One HTTP request, as far as the rules read it.
    package struct Request: Sendable {
        package var method: String
        /// The path, as sent.
        package var path: String
        /// The query string without `?`, or `nil`.
        package var query: String?
        package var contentType: String?
        package var contentLength: Int?
        /// Whether the client asked to close the connection (`Connection: close`).
        package var close: Bool
        package var body: ByteBuffer

        package init(
            method: String,
            path: String,
            query: String?,
            contentType: String?,
            contentLength: Int?,
            close: Bool,
            body: ByteBuffer
        ) {
            self.method = method
            self.path = path
            self.query = query
            self.contentType = contentType
            self.contentLength = contentLength
            self.close = close
            self.body = body
        }
    }

    /// The JSON answer (always HTTP 200, as the server answers every outcome it judged).
    package struct Answer: Sendable, Hashable {
        package var code: DataProxyResultCode
        package var message: String
        package var callback: String?
        /// Whether the connection closes after the answer: on every error before the message is read, and when
        /// the client asked.
        package var close: Bool

        package init(code: DataProxyResultCode, message: String, callback: String?, close: Bool) {
            self.code = code
            self.message = message
            self.callback = callback
            self.close = close
        }

        package var body: String { InLongHTTPForm.answer(self.code, message: self.message, callback: self.callback) }

        static func success(callback: String?, close: Bool) -> Answer {
            Answer(code: .success, message: "Ok", callback: callback, close: close)
        }
    }

    package enum Outcome: Sendable {
        /// Answer without storing anything.
        case answer(Answer)
        /// A path the server leaves unanswered (`/favicon.ico`).
        case notFound
        /// Hand the message to the sink; answer success, or the failure's code.
        case deliver(ReceivedMessage, callback: String?, close: Bool)
    }

    package func process(_ request: Request, receivedAt: Int64, clientAddress: String, decodesRecords: Bool) -> Outcome {
        func reject(_ code: DataProxyResultCode, _ message: String) -> Outcome {
            .answer(Answer(code: code, message: message, callback: nil, close: true))
        }
        guard request.method == "GET" || request.method == "POST" else {
            return reject(.httpUnsupportedMethod, "Only support [GET, POST] methods")
        }
        switch request.path {
        case InLongHTTPForm.heartbeatPath:
            return .answer(.success(callback: nil, close: request.close))
        case InLongHTTPForm.messagePath:
            break
        case "/favicon.ico":
            return .notFound
        default:
            return reject(
                .httpUnsupportedServiceURI,
                "Only support [\(InLongHTTPForm.heartbeatPath), \(InLongHTTPForm.messagePath)] paths!"
            )
        }
        // Fields of the body override those of the query, as the server reads the query first.
        var fields: [String: ByteBuffer] = [:]
        do {
            if let query = request.query {
                for (name, value) in try InLongHTTPForm.decode(ByteBuffer(string: query)) where fields[name] == nil {
                    fields[name] = value
                }
            }
            if request.method == "POST", (request.contentLength ?? request.body.readableBytes) > 0,
                let contentType = request.contentType?.trimmingWhitespace(), !contentType.isEmpty
            {
                guard contentType.lowercased() == InLongHTTPForm.contentType else {
                    return reject(.httpUnsupportedContentType, "Only support [\(InLongHTTPForm.contentType)] content type!")
                }
                var seen: Set<String> = []
                for (name, value) in try InLongHTTPForm.decode(request.body) where seen.insert(name).inserted {
                    fields[name] = value
                }
            }
        } catch {
            // The server's form decoder throws, and its handler answers any throw this way.
            return reject(.unknownError, "Process message failure: \(error.detail)")
        }
        return self.message(fields, request: request, receivedAt: receivedAt, clientAddress: clientAddress, decodesRecords: decodesRecords)
    }

    private func message(
        _ fields: [String: ByteBuffer],
        request: Request,
        receivedAt: Int64,
        clientAddress: String,
        decodesRecords: Bool
    ) -> Outcome {
        let callback = fields[InLongHTTPForm.Field.callback].map { String(buffer: $0) }
        func answer(_ code: DataProxyResultCode, _ message: String) -> Outcome {
            .answer(Answer(code: code, message: message, callback: callback, close: request.close))
        }
        guard let group = fields[InLongHTTPForm.Field.group].map({ String(buffer: $0) }), !group.isBlank else {
            return answer(.missRequiredGroupID, "Field groupId must exist and not blank!")
        }
        guard let stream = fields[InLongHTTPForm.Field.stream].map({ String(buffer: $0) }), !stream.isBlank else {
            return answer(.missRequiredStreamID, "Field streamId must exist and not blank!")
        }
        if let knownGroups = self.knownGroups, !knownGroups.contains(group) {
            return answer(.topicIsBlank, "Topic not configured for groupId(\(group)),streamId(\(stream))")
        }
        let dataTime = fields[InLongHTTPForm.Field.dataTime].flatMap { Int64(String(buffer: $0)) } ?? receivedAt
        guard let body = fields[InLongHTTPForm.Field.body] else {
            return answer(.missRequiredBody, "Field body is not exist!")
        }
        guard body.readableBytesView.contains(where: { !isWhitespace($0) }) else {
            return answer(.emptyMessage, "Field body is Blank!")
        }
        guard body.readableBytes <= self.maxBodyLength else {
            return answer(
                .bodyExceedMaxLength,
                "Error msg, the body length(\(body.readableBytes)) is bigger than allowed length(\(self.maxBodyLength))"
            )
        }
        let count = fields[InLongHTTPForm.Field.count].flatMap { Int(String(buffer: $0)) } ?? 1
        // A one-byte `delimiter` other than `\n` separates the records; anything else means `\n`.
        let separator = fields[InLongHTTPForm.Field.delimiter].flatMap { $0.readableBytes == 1 ? $0.getInteger(at: $0.readerIndex, as: UInt8.self) : nil }
            ?? UInt8(ascii: "\n")
        let records = split(body, on: separator).map { ReceivedRecord(body: $0, dataTime: dataTime) }
        let attributes = "groupId=\(group)&streamId=\(stream)&dt=\(dataTime)&clientIp=\(clientAddress)&cnt=\(count)&rt=\(receivedAt)"
        let message = ReceivedMessage(
            group: group,
            stream: stream,
            // Records separated by newlines, as in a type-2 body: the TCP type an HTTP message resembles.
            messageType: .commonService,
            dataTime: dataTime,
            receivedAt: receivedAt,
            clientAddress: clientAddress,
            attributes: attributes,
            recordCount: records.count,
            payloadBytes: body.readableBytes,
            records: decodesRecords ? records : []
        )
        return .deliver(message, callback: callback, close: request.close)
    }
}

/// The non-empty pieces of `body` between separators; slices share its storage.
private func split(_ body: ByteBuffer, on separator: UInt8) -> [ByteBuffer] {
    var pieces: [ByteBuffer] = []
    let view = body.readableBytesView
    var start = view.startIndex
    for index in view.indices where view[index] == separator {
        if index > start { pieces.append(body.getSlice(at: start, length: index - start)!) }
        start = index + 1
    }
    if view.endIndex > start { pieces.append(body.getSlice(at: start, length: view.endIndex - start)!) }
    return pieces
}

/// Java's `Character.isWhitespace` for the bytes `StringUtils.isBlank` meets in practice.
private func isWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || (0x09...0x0D).contains(byte) || (0x1C...0x1F).contains(byte)
}

extension String {
    fileprivate var isBlank: Bool { self.utf8.allSatisfy(isWhitespace) }

    fileprivate func trimmingWhitespace() -> String {
        let bytes = self.utf8
        guard let first = bytes.firstIndex(where: { !isWhitespace($0) }), let last = bytes.lastIndex(where: { !isWhitespace($0) }) else { return "" }
        return String(self[first...last])
    }
}
