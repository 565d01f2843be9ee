import AsyncHTTPClient
import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import NIOCore
import NIOHTTP1
import Testing

/// DataProxy's HTTP API served by the receiver over loopback: the real server's answers, byte for byte, and the
/// records in the same sink and counters as TCP's.
@Suite struct ReceiverHTTPTests {
    static var configuration: DataProxyReceiver.Configuration {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.httpPort = 0
        configuration.knownGroups = ["g"]
        return configuration
    }

    /// Sends one request; the status, the body and whether the server asked to close.
    static func request(
        _ receiver: DataProxyReceiver,
        method: HTTPMethod = .POST,
        path: String = InLongHTTPForm.messagePath,
        form: String? = nil,
        contentType: String = InLongHTTPForm.contentType
    ) async throws -> (status: Int, body: String, close: Bool) {
        let address = try await receiver.httpLocalAddress()
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(address.port!)\(path)")
        request.method = method
        if let form {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(string: form))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body), response.headers["connection"].first == "close")
    }

    @Test func recordsArriveAndAreAcked() async throws {
        try await withReceiver(Self.configuration) { receiver in
            let answer = try await Self.request(receiver, form: "groupId=g&streamId=s&dt=1700000000000&body=first%0Asecond+line%0A%C3%BC&cnt=3")
            #expect(answer.status == 200)
            #expect(answer.body == #"{"code":"0","msg":"Ok"}"#)
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["first", "second line", "ü"])
            #expect(receiver.memorySink.records.allSatisfy { $0.dataTime == 1_700_000_000_000 })
            let statistics = receiver.statistics()
            #expect(statistics.records == 3)
            #expect(statistics.messages == 1)
        }
    }

    @Test func invalidRequestsGetTheServersCodes() async throws {
        try await withReceiver(Self.configuration) { receiver in
            let noGroup = try await Self.request(receiver, form: "streamId=s&body=x")
            #expect(noGroup.body == #"{"code":"100","msg":"Field groupId must exist and not blank!"}"#)
            #expect(try await Self.request(receiver, form: "groupId=g&body=x").body == #"{"code":"101","msg":"Field streamId must exist and not blank!"}"#)
            #expect(try await Self.request(receiver, form: "groupId=g&streamId=s").body == #"{"code":"103","msg":"Field body is not exist!"}"#)
            #expect(try await Self.request(receiver, form: "groupId=g&streamId=s&body=++").body == #"{"code":"111","msg":"Field body is Blank!"}"#)
            #expect(try await Self.request(receiver, form: "groupId=nope&streamId=s&body=x").body.hasPrefix(#"{"code":"115","#))
            let type = try await Self.request(receiver, form: "groupId=g", contentType: "text/plain")
            #expect(type.body == #"{"code":"36","msg":"Only support [application/x-www-form-urlencoded] content type!"}"#)
            #expect(type.close)
            let path = try await Self.request(receiver, path: "/nothing", form: "groupId=g")
            #expect(path.body == #"{"code":"35","msg":"Only support [/dataproxy/heartbeat, /dataproxy/message] paths!"}"#)
            let method = try await Self.request(receiver, method: .PUT, form: "groupId=g")
            #expect(method.body == #"{"code":"32","msg":"Only support [GET, POST] methods"}"#)
            let heartbeat = try await Self.request(receiver, method: .GET, path: InLongHTTPForm.heartbeatPath)
            #expect(heartbeat.body == #"{"code":"0","msg":"Ok"}"#)
            #expect(receiver.memorySink.recordCount == 0)
            let errors = receiver.statistics().errors
            #expect(errors[.missRequiredGroupID] == 1)
            #expect(errors[.httpUnsupportedContentType] == 1)
        }
    }

    @Test func faultsApplyToHTTP() async throws {
        try await withReceiver(Self.configuration) { receiver in
            receiver.updateFaults { $0.errorCode = .sinkServiceUnready }
            let injected = try await Self.request(receiver, form: "groupId=g&streamId=s&body=x")
            #expect(injected.body == #"{"code":"1","msg":"injected error"}"#)
            receiver.updateFaults {
                $0.errorCode = nil
                $0.httpStatus = 500
            }
            let failing = try await Self.request(receiver, form: "groupId=g&streamId=s&body=x")
            #expect(failing.status == 500)
            #expect(receiver.memorySink.recordCount == 0)
        }
    }
}
