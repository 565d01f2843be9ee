import Foundation
import InLongTransport
import NIOCore

/// A request: one JSON object per line, `{"Uid": "...", "Val": "..."}`.
struct ExampleRequest: Codable, Sendable, Hashable {
    var Uid: String
    var Val: String
}

/// An answer: `{"Uid": "...", "Val": "server: hello, ...", "Ts": "..."}`, paired with its request by `Uid`.
struct ExampleAnswer: Codable, Sendable, Hashable {
    var Uid: String
    var Val: String
    var Ts: String
}

/// The line framing and JSON coding both sides share.
struct JSONLines: Sendable {
    static let framer = DelimiterFramer(delimiter: [UInt8(ascii: "\n")], maxFrameLength: 64 << 10)

    static func encode(_ value: some Encodable, into buffer: inout ByteBuffer) throws {
        buffer.writeBytes(try JSONEncoder().encode(value))
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    static func decode<Value: Decodable>(_ type: Value.Type, from frame: ByteBuffer) throws -> Value {
        try JSONDecoder().decode(type, from: Data(frame.readableBytesView.dropLast()))
    }
}

/// The client's side: sends requests, receives answers matched by `Uid`.
struct ExampleClientCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { try JSONLines.framer.frameBoundary(in: buffer) }
    func encode(_ frame: ExampleRequest, into buffer: inout ByteBuffer) throws { try JSONLines.encode(frame, into: &buffer) }
    func decode(_ frame: ByteBuffer) throws -> ExampleAnswer { try JSONLines.decode(ExampleAnswer.self, from: frame) }
    func kind(of frame: ExampleAnswer) -> InboundFrameKind<String> { .response(frame.Uid) }
    func key(of request: ExampleRequest) -> String { request.Uid }
    // The protocol has no heartbeat: a dead server is found by the read timeout alone.
    func makeHeartbeat() -> ExampleRequest? { nil }
}

/// The server's side: receives requests, sends answers.
struct ExampleServerCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { try JSONLines.framer.frameBoundary(in: buffer) }
    func encode(_ frame: ExampleAnswer, into buffer: inout ByteBuffer) throws { try JSONLines.encode(frame, into: &buffer) }
    func decode(_ frame: ByteBuffer) throws -> ExampleRequest { try JSONLines.decode(ExampleRequest.self, from: frame) }
    func kind(of frame: ExampleRequest) -> InboundFrameKind<String> { .unsolicited }
    func key(of request: ExampleAnswer) -> String { request.Uid }
    func makeHeartbeat() -> ExampleAnswer? { nil }
}
