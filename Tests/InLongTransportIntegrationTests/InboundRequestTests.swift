import InLongTestUtils
import InLongTransport
import NIOCore
import Testing

/// The client side answers the peer's own requests as the server does: a handler with a responder bound to the
/// connection, run by a bounded pool off the event loop, and reading stops while the pool has no room.
@Suite(.timeLimit(.minutes(2))) struct InboundRequestTests {
    @Test func theClientAnswersThePeersRequestsOnTheirConnection() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        try await withConnection(
            endpoints: [server.endpoint],
            inbound: { request, responder in
                try? await responder.respond(.response(request.key, "answer \(request.payload)"))
            }
        ) { connection in
            #expect(await eventually { server.activeConnectionCount == 1 })
            for key in 0..<100 as Range<UInt32> { server.push(.request(key, "\(key)")) }
            #expect(await eventually { server.receivedResponses.count == 100 })
            let answers = server.receivedResponses.sorted { $0.key < $1.key }
            #expect(answers.map(\.key) == Array(0..<100))
            #expect(answers.allSatisfy { $0.payload == "answer \($0.key)" })
            // The connection's own requests still work alongside.
            let answer = try await connection.request(.request(1_000, "mine")).payload
            #expect(answer == "mine")
            #expect(connection.statistics().unsolicitedDropped == 0)
        }
    }

    /// One request's handler is stuck; the others are answered meanwhile, and so are the client's requests.
    @Test func aSlowInboundHandlerDoesNotDelayOtherAnswers() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        let gate = Gate()
        try await withConnection(
            endpoints: [server.endpoint],
            inbound: { request, responder in
                if request.key == 0 { await gate.wait() }
                try? await responder.respond(.response(request.key))
            }
        ) { connection in
            #expect(await eventually { server.activeConnectionCount == 1 })
            server.push(.request(0, "slow"))
            for key in 1..<20 as Range<UInt32> { server.push(.request(key)) }
            #expect(await eventually { server.receivedResponses.count == 19 })
            #expect(!server.receivedResponses.contains { $0.key == 0 })
            let answer = try await connection.request(.request(500)).key
            #expect(answer == 500)
            gate.open()
            #expect(await eventually { server.receivedResponses.contains { $0.key == 0 } })
        }
    }

    /// A graceful close lets the handler of a peer's request under way answer, and its answer is written before
    /// the channel closes; a request that arrives during the drain is not started.
    @Test func aGracefulCloseWaitsForInboundHandlersUnderWay() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        let gate = Gate()
        let concurrency = Concurrency()
        try await withConnection(
            endpoints: [server.endpoint],
            // Heartbeat replies would count as frames read too.
            configure: { $0.heartbeatInterval = nil },
            inbound: { request, responder in
                concurrency.enter()
                if request.key == 0 { await gate.wait() }
                concurrency.leave()
                try? await responder.respond(.response(request.key, "answer"))
            }
        ) { connection in
            // Also when the test fails: run() waits for the handler.
            defer { gate.open() }
            #expect(await eventually { server.activeConnectionCount == 1 })
            server.push(.request(0, "slow"))
            #expect(await eventually { concurrency.started == 1 })
            connection.close()
            // A request turned away shows the channel drains (requests reach it in order, after the drain).
            var refused = false
            for key in 100..<1_000 as Range<UInt32> where !refused {
                refused = (try? await connection.request(.request(key), timeout: .seconds(30))) == nil
            }
            #expect(refused)
            // Read while draining: dropped, not handled.
            server.push(.request(1, "late"))
            #expect(await eventually { connection.statistics().unsolicitedDropped == 1 })
            gate.open()
        }
        // The client closed after writing the answer; the server reads it before it sees the close.
        #expect(await eventually { server.activeConnectionCount == 0 })
        #expect(server.receivedResponses.map(\.key) == [0])
        #expect(server.receivedResponses.first?.payload == "answer")
        #expect(concurrency.started == 1)
    }

    /// With one handler and one waiting request, the client takes no more than the running, queued and parked
    /// requests, and the server's socket fills up. Once the handler is released every request is answered.
    @Test func aFullInboundPoolStopsReadingAndResumes() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        let gate = Gate()
        let concurrency = Concurrency()
        let count = 64
        try await withConnection(
            endpoints: [server.endpoint],
            configure: {
                $0.inboundHandlerPool = HandlerPoolConfiguration(width: 1, queueLimit: 1)
                // A paused connection reads no heartbeat replies either; keep it from being declared dead.
                $0.readTimeout = nil
            },
            inbound: { request, responder in
                concurrency.enter()
                await gate.wait()
                concurrency.leave()
                try? await responder.respond(.response(request.key))
            }
        ) { connection in
            #expect(await eventually { server.activeConnectionCount == 1 })
            // 32 MiB in all: more than loopback's socket buffers hold.
            let payload = String(repeating: "x", count: 512 << 10)
            for key in 0..<count { server.push(.request(UInt32(key), payload)) }
            // One running, one queued, one parked: the connection pauses (ReadPauseTests shows that no read is
            // issued then), and the server is left with data it cannot write.
            #expect(await eventually { connection.statistics().framesIn >= 3 })
            #expect(connection.statistics().framesIn == 3)
            // Handed to its worker; the handler may not have begun yet.
            #expect(await eventually { concurrency.started == 1 })
            // Its pushes reach the socket over time; with the client paused, they fill it.
            #expect(await eventually { server.childrenWritable == [false] })
            gate.open()
            #expect(await eventually { server.receivedResponses.count == count })
            #expect(Set(server.receivedResponses.map(\.key)) == Set(0..<UInt32(count)))
            #expect(concurrency.most == 1)
            #expect(connection.statistics().unsolicitedDropped == 0)
        }
    }

    /// A pool's connections share one set of inbound handlers.
    @Test func aConnectionPoolSharesOneHandlerPool() async throws {
        let first = try await TestServer()
        let second = try await TestServer()
        defer { Task { await first.stop(); await second.stop() } }
        let gate = Gate()
        let concurrency = Concurrency()
        var configuration = PersistentConnection<TestCodec>.Configuration(endpoints: [])
        configuration.inboundHandlerPool = HandlerPoolConfiguration(width: 2, queueLimit: 100)
        let pool = PersistentConnectionPool(
            codec: TestCodec(),
            endpoints: [first.endpoint, second.endpoint],
            configuration: configuration
        ) { request, responder in
            concurrency.enter()
            await gate.wait()
            concurrency.leave()
            try? await responder.respond(.response(request.key))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pool.run() }
            #expect(await eventually { first.activeConnectionCount == 1 && second.activeConnectionCount == 1 })
            for key in 0..<5 as Range<UInt32> {
                first.push(.request(key))
                second.push(.request(100 + key))
            }
            #expect(await eventually { concurrency.started == 2 })
            gate.open()
            #expect(await eventually { first.receivedResponses.count == 5 && second.receivedResponses.count == 5 })
            #expect(concurrency.most == 2)
            pool.close()
            try await group.next()
        }
    }
}
