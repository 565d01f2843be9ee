import InLongTestUtils
import NIOCore
import Testing

@testable import InLongTransport

/// TCP keepalive and linger are set on the sockets of both sides, read back from the sockets themselves.
@Suite(.timeLimit(.minutes(2))) struct SocketOptionsTests {
    struct Read: Equatable {
        var keepalive: SocketOptionValue
        var idle: SocketOptionValue
        var interval: SocketOptionValue
        var count: SocketOptionValue
        var linger: Duration?
    }

    private func read(_ channel: any Channel) async throws -> Read {
        Read(
            keepalive: try await channel.getOption(.socketOption(.so_keepalive)).get(),
            idle: try await channel.getOption(.tcpOption(SocketOptions.keepIdle)).get(),
            interval: try await channel.getOption(.tcpOption(SocketOptions.keepInterval)).get(),
            count: try await channel.getOption(.tcpOption(SocketOptions.keepCount)).get(),
            linger: try await SocketOptions.linger(of: channel).get()
        )
    }

    @Test func theClientSetsKeepaliveAndLinger() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        try await withConnection(
            endpoints: [server.endpoint],
            configure: {
                $0.tcpKeepalive = TCPKeepalive(idle: .seconds(30), interval: .seconds(7), count: 4)
                $0.linger = .seconds(3)
            }
        ) { connection in
            let channel = try #require(connection.currentChannel)
            #expect(try await self.read(channel) == Read(keepalive: 1, idle: 30, interval: 7, count: 4, linger: .seconds(3)))
        }
    }

    @Test func theClientLeavesThemOffByDefault() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint]) { connection in
            let channel = try #require(connection.currentChannel)
            let read = try await self.read(channel)
            #expect(read.keepalive == 0)
            #expect(read.linger == nil)
        }
    }

    @Test func theServerSetsKeepaliveAndLingerOnAcceptedSockets() async throws {
        var configuration = PersistentServer<TestCodec>.Configuration(host: "127.0.0.1", port: 0)
        configuration.tcpKeepalive = TCPKeepalive(idle: .seconds(45), interval: .seconds(5), count: 6)
        configuration.linger = .zero
        let server = PersistentServer(codec: TestCodec(), configuration: configuration) { request, responder in
            try? await responder.respond(.response(request.key))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.localAddress().port!
            try await withConnection(endpoints: [Endpoint(host: "127.0.0.1", port: port)]) { connection in
                _ = try await connection.request(.request(1))
                let channel = try #require(server.openChannels.first)
                #expect(try await self.read(channel) == Read(keepalive: 1, idle: 45, interval: 5, count: 6, linger: .zero))
            }
            server.stop()
            try await group.next()
        }
    }
}
