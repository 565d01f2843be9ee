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
        "dpIp=1&\u{301}errCode=2&errCode=3", "errMsg=\u{301}x&dpIp=\u{20DD}&errCode=\u{301}",
    ])
    func ackResultReadsAsTheLenientParser(attributes: String) {
        let parsed = InLongAttributes(parsingLeniently: attributes)
        let result = InLongAckResult(attributes: attributes)
        #expect(result.errorMessage == parsed["errMsg"])
        #expect(result.proxyIP == parsed["dpIp"])
        let code = parsed["errCode"].map { Int($0.trimmingPrefix(" ")).map(DataProxyResultCode.init(rawValue:)) ?? .unknownError }
        #expect(result.errorCode == code ?? .success)
    }

    @Test(arguments: [
        ("ok", true), ("", true), ("a&b", false), ("a=b", false), (" a", false), ("a ", false), ("\u{A0}a", false),
        ("a\u{3000}", false), ("\u{1}a\u{7F}", true), ("a \u{301}", true), ("\u{301}", true),
        ("a&\u{301}", false),
    ])
    func componentValidity(text: String, valid: Bool) {
        #expect(InLongAttributes.isValidComponent(text) == valid)
    }
}

/// The server splits and trims on UTF-16 units, never on grapheme clusters (wire-protocol.md §4).
extension AttributeTests {
    @Test func combiningMarksDoNotHideSeparators() throws {
        #expect(try pairs("a=b&\u{301}c=d") == [["a", "b"], ["\u{301}c", "d"]])
        #expect(try pairs("a=\u{301}b") == [["a", "\u{301}b"]])
        #expect(try pairs("a=b&\u{1F3FB}c=d&\u{200D}e=f") == [["a", "b"], ["\u{1F3FB}c", "d"], ["\u{200D}e", "f"]])
        #expect(throws: InLongWireError.self) { try InLongAttributes(parsing: "k=a=\u{301}b") }
        #expect(InLongAttributes(parsingLeniently: "a=b&\u{301}c=d")["\u{301}c"] == "d")
    }

    @Test func trimsOnlyTheServersWhitespace() throws {
        // Guava's whitespace, no-break spaces included; other control characters stay.
        #expect(try pairs("\u{A0}a=b\u{2007}&\tc=d\r\n&\u{85}e=f\u{3000}") == [["a", "b"], ["c", "d"], ["e", "f"]])
        #expect(try pairs("\u{1}a=b\u{1F}&\u{7F}c=d\u{200B}") == [["\u{1}a", "b\u{1F}"], ["\u{7F}c", "d\u{200B}"]])
        // A combining mark after a space is not whitespace: only the space goes.
        #expect(try pairs(" \u{301}a=b \u{301}") == [["\u{301}a", "b \u{301}"]])
    }

    @Test func multiByteTextIsKeptIntact() throws {
        let text = "k=😀&é=中文&f=🇫🇷&n=\u{1F468}\u{200D}\u{1F469}&z=e\u{301}"
        let expected = [
            ["k", "😀"], ["é", "中文"], ["f", "🇫🇷"], ["n", "\u{1F468}\u{200D}\u{1F469}"], ["z", "e\u{301}"],
        ]
        #expect(try bytes(pairs(text)) == bytes(expected))
        #expect(try InLongAttributes(parsing: text).encoded.utf8.elementsEqual(text.utf8))
    }

    @Test func keysAreComparedByTheirBytes() throws {
        // "é" precomposed and decomposed are canonically equivalent in Swift, different strings in Java.
        let attributes = try InLongAttributes(parsing: "e\u{301}=1&\u{E9}=2")
        #expect(attributes.entries.count == 2)
        #expect(attributes["\u{E9}"] == "2")
        #expect(attributes["e\u{301}"] == "1")
    }

    @Test func blankStringsHaveNoAttributes() throws {
        // The server parses only a non-blank string (Java `Character.isWhitespace`, which excludes U+00A0).
        #expect(try InLongAttributes(parsing: " \t\u{1C}\u{2028}").isEmpty)
        #expect(throws: InLongWireError.self) { try InLongAttributes(parsing: "\u{A0}") }
    }

    static let modelCases = [
        "a=1&b=2", "", " ", "\u{1F}", "\u{A0}", "\u{85}", "&", "a=1&", "a=1& &b=2", "=", "k=", "=v", "a=b=c",
        "k=v&k=w", "a = 1", " a=1 & b=2 ", "a=b&\u{301}c=d", "a=\u{301}b", "\u{301}=x", "a=b&\u{301}=d",
        "a=b& \u{301}c=d", "\u{A0}k=v\u{A0}", "k=v\u{202F}", "\tk=v\n", "\u{1}k=v\u{1F}", "k=v\r\n",
        "k=😀&e=é&z=中文", "e\u{301}=1&é=2", "k=v&k\u{301}=w", "a=\u{2028}&\u{2029}b=\u{205F}c\u{1680}",
        "a=\u{FEFF}b\u{FEFF}", "a=b&\u{FE0F}c=d", "x=\u{1F1EB}&\u{1F1F7}=y", "a=\u{301}&e\u{301}=\u{E9}",
    ]

