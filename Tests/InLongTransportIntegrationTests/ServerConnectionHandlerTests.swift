import InLongTestUtils
import InLongTransport
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A server's per-connection handlers: state kept per connection, the close and framing-error hooks, closing a
/// connection from a handler, and rejected connections.
@Suite(.timeLimit(.minutes(2))) struct ServerConnectionHandlerTests {
    /// What the hooks saw.
    final class Events: Sendable {
        let opened = Atomic(0)
        let closed = Atomic(0)
        let framingErrors = Atomic(0)
        let rejected = Atomic(0)
    }

    private func withServer<Result: Sendable>(
        maxConnections: Int = 16,
        events: Events,
        _ body: (Int) async throws -> Result
    ) async throws -> Result {
        var configuration = PersistentServer<TestCodec>.Configuration(host: "127.0.0.1", port: 0)
        configuration.maxConnections = maxConnections
        let server = PersistentServer(
            codec: TestCodec(),
            configuration: configuration,
            connectionRejected: { events.rejected.add(1, ordering: .relaxed) },
            connectionOpened: { connection in
                events.opened.add(1, ordering: .relaxed)
                // Per-connection state: the number of this connection's requests so far.
                let count = Atomic(0)
                return .init(
                    request: { request, responder in
                        let number = count.add(1, ordering: .relaxed).newValue
                        try? await responder.respond(.response(request.key, "\(number)"))
                        if request.payload == "close" { connection.close() }
                    },
                    closed: { events.closed.add(1, ordering: .relaxed) },
                    framingError: { _ in events.framingErrors.add(1, ordering: .relaxed) }
                )
            }
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            defer { group.cancelAll() }
            let port = try await server.localAddress().port!
            let result = try await body(port)
            server.stop()
            try await group.next()
            return result
        }
    }

    @Test func eachConnectionKeepsItsOwnStateAndIsClosedOnce() async throws {
        let events = Events()
        try await self.withServer(events: events) { port in
            try await withRawConnection(port: port) { first in
                try await withRawConnection(port: port) { second in
                    let answers = [
                        try await first.exchange(.request(1)), try await first.exchange(.request(2)),
                        try await second.exchange(.request(3)), try await first.exchange(.request(4)),
                    ]
                    #expect(answers == [.response(1, "1"), .response(2, "2"), .response(3, "1"), .response(4, "3")])
                }
            }
            #expect(await eventually { events.closed.load(ordering: .relaxed) == 2 })
        }
        #expect(events.opened.load(ordering: .relaxed) == 2)
        #expect(events.closed.load(ordering: .relaxed) == 2)
    }

    @Test func aHandlerClosesItsConnectionAfterItsAnswer() async throws {
        let events = Events()
        try await self.withServer(events: events) { port in
            try await withRawConnection(port: port) { connection in
                let answer = try await connection.exchange(.request(1, "close"))
                #expect(answer == .response(1, "1"))
                let after = try await connection.readToEnd()
                #expect(after == [])
            }
            #expect(await eventually { events.closed.load(ordering: .relaxed) == 1 })
        }
    }

    @Test func bytesThatAreNotAFrameAreReportedThenClosed() async throws {
        let events = Events()
        try await self.withServer(events: events) { port in
            try await withRawConnection(port: port) { connection in
                // A length below the codec's minimum.
                try await connection.write(ByteBuffer(bytes: [0, 0, 0, 1, 9]))
                let after = try await connection.readToEnd()
                #expect(after == [])
            }
            #expect(await eventually { events.closed.load(ordering: .relaxed) == 1 })
        }
        #expect(events.framingErrors.load(ordering: .relaxed) == 1)
    }

    @Test func connectionsBeyondTheLimitAreRejectedAndReported() async throws {
        let events = Events()
        try await self.withServer(maxConnections: 1, events: events) { port in
            try await withRawConnection(port: port) { first in
                let answer = try await first.exchange(.request(1))
                #expect(answer == .response(1, "1"))
                try await withRawConnection(port: port) { second in
                    let bytes = try await second.readToEnd()
                    #expect(bytes == [])
                }
                #expect(events.rejected.load(ordering: .relaxed) == 1)
                #expect(events.opened.load(ordering: .relaxed) == 1)
            }
        }
    }
}

/// A plain TCP client that writes test frames and reads the answers' bytes, for the duration of `body`.
private func withRawConnection(port: Int, _ body: (inout RawConnection) async throws -> Void) async throws {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    try await channel.executeThenClose { inbound, outbound in
        var connection = RawConnection(inbound: inbound.makeAsyncIterator(), outbound: outbound)
        try await body(&connection)
    }
}

private struct RawConnection {
    var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>

    func write(_ bytes: ByteBuffer) async throws {
        try await self.outbound.write(bytes)
    }

    /// Sends `request` and reads one answer.
    mutating func exchange(_ request: TestFrame) async throws -> TestFrame {
        try await self.write(request.bytes)
        var received = ByteBuffer()
        while true {
            if case .frame(let length) = try TestCodec().frameBoundary(in: received), received.readableBytes >= length {
                return try TestCodec().decode(received.readSlice(length: length)!)
            }
            guard var chunk = try await self.inbound.next(isolation: #isolation) else { throw TestError() }
            received.writeBuffer(&chunk)
        }
    }

    /// The bytes read until the server closes.
    mutating func readToEnd() async throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let chunk = try await self.inbound.next(isolation: #isolation) { bytes += chunk.readableBytesView }
        return bytes
    }
}
