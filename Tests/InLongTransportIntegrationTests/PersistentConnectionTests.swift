import InLongTestUtils
import InLongTransport
import NIOCore
import Synchronization
import Testing

/// Integration tests on 127.0.0.1 against an in-process server that misbehaves in every way a peer can.
@Suite(.timeLimit(.minutes(3))) struct PersistentConnectionTests {
    @Test func requestsGetTheirOwnResponsesConcurrently() async throws {
        let server = try await TestServer(behavior: .echo)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint]) { connection in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for key in 0..<500 {
                    group.addTask {
                        let response = try await connection.request(.request(UInt32(key), "payload-\(key)"))
                        #expect(response == .response(UInt32(key), "payload-\(key)"))
                    }
                }
                try await group.waitForAll()
            }
            let statistics = connection.statistics()
            #expect(statistics.requestsSucceeded == 500)
            #expect(statistics.inFlight == 0)
            #expect(statistics.framesIn == 500)
            #expect(statistics.connects == 1)
        }
    }

    @Test func outOfOrderResponsesAreMatchedByKey() async throws {
        let server = try await TestServer(behavior: .reverseEvery(8))
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint]) { connection in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for key in 0..<64 {
                    group.addTask {
                        let response = try await connection.request(.request(UInt32(key), "v\(key)"))
                        #expect(response.payload == "v\(key)")
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test func responsesSplitIntoOneByteWritesAreReassembled() async throws {
        let server = try await TestServer(behavior: .oneByteWrites)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint]) { connection in
            for key in 0..<5 {
                let response = try await connection.request(.request(UInt32(key), "split"))
                #expect(response.payload == "split")
            }
        }
    }

    @Test func slowResponseTimesOutAndMayHaveBeenDelivered() async throws {
        let server = try await TestServer(behavior: .slow(.seconds(5)))
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint], configure: { $0.drainTimeout = .milliseconds(100) }) { connection in
            await #expect {
                try await connection.request(.request(1), timeout: .milliseconds(100))
            } throws: { error in
                let error = error as! TransportError
                return error.code == .requestTimeout && error.mayHaveBeenDelivered && error.endpoint == server.endpoint
            }
            #expect(connection.statistics().requestsTimedOut == 1)
            #expect(connection.statistics().inFlight == 0)
        }
    }

    @Test func silentPeerIsDeclaredDeadAndPendingRequestsFail() async throws {
        let server = try await TestServer(behavior: .silent)
        defer { Task { await server.stop() } }
        try await withConnection(
            endpoints: [server.endpoint],
            configure: {
                $0.heartbeatInterval = .milliseconds(50)
                $0.readTimeout = .milliseconds(300)
            }
        ) { connection in
            // On a loaded machine the connection may die (and be re-established) before the request is made:
            // ask again while it is not connected.
            var observed: TransportError?
            for _ in 0..<500 {
                do {
                    _ = try await connection.request(.request(7), timeout: .seconds(30))
                    Issue.record("a silent peer answered")
                    break
                } catch let error as TransportError where error.code == .notConnected {
                    try await Task.sleep(for: .milliseconds(10))
                } catch let error as TransportError {
                    observed = error
                    break
                }
            }
            #expect(observed?.code == .heartbeatTimeout)
            #expect(observed?.mayHaveBeenDelivered == true)
            #expect(await eventually { server.connectionCount >= 2 })
            #expect(connection.statistics().disconnects["heartbeatTimeout", default: 0] >= 1)
        }
    }

    @Test func heartbeatsKeepAnIdleConnectionAliveAndMeasureRTT() async throws {
        let server = try await TestServer(behavior: .echo)
        defer { Task { await server.stop() } }
        try await withConnection(
            endpoints: [server.endpoint],
            configure: {
                $0.heartbeatInterval = .milliseconds(50)
                // Generous: a loaded machine can stall the event loop for a second.
                $0.readTimeout = .seconds(3)
            }
        ) { connection in
            // More than a read timeout passes with no application traffic; heartbeat replies keep it up.
            try await Task.sleep(for: .milliseconds(3500))
            let statistics = connection.statistics()
            #expect(statistics.connects == 1)
            #expect(statistics.disconnects.isEmpty)
            #expect(statistics.lastHeartbeatRTT != nil)
            #expect(statistics.framesOut >= 3)
            let response = try await connection.request(.request(1))
            #expect(response.key == 1)
        }
    }

    @Test func garbageFromThePeerClosesWithAProtocolViolation() async throws {
        let server = try await TestServer(behavior: .garbage)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint]) { connection in
            await #expect {
                try await connection.request(.request(1))
            } throws: { error in
                (error as! TransportError).code == .protocolViolation
            }
            #expect(await eventually { server.connectionCount >= 2 })
            server.behavior = .echo
            try await connection.waitForState(.ready)
            #expect(await eventually { connection.connectedEndpoint != nil })
            #expect(connection.statistics().disconnects["protocolViolation", default: 0] >= 1)
        }
    }

    @Test func resetMidFrameFailsPendingRequestsAndReconnects() async throws {
        let server = try await TestServer(behavior: .resetMidFrame)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint]) { connection in
            await #expect {
                try await connection.request(.request(1))
            } throws: { error in
                let error = error as! TransportError
                return error.code == .connectionClosed && error.mayHaveBeenDelivered
            }
            server.behavior = .echo
            #expect(await eventually { server.connectionCount >= 2 && connection.connectedEndpoint != nil })
            #expect(await connection.answersEventually(.request(2)))
        }
    }

    @Test func refusedEndpointsBackOffThenTheLiveOneIsUsed() async throws {
        let dead = ClosedPort()
        defer { withExtendedLifetime(dead) {} }
        let deadEndpoint = dead.endpoint
        let live = try await TestServer(behavior: .echo)
        defer { Task { await live.stop() } }
        try await withConnection(endpoints: [deadEndpoint, live.endpoint]) { connection in
            #expect(connection.connectedEndpoint == live.endpoint)
            let response = try await connection.request(.request(3))
            #expect(response.key == 3)
            #expect(connection.statistics().connectFailures >= 1)
        }
    }

    @Test func onlyDeadEndpointsGiveTransientFailureAndNotConnected() async throws {
        let dead = ClosedPort()
        defer { withExtendedLifetime(dead) {} }
        let endpoint = dead.endpoint
        try await withConnection(endpoints: [endpoint], waitUntilReady: false) { connection in
            try await connection.waitForState(.transientFailure)
            await #expect {
                try await connection.request(.request(1))
            } throws: { error in
                let error = error as! TransportError
                return error.code == .notConnected && !error.mayHaveBeenDelivered
            }
            #expect(await eventually { connection.statistics().connectFailures >= 3 })
        }
    }

    @Test func acceptThenCloseIsRetriedWithBackoff() async throws {
        let server = try await TestServer(behavior: .acceptThenClose)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint], waitUntilReady: false) { connection in
            #expect(await eventually { server.connectionCount >= 3 })
            server.behavior = .echo
            #expect(await eventually { connection.connectedEndpoint != nil && connection.connectivityState == .ready })
            #expect(await connection.answersEventually(.request(9)))
        }
    }

    /// A peer that closes right after accept, many times over: each close must be seen, even one that happens
    /// before the connection reports itself connected, or a dead channel would be kept as ready for good.
    @Test func connectionsClosedRightAfterAcceptNeverWedgeTheClient() async throws {
        let server = try await TestServer(behavior: .acceptThenClose)
        defer { Task { await server.stop() } }
        try await withConnection(
            endpoints: [server.endpoint],
            configure: { $0.backoff = ExponentialBackoff(initial: .milliseconds(1), maximum: .milliseconds(2), multiplier: 2, jitter: 0.1) },
            waitUntilReady: false
        ) { connection in
            #expect(await eventually(timeout: .seconds(60)) { server.connectionCount >= 300 })
            server.behavior = .echo
            #expect(await connection.answersEventually(.request(9)))
            #expect(connection.connectivityState == .ready)
        }
    }

    /// A peer that accepts and closes is redialled at the backoff's pace, not flat out. Attempts in a fixed window
    /// are bounded above by the backoff: a slow machine makes fewer, never more.
    @Test func acceptThenCloseIsNotRedialledFlatOut() async throws {
        let server = try await TestServer(behavior: .acceptThenClose)
        defer { Task { await server.stop() } }
        try await withConnection(
            endpoints: [server.endpoint],
            configure: { $0.backoff = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0) },
            waitUntilReady: false
        ) { connection in
            let start = ContinuousClock.now
            #expect(await eventually { server.connectionCount >= 4 })
            let elapsed = ContinuousClock.now - start
            #expect(server.connectionCount <= attemptsAllowed(within: elapsed, initial: .milliseconds(100), maximum: .seconds(1)))
        }
    }

    /// The on-connect hook logs in on the new connection before anything else is let through.
    @Test func onConnectHookRunsBeforeTheConnectionIsReady() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        let logins = Collector<String>()
        try await withConnection(
            endpoints: [server.endpoint],
            configure: { configuration in
                configuration.onConnect = { handshake in
                    let answer = try await handshake.request(.request(7_000, "login"))
                    logins.append(answer.payload)
                }
            }
        ) { connection in
            #expect(logins.all == ["login"])
            let answer = try await connection.request(.request(1, "after"))
            #expect(answer.payload == "after")
            await server.dropConnections()
            #expect(await connection.answersEventually(.request(2)))
            #expect(logins.all == ["login", "login"])
        }
    }

    /// A hook that fails keeps the connection from becoming ready, and the retries follow the backoff.
    @Test func aFailingOnConnectHookIsAFailedConnect() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        struct Refused: Error {}
        try await withConnection(
            endpoints: [server.endpoint],
            configure: { configuration in
                configuration.backoff = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2, jitter: 0)
                configuration.onConnect = { _ in throw Refused() }
            },
            waitUntilReady: false
        ) { connection in
            let start = ContinuousClock.now
            #expect(await eventually { connection.statistics().connectFailures >= 3 })
            let elapsed = ContinuousClock.now - start
            #expect(connection.connectivityState != .ready)
            #expect(!connection.isAcceptingRequests)
            #expect(connection.statistics().connects == 0)
            #expect(server.connectionCount <= attemptsAllowed(within: elapsed, initial: .milliseconds(100), maximum: .seconds(1)))
        }
    }

    /// With reconnect off, the first close ends the connection.
    @Test func withoutReconnectTheFirstCloseEndsRun() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        var configuration = PersistentConnection<TestCodec>.Configuration(endpoints: [server.endpoint])
        configuration.reconnect = false
        let connection = PersistentConnection(codec: TestCodec(), configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await connection.run() }
            try await connection.waitForState(.ready)
            #expect(await eventually { server.activeConnectionCount == 1 })
            await server.dropConnections()
            try await group.next()
            #expect(connection.connectivityState == .shutdown)
            #expect(server.connectionCount == 1)
        }
    }

    @Test func stateSequenceOnDropAndReconnect() async throws {
        let server = try await TestServer(behavior: .echo)
        defer { Task { await server.stop() } }
        let seen = Collector<PersistentConnectionState>()
        try await withConnection(endpoints: [server.endpoint]) { connection in
            let observer = Task {
                for await state in connection.connectivityStates() { seen.append(state) }
            }
            #expect(await eventually { seen.all.first == .ready && server.activeConnectionCount == 1 })
            await server.dropConnections()
            #expect(await eventually { seen.all.filter { $0 == .ready }.count >= 2 })
            _ = observer
        }
        #expect(await eventually { seen.all.last == .shutdown })
        let states = seen.all
        #expect(states.first == .ready)
        #expect(states.contains(.connecting))
        #expect(states.last == .shutdown)
    }

    @Test func aSlowInboundHandlerDoesNotDelayResponses() async throws {
        let server = try await TestServer(behavior: .echo)
        defer { Task { await server.stop() } }
        let received = Collector<TestFrame>()
        let handlerFinished = Atomic<Bool>(false)
        let release = AsyncStream.makeStream(of: Void.self)
        try await withConnection(
            endpoints: [server.endpoint],
            inbound: { frame, _ in
                received.append(frame)
                if received.all.count == 1 {
                    // Block the handler until the test lets it go.
                    for await _ in release.stream { break }
                    handlerFinished.store(true, ordering: .relaxed)
                }
            }
        ) { connection in
            #expect(await eventually { server.activeConnectionCount == 1 })
            server.push(TestFrame(kind: .push, key: 100, payload: "first"))
            #expect(await eventually { received.all.count == 1 })
            server.push(TestFrame(kind: .push, key: 101, payload: "second"))
            // The handler is stuck, yet responses keep flowing.
            for key in 0..<20 {
                let response = try await connection.request(.request(UInt32(key)))
                #expect(response.key == UInt32(key))
            }
            #expect(handlerFinished.load(ordering: .relaxed) == false)
            release.continuation.yield()
            #expect(await eventually { received.all.count == 2 })
            #expect(received.all.map(\.payload) == ["first", "second"])
        }
    }

    @Test func closeDrainsInFlightRequestsBeforeReturning() async throws {
        // Answered after 2 s, so that a loaded machine still sees the request in flight before it ends.
        let server = try await TestServer(behavior: .slow(.seconds(2)))
        defer { Task { await server.stop() } }
        let outcome = Collector<String>()
        try await withConnection(endpoints: [server.endpoint]) { connection in
            let pending = Task {
                do {
                    let response = try await connection.request(.request(5, "late"))
                    outcome.append(response.payload)
                } catch {
                    outcome.append("\(error)")
                }
            }
            #expect(await eventually { connection.inFlightCount == 1 })
            connection.close()
            await pending.value
            #expect(outcome.all == ["late"])
            await #expect(throws: TransportError.self) { try await connection.request(.request(6)) }
        }
    }

    @Test func cancellingTheAwaitingTaskFailsTheRequest() async throws {
        let server = try await TestServer(behavior: .silent)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint], configure: { $0.drainTimeout = .milliseconds(100) }) { connection in
            let task = Task { try await connection.request(.request(1), timeout: .seconds(60)) }
            #expect(await eventually { connection.inFlightCount == 1 })
            task.cancel()
            await #expect {
                try await task.value
            } throws: { error in
                (error as! TransportError).code == .cancelled
            }
            #expect(await eventually { connection.inFlightCount == 0 })
        }
    }

    @Test func maxConnectionAgeRecyclesTheConnection() async throws {
        let server = try await TestServer(behavior: .echo)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint], configure: { $0.maxConnectionAge = .milliseconds(100) }) { connection in
            #expect(await eventually { connection.statistics().connects >= 3 })
            #expect(connection.statistics().disconnects["local", default: 0] >= 2)
            #expect(await connection.answersEventually(.request(1)))
        }
    }

    @Test func closingLeavesNoChannelOpen() async throws {
        let server = try await TestServer(behavior: .echo)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint]) { connection in
            #expect(await eventually { server.activeConnectionCount == 1 })
            _ = try await connection.request(.request(1))
        }
        // run() has returned: the server sees the connection closed.
        #expect(await eventually { server.activeConnectionCount == 0 })
    }

    @Test func aPeerThatStopsReadingMakesRequestsQueueUpToTheLimit() async throws {
        let server = try await TestServer(behavior: .stopReading)
        defer { Task { await server.stop() } }
        let outcomes = Collector<TransportError.Code?>()
        try await withConnection(
            endpoints: [server.endpoint],
            configure: {
                $0.writeBufferWaterMarks = .init(low: 32 << 10, high: 64 << 10)
                $0.maxQueued = 20
                $0.drainTimeout = .milliseconds(100)
                $0.heartbeatInterval = nil
                $0.readTimeout = nil
            }
        ) { connection in
            let payload = String(repeating: "x", count: 64 << 10)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for key in 0..<400 {
                    group.addTask {
                        do {
                            _ = try await connection.request(.request(UInt32(key), payload), timeout: .seconds(30))
                            outcomes.append(nil)  // an answer: not expected, the peer reads nothing
                        } catch let error as TransportError {
                            outcomes.append(error.code)
                        }
                    }
                }
                // 400 × 64 KiB is far more than the socket buffers hold: the rest queue, and past the queue limit
                // requests are refused without being written.
                #expect(await eventually { outcomes.all.filter { $0 == .tooManyRequests }.count > 0 })
                connection.close()
                try await group.waitForAll()
            }
        }
        let all = outcomes.all
        #expect(all.count == 400)
        #expect(all.filter { $0 == .tooManyRequests }.count > 100)
        #expect(!all.contains(nil))
        // Everything not refused failed when the connection closed: nothing was left hanging.
        #expect(all.allSatisfy { [.tooManyRequests, .shutDown, .connectionClosed].contains($0) })
    }

    @Test func sendCompletesOnceWritten() async throws {
        let server = try await TestServer(behavior: .echo)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint]) { connection in
            for key in 0..<100 { try await connection.send(.request(UInt32(key))) }
            #expect(await eventually { server.requestCount == 100 })
            #expect(connection.statistics().framesOut >= 100)
        }
    }
}

/// The most connect attempts a doubling backoff without jitter allows within `elapsed` (one at once, then one
/// after each delay), plus one for an attempt under way at the end. A slow machine makes fewer, never more.
func attemptsAllowed(within elapsed: Duration, initial: Duration, maximum: Duration) -> Int {
    var attempts = 2
    var delay = initial
    var due = initial
    while due <= elapsed {
        attempts += 1
        delay = min(delay * 2, maximum)
        due += delay
    }
    return attempts
}