    @Test(arguments: Self.modelCases)
    func agreesWithTheServerModel(text: String) {
        #expect((try? pairs(text)).map(bytes) == ServerAttributeModel.parse(text).map(bytes))
    }

    @Test func trimsEveryBMPCharacterLikeTheServer() {
        for value in UInt32(0)...0xFFFF {
            guard let scalar = Unicode.Scalar(value), scalar != "&", scalar != "=" else { continue }
            let text = "\(scalar)k=v\(scalar)"
            let name = "U+\(String(value, radix: 16))"
            #expect((try? pairs(text)).map(bytes) == ServerAttributeModel.parse(text).map(bytes), "\(name)")
            let trimmed = ServerAttributeModel.guavaWhitespace.contains(UInt16(value))
            #expect(InLongAttributes.isValidComponent("\(scalar)k") == !trimmed, "\(name)")
            #expect(InLongAttributes.isValidComponent("k\(scalar)") == !trimmed, "\(name)")
        }
    }

    private func pairs(_ text: String) throws -> [[String]] {
        try InLongAttributes(parsing: text).entries.map { [$0.key, $0.value] }
    }

    /// Swift compares strings by canonical equivalence; the server compares units.
    private func bytes(_ pairs: [[String]]) -> [[[UInt8]]] {
        pairs.map { $0.map { Array($0.utf8) } }
    }
}

/// The server's attribute parsing on UTF-16 units, as Java runs it: `StringUtils.isNotBlank`, then Guava
/// `Splitter.on('&').trimResults().withKeyValueSeparator('=')`. `nil` is error 109.
enum ServerAttributeModel {
    /// Guava `CharMatcher.Whitespace.TABLE`, verbatim.
    static let guavaWhitespace = Set(
        ("\u{2002}\u{3000}\r\u{85}\u{200A}\u{2005}\u{2000}\u{3000}\u{2029}\u{0B}\u{3000}\u{2008}\u{2003}\u{205F}"
            + "\u{3000}\u{1680}\t \u{2006}\u{2001}\u{202F}\u{A0}\u{0C}\u{2009}\u{3000}\u{2004}\u{3000}\u{3000}\u{2028}\n"
            + "\u{2007}\u{3000}").utf16
    )
    /// Java `Character.isWhitespace`.
    static let javaWhitespace = Set<UInt16>(
        Array(0x09...0x0D) + Array(0x1C...0x20) + [0x1680] + Array(0x2000...0x2006) + Array(0x2008...0x200A)
            + [0x2028, 0x2029, 0x205F, 0x3000],
    )

    static func parse(_ text: String) -> [[String]]? {
        let units = Array(text.utf16)
        if units.allSatisfy(javaWhitespace.contains) { return [] }
        var keys = Set<[UInt16]>()
        var result: [[String]] = []
        for var entry in units.split(separator: 0x26, omittingEmptySubsequences: false) {
            while let first = entry.first, guavaWhitespace.contains(first) { entry.removeFirst() }
            while let last = entry.last, guavaWhitespace.contains(last) { entry.removeLast() }
            let parts = entry.split(separator: 0x3D, omittingEmptySubsequences: false)
            guard parts.count == 2, keys.insert(Array(parts[0])).inserted else { return nil }
            result.append(parts.map { String(decoding: $0, as: UTF16.self) })
        }
        return result
    }
}

@Suite struct ErrorCodeTests {
    @Test(arguments: [
        (0, DataProxyResultCode.Disposition.success), (1, .retriable), (2, .retriable), (3, .retriable),
        (94, .fatal), (100, .fatal), (109, .fatal), (112, .fatal), (114, .retriable), (115, .fatal),
        (116, .retriable), (117, .retriable), (118, .retriable), (119, .retriable), (120, .delivered),
        (121, .fatal), (150, .fatal), (2_147_483_647, .retriable), (4242, .fatal),
    ])
    func disposition(code: Int, disposition: DataProxyResultCode.Disposition) {
        #expect(DataProxyResultCode(rawValue: code).disposition == disposition)
    }

    @Test func namesAndProxyAvoidance() {
        #expect(DataProxyResultCode.topicIsBlank.description == "115 TOPIC_IS_BLANK")
        #expect(DataProxyResultCode(rawValue: 4242).name == "UNKNOWN_4242")
        #expect(DataProxyResultCode.serviceClosed.shouldAvoidProxy)
        #expect(!DataProxyResultCode.putEventToChannelFailure.shouldAvoidProxy)
    }
}
