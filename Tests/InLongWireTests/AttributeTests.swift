import InLongTestUtils
import InLongWire
import Testing

/// The server's attribute parser rules (wire-protocol.md §4, Guava MapSplitter).
@Suite struct AttributeTests {
    @Test(arguments: [
        ("a=1&b=2", [("a", "1"), ("b", "2")]),
        ("a=", [("a", "")]),
        ("", []),
        ("a = 1", [("a ", " 1")]),
        (" a=1 & b=2 ", [("a", "1"), ("b", "2")]),
        ("=v", [("", "v")]),
    ])
    func accepted(text: String, entries: [(String, String)]) throws {
        let attributes = try InLongAttributes(parsing: text)
        #expect(attributes.entries.map(\.key) == entries.map(\.0))
        #expect(attributes.entries.map(\.value) == entries.map(\.1))
    }

    @Test(arguments: ["a=1&", "a=1&&b=2", "flag", "k=a=b", "a=1&a=2", "&", "a=1&b"])
    func rejectedWithErrorCode109(text: String) {
        #expect {
            try InLongAttributes(parsing: text)
        } throws: { error in
            let error = error as! InLongWireError
            return error.code == .invalidAttributes && error.dataProxyErrorCode == .splitAttributeError
                && !error.closesConnection
        }
    }

    @Test func lookupsAndEdits() {
        var attributes: InLongAttributes = ["groupId": "g", "streamId": "s"]
        #expect(attributes["groupId"] == "g")
        #expect(attributes["missing"] == nil)
        attributes.set("streamId", "t")
        attributes.set("rtms", "5")
        attributes.remove("groupId")
        #expect(attributes.encoded == "streamId=t&rtms=5")
    }

    @Test func lenientParsingTakesTheFirstEntryAndSplitsAtTheFirstEquals() {
        let attributes = InLongAttributes(parsingLeniently: "dpIp=1&errCode=2&errMsg=x=(y), z&errCode=3&junk&&")
        #expect(attributes["errCode"] == "2")
        #expect(attributes["errMsg"] == "x=(y), z")
        #expect(InLongAckResult(attributes: "errCode=abc").errorCode == .unknownError)
        #expect(InLongAckResult(attributes: "dpIp=1.2.3.4").errorCode == .success)
        #expect(InLongAckResult(attributes: "errCode=120").isDelivered)
    }

    @Test(arguments: [
        "dpIp=1&errCode=2&errMsg=x=(y), z&errCode=3&junk&&",
        "", "&&", "=", "errCode", "errCode=", "errCode= 115&errMsg=", "errMsg=a&b&dpIp=10.0.0.1&dpIp=2",
        "groupId=g&streamId=s&errCode=0&dpIp=127.0.0.1", "errCodeX=1&xerrCode=2&dpIp=é&errMsg=ü=1",
    ])
    func ackResultReadsAsTheLenientParser(attributes: String) {
        let parsed = InLongAttributes(parsingLeniently: attributes)
        let result = InLongAckResult(attributes: attributes)
        #expect(result.errorMessage == parsed["errMsg"])
        #expect(result.proxyIP == parsed["dpIp"])
        let code = parsed["errCode"].map { Int($0.trimmingPrefix(" ")).map(DataProxyErrorCode.init(rawValue:)) ?? .unknownError }
        #expect(result.errorCode == code ?? .success)
    }

    @Test(arguments: [("ok", true), ("", true), ("a&b", false), ("a=b", false), (" a", false), ("a ", false)])
    func componentValidity(text: String, valid: Bool) {
        #expect(InLongAttributes.isValidComponent(text) == valid)
    }
}

@Suite struct ErrorCodeTests {
    @Test(arguments: [
        (0, DataProxyErrorCode.Disposition.success), (1, .retriable), (2, .retriable), (3, .retriable),
        (94, .fatal), (100, .fatal), (109, .fatal), (112, .fatal), (114, .retriable), (115, .fatal),
        (116, .retriable), (117, .retriable), (118, .retriable), (119, .retriable), (120, .delivered),
        (121, .fatal), (150, .fatal), (2_147_483_647, .retriable), (4242, .fatal),
    ])
    func disposition(code: Int, disposition: DataProxyErrorCode.Disposition) {
        #expect(DataProxyErrorCode(rawValue: code).disposition == disposition)
    }

    @Test func namesAndProxyAvoidance() {
        #expect(DataProxyErrorCode.topicIsBlank.description == "115 TOPIC_IS_BLANK")
        #expect(DataProxyErrorCode(rawValue: 4242).name == "UNKNOWN_4242")
        #expect(DataProxyErrorCode.serviceClosed.shouldAvoidProxy)
        #expect(!DataProxyErrorCode.putEventToChannelFailure.shouldAvoidProxy)
    }
}
