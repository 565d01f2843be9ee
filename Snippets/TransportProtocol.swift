// Your own protocol over InLongTransport: frames of one line, "<id> <text>\n", answered with the same id.
// Id 0 is the heartbeat: the client sends "0 ping" when it has written nothing for a while, and the server's
// transport answers "0 pong" on its own.
// snippet.show
import InLongTransport
import NIOCore

struct Line: Sendable, Hashable {
    var id: UInt64
    var text: String
}

/// One codec serves both sides: the protocol is symmetric.
struct LineCodec: FrameCodec {
    static let framer = DelimiterFramer(delimiter: [UInt8(ascii: "\n")], maxFrameLength: 64 << 10)

    struct Malformed: Error {}

    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary {
        try Self.framer.frameBoundary(in: buffer)
    }

    func encode(_ frame: Line, into buffer: inout ByteBuffer) throws {
        buffer.writeString("\(frame.id) \(frame.text)\n")
    }

    func decode(_ frame: ByteBuffer) throws -> Line {
        let text = String(buffer: frame).dropLast()  // the delimiter
        guard let space = text.firstIndex(of: " "), let id = UInt64(text[..<space]) else { throw Malformed() }
        return Line(id: id, text: String(text[text.index(after: space)...]))
    }

    // The client's view of what arrives: answers by id, and heartbeat replies.
    func kind(of frame: Line) -> InboundFrameKind<UInt64> {
        frame.id == 0 ? .heartbeatReply : .response(frame.id)
    }

    func key(of request: Line) -> UInt64 { request.id }

    func makeHeartbeat() -> Line? { Line(id: 0, text: "ping") }

    // The server's view: a ping is answered on the event loop and never reaches the handler.
    func heartbeatResponse(to frame: Line) -> Line? {
        frame.id == 0 ? Line(id: 0, text: "pong") : nil
    }
}

let server = PersistentServer(codec: LineCodec(), configuration: .init(host: "127.0.0.1", port: 0)) { request, responder in
    // Runs off the event loop; answers may leave in any order, the id pairs them.
    try? await responder.respond(Line(id: request.id, text: request.text.uppercased()))
}

try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await server.run() }
    let port = try await server.localAddress().port!

    var configuration = PersistentConnection<LineCodec>.Configuration(endpoints: [Endpoint(host: "127.0.0.1", port: port)])
    configuration.heartbeatInterval = .seconds(5)  // "0 ping" after 5 s without a write
    configuration.readTimeout = .seconds(15)  // nothing heard for 15 s: the peer is dead, reconnect
    configuration.backoff = ExponentialBackoff(initial: .milliseconds(50), maximum: .seconds(5))
    let connection = PersistentConnection(codec: LineCodec(), configuration: configuration)
    group.addTask { try await connection.run() }

    // Wait until connected: a request made before fails at once with `notConnected`.
    for await state in connection.connectivityStates() where state == .ready { break }
    let answer = try await connection.request(Line(id: 1, text: "hello"), timeout: .seconds(2))
    print(answer.text)  // HELLO

    connection.close()  // drains in-flight requests, then run() returns
    server.stop()
    try await group.waitForAll()
}
// snippet.end
