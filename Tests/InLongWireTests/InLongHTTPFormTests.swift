import InLongWire
import NIOCore
import Testing

/// DataProxy's HTTP form encoding: what the Java SDK's encoder writes, and any bytes back.
@Suite struct InLongHTTPFormTests {
    @Test func fieldsAreEncodedAsJavasFormEncoder() {
        var form = ByteBuffer()
        InLongHTTPForm.appendField("groupId", "g 1".utf8, to: &form)
        InLongHTTPForm.appendField("body", "a+b&c=d%e*-._~/ü\n".utf8, to: &form)
        #expect(String(buffer: form) == "groupId=g+1&body=a%2Bb%26c%3Dd%25e*-._%7E%2F%C3%BC%0A")
    }

    @Test func everyByteSequenceRoundTrips() throws {
        var random = SplitMix64(seed: 27)
        for length in 0..<300 {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            var fast = ByteBuffer()
            InLongHTTPForm.appendEncoded(ByteBuffer(bytes: bytes), to: &fast)
            var generic = ByteBuffer()
            InLongHTTPForm.appendEncoded(bytes, to: &generic)
            #expect(fast == generic)
            #expect(try InLongHTTPForm.decodeComponent(fast.readableBytesView) == ByteBuffer(bytes: bytes))
        }
    }

    @Test func formsDecodeInOrderWithEmptyValues() throws {
        let fields = try InLongHTTPForm.decode(ByteBuffer(string: "a=1&&b&c=x%3Dy&a=2"))
        #expect(fields.map(\.name) == ["a", "b", "c", "a"])
        #expect(fields.map { String(buffer: $0.value) } == ["1", "", "x=y", "2"])
    }

    @Test func badEscapesThrow() {
        for bad in ["%", "%4", "%G0", "a=%0"] {
            #expect(throws: InLongWireError.self) { try InLongHTTPForm.decode(ByteBuffer(string: bad)) }
        }
    }
}
