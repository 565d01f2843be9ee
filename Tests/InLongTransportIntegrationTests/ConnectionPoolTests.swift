import InLongTestUtils
import InLongTransport
import Logging
import NIOCore
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@Suite(.timeLimit(.minutes(3))) struct ConnectionPoolTests {
    func withPool<Result: Sendable>(
        _ endpoints: [Endpoint],
        policy: LoadBalancingPolicy = .leastInFlight,
        health: PersistentConnectionPool<TestCodec>.HealthPolicy? = nil,
        drainTimeout: Duration = .milliseconds(200),
        _ body: (PersistentConnectionPool<TestCodec>) async throws -> Result
    ) async throws -> Result {
        var configuration = PersistentConnection<TestCodec>.Configuration(endpoints: [])
        configuration.backoff = ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(200))
        configuration.drainTimeout = drainTimeout
        let pool = PersistentConnectionPool(codec: TestCodec(), endpoints: endpoints, configuration: configuration, policy: policy, health: health)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pool.run() }
            #expect(await eventually { pool.connections.allSatisfy { $0.connectivityState == .ready } })
            let result = try await body(pool)
            pool.close()
            try await group.next()
            #expect(pool.connections.allSatisfy { $0.connectivityState == .shutdown })
            return result
        }
    }

    @Test func roundRobinSpreadsRequestsOverEveryEndpoint() async throws {
        let servers = [try await TestServer(), try await TestServer(), try await TestServer()]
        defer { Task { for server in servers { await server.stop() } } }
        try await self.withPool(servers.map(\.endpoint), policy: .roundRobin) { pool in
            for key in 0..<30 {
                let response = try await pool.request(.request(UInt32(key)))
                #expect(response.key == UInt32(key))
            }
            #expect(servers.map(\.requestCount) == [10, 10, 10])
            #expect(pool.statistics().requestsSucceeded == 30)
            #expect(pool.statistics().connects == 3)
        }
    }

    /// The pool owns health: outcomes reported per endpoint make a failing one avoided (never the last usable
    /// one), and a success brings it back.
    @Test func anEndpointWithFailingOutcomesIsAvoidedUntilItSucceeds() async throws {
        let servers = [try await TestServer(), try await TestServer()]
        defer { Task { for server in servers { await server.stop() } } }
        try await self.withPool(servers.map(\.endpoint), policy: .roundRobin, health: .init(threshold: 2, basePause: .seconds(60))) { pool in
            let (first, _) = try pool.submit(.request(1))
            #expect(servers.map(\.endpoint).contains(first))
            pool.recordOutcome(servers[0].endpoint, succeeded: false)
            #expect(pool.avoidedEndpoints.isEmpty)
            pool.recordOutcome(servers[0].endpoint, succeeded: false)
            #expect(pool.avoidedEndpoints == [servers[0].endpoint])
            for key in 0..<10 {
                let (endpoint, response) = try pool.submit(.request(UInt32(10 + key)))
                #expect(endpoint == servers[1].endpoint)
                _ = try await response.get()
            }
            // The other one failing too would leave nothing: it is not avoided.
            pool.recordOutcome(servers[1].endpoint, succeeded: false)
            pool.recordOutcome(servers[1].endpoint, succeeded: false)
            #expect(pool.avoidedEndpoints == [servers[0].endpoint])
            pool.recordOutcome(servers[0].endpoint, succeeded: true)
            #expect(pool.avoidedEndpoints.isEmpty)
        }
    }

    @Test func leastInFlightAvoidsTheBusyConnection() async throws {
        let busy = try await TestServer(behavior: .silent)
        let idle = try await TestServer()
        defer { Task { await busy.stop(); await idle.stop() } }
        try await self.withPool([busy.endpoint, idle.endpoint]) { pool in
            let busyConnection = pool.connections[0]
            let stuck = (0..<3).map { key in
                Task { try? await busyConnection.request(.request(UInt32(key)), timeout: .seconds(30)) }
            }
            #expect(await eventually { busyConnection.inFlightCount == 3 })
            for _ in 0..<10 {
                let answer = try pool.chooseConnection().configuration.endpoints
                #expect(answer == [idle.endpoint])
            }
            for task in stuck { task.cancel() }
        }
    }

    /// A connection draining (recycled with a request still in flight) is not chosen, even by a policy that would
    /// prefer it; the other connection takes every request meanwhile.
    @Test func aDrainingConnectionIsNotChosen() async throws {
        let slow = try await TestServer(behavior: .slow(.seconds(30)))
        let other = try await TestServer()
        defer { Task { await slow.stop(); await other.stop() } }
        // The drain outlasts the test, however slow the machine.
        try await self.withPool([slow.endpoint, other.endpoint], policy: .roundRobin, drainTimeout: .seconds(60)) { pool in
            let draining = pool.connections[0]
            let held = Task { try? await draining.request(.request(1), timeout: .seconds(30)) }
            #expect(await eventually { draining.inFlightCount == 1 })
            #expect(draining.isAcceptingRequests)
            draining.recycle()
            #expect(!draining.isAcceptingRequests)
            for _ in 0..<10 {
                let answer = try pool.chooseConnection().configuration.endpoints
                #expect(answer == [other.endpoint])
            }
            held.cancel()
        }
    }

    @Test func aDisabledEndpointIsNotChosenUntilEnabled() async throws {
        let servers = [try await TestServer(), try await TestServer()]
        defer { Task { for server in servers { await server.stop() } } }
        try await self.withPool(servers.map(\.endpoint), policy: .roundRobin) { pool in
            pool.setEnabled(false, for: servers[0].endpoint)
            for key in 0..<10 { _ = try await pool.request(.request(UInt32(key))) }
            #expect(servers.map(\.requestCount) == [0, 10])
            // Still open: disabling is not closing.
            #expect(pool.connections[0].isAcceptingRequests)
            pool.setEnabled(false, for: servers[1].endpoint)
            #expect(throws: TransportError.self) { try pool.chooseConnection() }
            pool.setEnabled(true, for: servers[0].endpoint)
            for key in 10..<20 { _ = try await pool.request(.request(UInt32(key))) }
            #expect(servers.map(\.requestCount) == [10, 10])
        }
    }

    @Test func customPolicyChoosesByCandidate() async throws {
        let a = try await TestServer()
        let b = try await TestServer()
        defer { Task { await a.stop(); await b.stop() } }
        let target = b.endpoint
        try await self.withPool([a.endpoint, b.endpoint], policy: .custom { $0.firstIndex { $0.endpoint == target } ?? 0 }) { pool in
            for key in 0..<5 { _ = try await pool.request(.request(UInt32(key))) }
            #expect(a.requestCount == 0)
            #expect(b.requestCount == 5)
        }
    }

    @Test func endpointUpdatesKeepHealthyConnectionsAndNeverDropTheLast() async throws {
        let a = try await TestServer()
        let b = try await TestServer()
        let c = try await TestServer()
        defer { Task { await a.stop(); await b.stop(); await c.stop() } }
        try await self.withPool([a.endpoint, b.endpoint]) { pool in
            let kept = pool.connections[1]
            let removed = pool.connections[0]
            #expect(pool.updateEndpoints([b.endpoint, c.endpoint]))
            #expect(pool.connections[0] === kept)
            try await removed.waitForState(.shutdown)
            #expect(await eventually { pool.connections.allSatisfy { $0.connectivityState == .ready } })
            #expect(pool.endpoints == [b.endpoint, c.endpoint])
            #expect(kept.statistics().connects == 1)
            #expect(!pool.updateEndpoints([]))
            #expect(pool.endpoints == [b.endpoint, c.endpoint])
            // Reordering with a duplicate changes no connection, only the order.
            #expect(!pool.updateEndpoints([c.endpoint, b.endpoint, b.endpoint]))
            #expect(pool.endpoints == [c.endpoint, b.endpoint])
        }
    }

    @Test func noReadyConnectionFailsFast() async throws {
        let dead = ClosedPort()
        defer { withExtendedLifetime(dead) {} }
        let endpoint = dead.endpoint
        var configuration = PersistentConnection<TestCodec>.Configuration(endpoints: [])
        configuration.backoff = ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(100))
        let pool = PersistentConnectionPool(codec: TestCodec(), endpoints: [endpoint], configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pool.run() }
            await #expect {
                try await pool.request(.request(1))
            } throws: { error in
                (error as! TransportError).code == .notConnected
            }
            pool.close()
            try await group.next()
        }
        await #expect(throws: TransportError.self) { try await pool.request(.request(1)) }
    }

    @Test func gracefulShutdownOfAServiceGroupDrainsThePool() async throws {
        // The answer takes long enough that a loaded machine still sees the request in flight before it ends.
        let server = try await TestServer(behavior: .slow(.seconds(2)))
        defer { Task { await server.stop() } }
        var configuration = PersistentConnection<TestCodec>.Configuration(endpoints: [])
        configuration.drainTimeout = .seconds(30)
        let pool = PersistentConnectionPool(codec: TestCodec(), endpoints: [server.endpoint], configuration: configuration)
        try await testGracefulShutdown { trigger in
            let group = ServiceGroup(services: [pool], logger: Logger(label: "test"))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                #expect(await eventually { pool.connections.first?.connectivityState == .ready })
                let pending = Task { try await pool.request(.request(7, "in flight")) }
                #expect(await eventually { pool.connections.first?.inFlightCount == 1 })
                trigger.triggerGracefulShutdown()
                // The in-flight request completes before the connection closes.
                #expect(try await pending.value.payload == "in flight")
                try await tasks.next()
            }
        }
        #expect(pool.connections.allSatisfy { $0.connectivityState == .shutdown })
        #expect(pool.statistics().inFlight == 0)
    }
}
