import InLongTransport
import NIOCore
import Synchronization
import Testing

/// The server side over loopback, with ``PersistentConnection`` as its client.
@Suite(.timeLimit(.minutes(2))) struct PersistentServerTests {
    /// A gate handlers wait on until the test opens it.
    final class Gate: Sendable {
        private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
        func wait() async {
            await withCheckedContinuation { continuation in
                let resumeNow = self.state.withLock { state in
                    if state.open { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        func open() {
            let waiters = self.state.withLock { state in
                state.open = true
                defer { state.waiters.removeAll() }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Counts handlers running now and the most at once.
    final class Concurrency: Sendable {
        private let state = Mutex<(now: Int, most: Int, started: Int)>((0, 0, 0))
        func enter() { self.state.withLock { $0.now += 1; $0.started += 1; $0.most = max($0.most, $0.now) } }
        func leave() { self.state.withLock { $0.now -= 1 } }
        var most: Int { self.state.withLock { $0.most } }
        var started: Int { self.state.withLock { $0.started } }
    }

    private func withServer<Result: Sendable>(
        configure: (inout PersistentServer<TestCodec>.Configuration) -> Void = { _ in },
        handler: @escaping PersistentServer<TestCodec>.RequestHandler = { request, responder in
            try? await responder.respond(.response(request.key, request.payload))
        },
        _ body: (PersistentServer<TestCodec>, Endpoint) async throws -> Result
    ) async throws -> Result {
        var configuration = PersistentServer<TestCodec>.Configuration(host: "127.0.0.1", port: 0)
        configure(&configuration)
        let server = PersistentServer(codec: TestCodec(), configuration: configuration, handler: handler)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            defer { group.cancelAll() }
            let port = try await server.localAddress().port!
            let result = try await body(server, Endpoint(host: "127.0.0.1", port: port))
            server.stop()
            try await group.next()
            return result
        }
    }

    @Test func requestsAreAnsweredOnTheirConnection() async throws {
        try await self.withServer { server, endpoint in
            try await withConnection(endpoints: [endpoint]) { connection in
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    for key in 0..<200 as Range<UInt32> {
                        group.addTask { try await connection.request(.request(key, "v\(key)")).payload == "v\(key)" }
                    }
                    for try await matched in group { #expect(matched) }
                }
            }
            #expect(server.statistics().requestsHandled == 200)
            #expect(server.statistics().acceptedConnections == 1)
        }
    }

    @Test func aSlowHandlerDoesNotDelayOtherAnswers() async throws {
        let gate = Gate()
        try await self.withServer(handler: { request, responder in
            if request.key == 1 { await gate.wait() }
            try? await responder.respond(.response(request.key, request.payload))
        }) { _, endpoint in
            try await withConnection(endpoints: [endpoint]) { connection in
                let slow = Task { try await connection.request(.request(1, "slow"), timeout: .seconds(60)) }
                let fast = try await connection.request(.request(2, "fast"))
                #expect(fast.payload == "fast")
                gate.open()
                let answer = try await slow.value
                #expect(answer.payload == "slow")
            }
        }
    }

    /// With every handler slot taken the connection stops reading; once handlers end, every request is answered.
    @Test func aFullHandlerPoolHoldsReadingBackAndResumes() async throws {
        let gate = Gate()
        let concurrency = Concurrency()
        try await self.withServer(
            configure: { $0.maxConcurrentRequests = 2 },
            handler: { request, responder in
                concurrency.enter()
                await gate.wait()
                concurrency.leave()
                try? await responder.respond(.response(request.key, request.payload))
            }
        ) { _, endpoint in
            try await withConnection(endpoints: [endpoint]) { connection in
                let futures = try (0..<100 as Range<UInt32>).map { try connection.submit(.request($0), timeout: .seconds(60)) }
                try await eventually { concurrency.started == 2 }
                #expect(concurrency.most == 2)
                gate.open()
                for (key, future) in futures.enumerated() {
                    let answer = try await future.get()
                    #expect(answer.key == UInt32(key))
                }
                #expect(concurrency.most == 2)
                #expect(concurrency.started == 100)
            }
        }
    }

    @Test func thePeersHeartbeatsAreAnswered() async throws {
        try await self.withServer { _, endpoint in
            try await withConnection(endpoints: [endpoint], configure: { $0.heartbeatInterval = .milliseconds(50) }) { connection in
                try await eventually { connection.statistics().lastHeartbeatRTT != nil }
            }
        }
    }

    @Test func connectionsOverTheLimitAreClosed() async throws {
        try await self.withServer(configure: { $0.maxConnections = 1 }) { server, endpoint in
            try await withConnection(endpoints: [endpoint]) { first in
                try await eventually { server.statistics().openConnections == 1 }
                try await withConnection(endpoints: [endpoint], waitUntilReady: false) { _ in
                    try await eventually { server.statistics().rejectedConnections >= 1 }
                }
                let answer = try await first.request(.request(5, "still"))
                #expect(answer.payload == "still")
            }
        }
    }

    /// Stopping lets the requests under way finish and be answered before connections close.
    @Test func stopFinishesRequestsUnderWay() async throws {
        let gate = Gate()
        let concurrency = Concurrency()
        var configuration = PersistentServer<TestCodec>.Configuration(host: "127.0.0.1", port: 0)
        configuration.readTimeout = nil
        let server = PersistentServer(codec: TestCodec(), configuration: configuration) { request, responder in
            concurrency.enter()
            await gate.wait()
            try? await responder.respond(.response(request.key, "late"))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.localAddress().port!
            try await withConnection(endpoints: [Endpoint(host: "127.0.0.1", port: port)]) { connection in
                let pending = Task { try await connection.request(.request(9), timeout: .seconds(60)) }
                try await eventually { concurrency.started == 1 }
                server.stop()
                gate.open()
                let answer = try await pending.value
                #expect(answer.payload == "late")
            }
            try await group.next()
        }
        #expect(server.statistics().openConnections == 0)
    }
}
