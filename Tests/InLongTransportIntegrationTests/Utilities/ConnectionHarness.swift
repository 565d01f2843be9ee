import InLongTestUtils
import InLongTransport
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Runs a connection for the duration of `body`, then closes it and waits for `run()` to return, so no test
/// leaves a channel or task behind.
func withConnection<Result: Sendable>(
    endpoints: [Endpoint],
    configure: (inout PersistentConnection<TestCodec>.Configuration) -> Void = { _ in },
    codec: TestCodec = TestCodec(),
    waitUntilReady: Bool = true,
    inbound: PersistentConnection<TestCodec>.InboundRequestHandler? = nil,
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    _ body: (PersistentConnection<TestCodec>) async throws -> Result
) async throws -> Result {
    var configuration = PersistentConnection<TestCodec>.Configuration(endpoints: endpoints)
    configuration.connectTimeout = .seconds(2)
    configuration.backoff = ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(200), multiplier: 2, jitter: 0.1)
    configure(&configuration)
    let connection = PersistentConnection(codec: codec, configuration: configuration, eventLoopGroup: eventLoopGroup, inboundRequestHandler: inbound)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await connection.run() }
        defer { group.cancelAll() }
        if waitUntilReady { try await connection.waitForState(.ready) }
        let result = try await body(connection)
        connection.close()
        try await group.next()
        #expect(connection.connectivityState == .shutdown)
        return result
    }
}

struct TimedOut: Error {}

extension PersistentConnection {
    /// Waits until the connection reaches `state` (bounded, so a broken test fails instead of hanging).
    func waitForState(_ target: PersistentConnectionState, within limit: Duration = .seconds(60)) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await state in self.connectivityStates() where state == target { return true }
                return false
            }
            group.addTask {
                try await Task.sleep(for: limit)
                throw TimedOut()
            }
            defer { group.cancelAll() }
            guard try await group.next() == true else { throw TimedOut() }
        }
    }
}

extension PersistentConnection where Codec == TestCodec {
    /// Whether `request` gets an answer within `limit`, for tests where the connection is re-establishing. The
    /// bound is generous: a loaded machine may take seconds to reconnect, and a passing test never waits it out.
    func answersEventually(_ request: TestFrame, within limit: Duration = .seconds(60)) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if (try? await self.request(request, timeout: .seconds(5))) != nil { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Sends `count` requests at once (keys 0..<count, payload `v<key>`) and counts those answered with their own
    /// payload.
    func echoedConcurrently(_ count: UInt32) async throws -> Int {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for key in 0..<count {
                group.addTask { try await self.request(.request(key, "v\(key)")).payload == "v\(key)" }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
    }
}

/// Collects values from concurrent tasks.
final class Collector<Value: Sendable>: Sendable {
    private let values = Mutex<[Value]>([])
    func append(_ value: Value) { self.values.withLock { $0.append(value) } }
    var all: [Value] { self.values.withLock { $0 } }
}

/// Runs a server on a free loopback port for the duration of `body`, then stops it and waits for `run()`.
func withPersistentServer<Result: Sendable>(
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
