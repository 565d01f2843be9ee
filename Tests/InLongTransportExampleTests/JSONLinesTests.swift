import Foundation
import InLongWire
import NIOCore
import Testing

@testable import InLongTransportExample

/// The example writes its messages field by field: each field must read as `JSONEncoder` writes it, and each
/// message as `JSONEncoder` writes it in one of its orders.
@Suite struct JSONLinesTests {
    /// Every control character, the escaped ASCII, plain ASCII, and UTF-8 of two, three and four bytes.
    static let alphabet: [Character] =
        (0..<0x20).map { Character(Unicode.Scalar(UInt8($0))) }
        + ["\"", "\\", "/", "a", "Z", "0", " ", "<", "&", "\u{7F}", "é", "日", "🙂"]

    static func encoded(_ string: String) throws -> String {
        String(decoding: try JSONEncoder().encode(string), as: UTF8.self)
    }

    static func written(_ string: String) -> String {
        var buffer = ByteBuffer()
        JSONLines.write(string, into: &buffer)
        return String(buffer: buffer)
    }

    @Test func everyCharacterIsWrittenAsJSONEncoderWritesIt() throws {
        for character in Self.alphabet {
            #expect(Self.written(String(character)) == (try Self.encoded(String(character))), "\(character.unicodeScalars.first!.value)")
        }
    }

    /// Random strings over the alphabet, on a seeded generator.
    @Test(arguments: [UInt64(1), 2, 3]) func randomStringsAreWrittenAsJSONEncoderWritesThem(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for _ in 0..<300 {
            let length = Int(random.next() % 24)
            let string = String((0..<length).map { _ in Self.alphabet[Int(random.next() % UInt64(Self.alphabet.count))] })
            #expect(Self.written(string) == (try Self.encoded(string)))
        }
    }

    @Test func messagesAreJSONEncoderFieldsInDeclarationOrderAndReadBack() throws {
        let answer = ExampleAnswer(Uid: "req-1/2", Val: "server: hello, \"x\"\n", Ts: "2026-12-05T22:35:52Z")
        var buffer = ByteBuffer()
        try ExampleServerCodec().encode(answer, into: &buffer)
        let expected = try "{\"Uid\":\(Self.encoded(answer.Uid)),\"Val\":\(Self.encoded(answer.Val)),\"Ts\":\(Self.encoded(answer.Ts))}\n"
        #expect(String(buffer: buffer) == expected)
        #expect(try ExampleClientCodec().decode(buffer) == answer)

        let request = ExampleRequest(Uid: "é", Val: "\u{1}🙂")
        buffer.clear()
        try ExampleClientCodec().encode(request, into: &buffer)
        #expect(String(buffer: buffer) == (try "{\"Uid\":\(Self.encoded(request.Uid)),\"Val\":\(Self.encoded(request.Val))}\n"))
        #expect(try ExampleServerCodec().decode(buffer) == request)
    }
}
