import InLongDataProxyReceiver
import InLongWire
import NIOCore
import Testing

/// DataProxy's HTTP source rules, one per test line: the code and message the real server answers.
@Suite struct HTTPMessageProcessorTests {
    let processor = HTTPMessageProcessor(knownGroups: ["g", "other"], maxBodyLength: 64)

    func post(
        _ form: String,
        path: String = InLongHTTPForm.messagePath,
        method: String = "POST",
        query: String? = nil,
        contentType: String? = InLongHTTPForm.contentType,
        close: Bool = false
    ) -> HTTPMessageProcessor.Outcome {
        let request = HTTPMessageProcessor.Request(
            method: method,
            path: path,
            query: query,
            contentType: contentType,
            contentLength: form.utf8.count,
            close: close,
            body: ByteBuffer(string: form)
        )
        return self.processor.process(request, receivedAt: 1_000, clientAddress: "127.0.0.1:5", decodesRecords: true)
    }

    func answer(_ outcome: HTTPMessageProcessor.Outcome) -> HTTPMessageProcessor.Answer? {
        if case .answer(let answer) = outcome { return answer }
        return nil
    }

    @Test func requestsOutsideTheAPIAreRefusedAndClosed() {
        #expect(self.answer(self.post("", method: "PUT")) == .init(code: .httpUnsupportedMethod, message: "Only support [GET, POST] methods", callback: nil, close: true))
        let path = self.answer(self.post("", path: "/other"))
        #expect(path?.code == .httpUnsupportedServiceURI)
        #expect(path?.message == "Only support [/dataproxy/heartbeat, /dataproxy/message] paths!")
        #expect(path?.close == true)
        #expect(self.answer(self.post("groupId=g", contentType: "application/json"))?.code == .httpUnsupportedContentType)
        // The server compares the whole header: a charset parameter is refused too.
        #expect(self.answer(self.post("groupId=g", contentType: "application/x-www-form-urlencoded; charset=UTF-8"))?.code == .httpUnsupportedContentType)
        guard case .notFound = self.post("", path: "/favicon.ico") else { Issue.record("favicon is left unanswered"); return }
    }

    @Test func heartbeatAnswersSuccess() {
        #expect(self.answer(self.post("", path: InLongHTTPForm.heartbeatPath, method: "GET"))?.body == #"{"code":"0","msg":"Ok"}"#)
    }

    @Test func fieldsAreCheckedInTheServersOrder() {
        #expect(self.answer(self.post("streamId=s&body=x"))?.code == .missRequiredGroupID)
        #expect(self.answer(self.post("groupId=+&streamId=s&body=x"))?.message == "Field groupId must exist and not blank!")
        #expect(self.answer(self.post("groupId=g&body=x"))?.code == .missRequiredStreamID)
        #expect(self.answer(self.post("groupId=unknown&streamId=s&body=x"))?.code == .topicIsBlank)
        #expect(self.answer(self.post("groupId=g&streamId=s"))?.code == .missRequiredBody)
        #expect(self.answer(self.post("groupId=g&streamId=s"))?.message == "Field body is not exist!")
        #expect(self.answer(self.post("groupId=g&streamId=s&body=+%0A"))?.code == .emptyMessage)
        let long = self.answer(self.post("groupId=g&streamId=s&body=" + String(repeating: "x", count: 65)))
        #expect(long?.code == .bodyExceedMaxLength)
        #expect(long?.message == "Error msg, the body length(65) is bigger than allowed length(64)")
        // Field errors answer without closing unless the client asked.
        #expect(self.answer(self.post("groupId=g&body=x"))?.close == false)
        #expect(self.answer(self.post("groupId=g&body=x", close: true))?.close == true)
    }

    @Test func aBadEscapeIsAnUnknownError() {
        #expect(self.answer(self.post("groupId=g&streamId=s&body=%G1"))?.code == .unknownError)
    }

    @Test func recordsAreSplitOnTheSeparator() throws {
        guard case .deliver(let message, let callback, _) = self.post("groupId=g&streamId=s&dt=1700000000000&cnt=3&body=a%0Ab+c%0A%0Ad&callback=cb")
        else {
            Issue.record("a valid message is delivered")
            return
        }
        #expect(message.group == "g")
        #expect(message.stream == "s")
        #expect(message.dataTime == 1_700_000_000_000)
        #expect(message.records.map { String(buffer: $0.body) } == ["a", "b c", "d"])
        #expect(message.recordCount == 3)
        #expect(callback == "cb")
        guard case .deliver(let delimited, _, _) = self.post("groupId=g&streamId=s&body=a%7Cb%0Ac&delimiter=%7C") else {
            Issue.record("a valid message is delivered")
            return
        }
        #expect(delimited.records.map { String(buffer: $0.body) } == ["a", "b\nc"])
    }

    @Test func queryFieldsCountAndTheBodyOverridesThem() {
        guard case .deliver(let message, _, _) = self.post("streamId=fromBody&body=x", query: "groupId=g&streamId=fromQuery&dt=oops") else {
            Issue.record("a valid message is delivered")
            return
        }
        #expect(message.stream == "fromBody")
        // A `dt` that is not a number means the receive time.
        #expect(message.dataTime == 1_000)
        guard case .deliver = self.post("", method: "GET", query: "groupId=g&streamId=s&body=x", contentType: nil) else {
            Issue.record("a GET with query fields is delivered")
            return
        }
    }

    @Test func answersAreDataProxysJSON() {
        #expect(InLongHTTPForm.answer(.success, message: "Ok") == #"{"code":"0","msg":"Ok"}"#)
        #expect(InLongHTTPForm.answer(.missRequiredBody, message: "a \"b\"", callback: "f") == #"f({"code":"103","msg":"a \"b\""})"#)
    }
}
