import Foundation
import InLongTransport
import NIOCore
import Synchronization

/// A request: one JSON object per line, `{"Uid": "...", "Val": "..."}`.
struct ExampleRequest: Codable, Sendable, Hashable {
    var Uid: String
    var Val: String

    func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"Uid":"#)
        JSONLines.write(self.Uid, into: &buffer)
        buffer.writeStaticString(#","Val":"#)
        JSONLines.write(self.Val, into: &buffer)
        buffer.writeStaticString("}\n")
    }
}

/// An answer: `{"Uid": "...", "Val": "server: hello, ...", "Ts": "..."}`, paired with its request by `Uid`.
struct ExampleAnswer: Codable, Sendable, Hashable {
    var Uid: String
    var Val: String
    var Ts: String

    func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"Uid":"#)
        JSONLines.write(self.Uid, into: &buffer)
        buffer.writeStaticString(#","Val":"#)
        JSONLines.write(self.Val, into: &buffer)
        buffer.writeStaticString(#","Ts":"#)
        JSONLines.write(self.Ts, into: &buffer)
        buffer.writeStaticString("}\n")
    }
}

/// The line framing and JSON coding both sides share.
struct JSONLines: Sendable {
    static let framer = DelimiterFramer(delimiter: [UInt8(ascii: "\n")], maxFrameLength: 64 << 10)
    /// One for every frame: making one per frame cost more than the decoding itself. Safe to share between
    /// threads.
    private static let decoder = JSONDecoder()

    static func decode<Value: Decodable>(_ type: Value.Type, from frame: ByteBuffer) throws -> Value {
        try Self.decoder.decode(type, from: Data(frame.readableBytesView.dropLast()))
    }

    /// Writes `string` as a JSON string as `JSONEncoder` writes it: `"`, `\\` and `/` escaped with a backslash,
    /// control characters as `\b \f \n \r \t` or `\u00xx`, everything else as its UTF-8. The messages are written
    /// field by field (Codable's encoder took half of the server's time); `JSONEncoder` writes the same fields, in
    /// an order that varies from one message to the next.
    static func write(_ string: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { bytes in
            var unwritten = 0
            for index in bytes.indices {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "/")
                else { continue }
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[unwritten..<index]))
                unwritten = index + 1
                buffer.writeInteger(UInt8(ascii: "\\"))
                switch byte {
                case 0x08: buffer.writeInteger(UInt8(ascii: "b"))
                case 0x0C: buffer.writeInteger(UInt8(ascii: "f"))
                case UInt8(ascii: "\n"): buffer.writeInteger(UInt8(ascii: "n"))
                case UInt8(ascii: "\r"): buffer.writeInteger(UInt8(ascii: "r"))
                case UInt8(ascii: "\t"): buffer.writeInteger(UInt8(ascii: "t"))
                case ..<0x20:
                    let hex: StaticString = "0123456789abcdef"
                    buffer.writeStaticString("u00")
                    buffer.writeInteger(hex.utf8Start[Int(byte >> 4)])
                    buffer.writeInteger(hex.utf8Start[Int(byte & 0xF)])
                default:
                    buffer.writeInteger(byte)
                }
            }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[unwritten...]))
        }
        buffer.writeInteger(UInt8(ascii: "\""))
    }
}

/// `date.formatted(.iso8601)`, formatted once per second of the clock: the text has whole seconds, and formatting
/// it for every answer cost as much as the rest of the server's work on it.
final class ISO8601Timestamps: Sendable {
    private let last = Mutex<(second: Double, text: String)?>(nil)

    func string(for date: Date) -> String {
        let second = date.timeIntervalSince1970.rounded(.down)
        return self.last.withLock { last in
            if let last, last.second == second { return last.text }
            let text = date.formatted(.iso8601)
            last = (second, text)
            return text
        }
    }
}

/// The client's side: sends requests, receives answers matched by `Uid`.
struct ExampleClientCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { try JSONLines.framer.frameBoundary(in: buffer) }
    func encode(_ frame: ExampleRequest, into buffer: inout ByteBuffer) throws { frame.writeJSON(into: &buffer) }
    func decode(_ frame: ByteBuffer) throws -> ExampleAnswer { try JSONLines.decode(ExampleAnswer.self, from: frame) }
    func kind(of frame: ExampleAnswer) -> InboundFrameKind<String> { .response(frame.Uid) }
    func key(of request: ExampleRequest) -> String { request.Uid }
    // The protocol has no heartbeat: a dead server is found by the read timeout alone.
    func makeHeartbeat() -> ExampleRequest? { nil }
}

/// The server's side: receives requests, sends answers.
struct ExampleServerCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { try JSONLines.framer.frameBoundary(in: buffer) }
    func encode(_ frame: ExampleAnswer, into buffer: inout ByteBuffer) throws { frame.writeJSON(into: &buffer) }
    func decode(_ frame: ByteBuffer) throws -> ExampleRequest { try JSONLines.decode(ExampleRequest.self, from: frame) }
    func kind(of frame: ExampleRequest) -> InboundFrameKind<String> { .unsolicited }
    func key(of request: ExampleAnswer) -> String { request.Uid }
    func makeHeartbeat() -> ExampleAnswer? { nil }
}
