// InLongTransport carrying a protocol that has nothing to do with InLong: newline-delimited JSON messages
// `{"uid":..,"val":..}`, answered by an echo server with the same uid. Shows request/response correlation
// (out of order), a request timeout, and reconnection after the server restarts.
//
//     swift run InLongTransportExample

import Foundation
import InLongTransport
import NIOCore
import NIOPosix
import Synchronization

struct Message: Codable, Sendable, Hashable {
    var uid: Int
    var val: String
}

/// Frames are JSON objects terminated by `\n`; the uid pairs a response with its request.
struct NDJSONCodec: FrameCodec {
    var maxLineLength = 64 << 10

    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary {
        let view = buffer.readableBytesView
        guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
            guard view.count <= self.maxLineLength else { throw CocoaError(.fileReadTooLarge) }
            return .needMoreBytes
        }
        let length = newline - view.startIndex + 1
        // Blank lines carry nothing: skip them and resynchronise on the next line.
        return length == 1 ? .skip(count: 1) : .frame(length: length)
    }

    func encode(_ frame: Message, into buffer: inout ByteBuffer) throws {
        buffer.writeBytes(try JSONEncoder().encode(frame))
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    func decode(_ frame: ByteBuffer) throws -> Message {
        try JSONDecoder().decode(Message.self, from: Data(frame.readableBytesView.dropLast()))
    }

    func kind(of frame: Message) -> InboundFrameKind<Int> { .response(frame.uid) }
    func key(of request: Message) -> Int { request.uid }
    // The echo server has no heartbeat; dead peers are found by the read timeout alone.
    func makeHeartbeat() -> Message? { nil }
}

/// Echoes each line; lines whose val starts with "slow" are answered after a second, so answers come out of order.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        for line in String(buffer: bytes).split(separator: "\n") {
            let reply = ByteBuffer(string: line + "\n")
            let channel = context.channel
            if line.contains("\"val\":\"slow") {
                context.eventLoop.scheduleTask(in: .seconds(1)) { channel.writeAndFlush(reply, promise: nil) }
            } else {
                context.writeAndFlush(self.wrapOutboundOut(reply), promise: nil)
            }
        }
    }
}

/// Accepted connections, so a restart can drop them as a crashing server would.
let children = Mutex<[any Channel]>([])

func startEchoServer(port: Int) async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                children.withLock { $0.append(channel) }
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineSplitter()))
                try channel.pipeline.syncOperations.addHandler(EchoHandler())
            }
        }
        .bind(host: "127.0.0.1", port: port)
        .get()
}

/// Delivers whole lines to the echo handler.
struct LineSplitter: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return .needMoreData }
        context.fireChannelRead(NIOAny(buffer.readSlice(length: newline - buffer.readerIndex + 1)!))
        return .continue
    }
}

var server = try await startEchoServer(port: 0)
let port = server.localAddress!.port!
print("echo server on 127.0.0.1:\(port)")

var configuration = PersistentConnection<NDJSONCodec>.Configuration(endpoints: [Endpoint(host: "127.0.0.1", port: port)])
configuration.heartbeatInterval = nil
configuration.backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(1))
let connection = PersistentConnection(codec: NDJSONCodec(), configuration: configuration)

try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await connection.run() }
    group.addTask {
        for await state in connection.connectivityStates() { print("  state: \(state)") }
    }
    while connection.connectivityState != .ready { try await Task.sleep(for: .milliseconds(10)) }

    // 1. Correlation: the slow request is answered last, yet each caller gets its own answer.
    try await withThrowingTaskGroup(of: String.self) { requests in
        for (uid, val) in [(1, "slow one"), (2, "fast two"), (3, "fast three")] {
            requests.addTask {
                let reply = try await connection.request(Message(uid: uid, val: val))
                return "uid \(uid) -> \(reply.val)"
            }
        }
        for try await line in requests { print("  answered: \(line)") }
    }

    // 2. A timeout shorter than the server's delay.
    do {
        _ = try await connection.request(Message(uid: 4, val: "slow four"), timeout: .milliseconds(200))
    } catch let error as TransportError {
        print("  uid 4 failed as expected: \(error.code) (may have been delivered: \(error.mayHaveBeenDelivered))")
    }

    // 3. The server goes away and comes back on the same port; the connection reconnects by itself.
    try await server.close()
    for child in children.withLock({ $0 }) { try? await child.close() }
    server = try await startEchoServer(port: port)
    print("  server restarted")
    var reply: Message?
    while reply == nil {
        reply = try? await connection.request(Message(uid: 5, val: "after restart"), timeout: .seconds(1))
        if reply == nil { try await Task.sleep(for: .milliseconds(100)) }
    }
    print("  answered: uid 5 -> \(reply!.val)")
    print("  statistics: \(connection.statistics())")
    connection.close()
    try await group.next()
    group.cancelAll()
}
try await server.close()
