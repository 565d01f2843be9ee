import InLongTestUtils
import InLongTransport
import MetricsTestKit
import NIOCore
import Synchronization
import Testing

/// The server side over loopback, with ``PersistentConnection`` as its client.
@Suite(.timeLimit(.minutes(2))) struct PersistentServerTests {
    @Test func requestsAreAnsweredOnTheirConnection() async throws {
        try await withPersistentServer { server, endpoint in
            try await withConnection(endpoints: [endpoint]) { connection in
                let echoed = try await connection.echoedConcurrently(200)
                #expect(echoed == 200)
            }
            #expect(server.statistics().requestsHandled == 200)
            #expect(server.statistics().acceptedConnections == 1)
        }
    }

    @Test func aSlowHandlerDoesNotDelayOtherAnswers() async throws {
        let gate = Gate()
        try await withPersistentServer(handler: { request, responder in
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

    /// No more than `maxConcurrentRequests` of one connection's requests run at once; the others wait, and are
    /// answered as handlers end.
    @Test func oneConnectionsRequestsRunUpToItsLimit() async throws {
        let gate = Gate()
        let concurrency = Concurrency()
        try await withPersistentServer(
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
                #expect(await eventually { concurrency.started == 2 })
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

    /// Three connections share a pool of two handlers: never more than two run, the rest wait in its queue, and
    /// every request is answered once the handlers are released.
    @Test func theHandlerPoolIsSharedByEveryConnection() async throws {
        let gate = Gate()
        let concurrency = Concurrency()
        try await withPersistentServer(
            configure: { $0.handlerPool = HandlerPoolConfiguration(width: 2, queueLimit: 100) },
            handler: { request, responder in
                concurrency.enter()
                await gate.wait()
                concurrency.leave()
                try? await responder.respond(.response(request.key, request.payload))
            }
        ) { server, endpoint in
            try await withConnection(endpoints: [endpoint]) { first in
                try await withConnection(endpoints: [endpoint]) { second in
                    try await withConnection(endpoints: [endpoint]) { third in
                        var futures: [EventLoopFuture<TestFrame>] = []
                        for (index, connection) in [first, second, third].enumerated() {
                            for key in 0..<5 as Range<UInt32> {
                                futures.append(try connection.submit(.request(UInt32(index * 100) + key), timeout: .seconds(60)))
                            }
                        }
                        #expect(await eventually { server.statistics().queuedRequests == 13 })
                        #expect(await eventually { concurrency.started == 2 })
                        gate.open()
                        for future in futures { _ = try await future.get() }
                        #expect(concurrency.most == 2)
                        #expect(server.statistics().requestsHandled == 15)
                    }
                }
            }
        }
    }

    /// With one handler and one waiting request, the server reads nothing more from the connection: the client
    /// cannot write, and the server holds one request beyond its queue. Released, it reads and handles the rest.
    @Test func aFullHandlerPoolStopsReadingAndResumes() async throws {
        let gate = Gate()
        let concurrency = Concurrency()
        let count = 64
        try await withPersistentServer(
            configure: {
                $0.handlerPool = HandlerPoolConfiguration(width: 1, queueLimit: 1)
                $0.readTimeout = nil
            },
            handler: { request, responder in
                concurrency.enter()
                await gate.wait()
                concurrency.leave()
                try? await responder.respond(.response(request.key))
            }
        ) { server, endpoint in
            let client = try await RawClient.connect(to: endpoint)
            // 32 MiB in all: more than loopback's socket buffers hold.
            let payload = String(repeating: "x", count: 512 << 10)
            for key in 0..<count { client.channel.writeAndFlush(TestFrame.request(UInt32(key), payload).bytes, promise: nil) }
            // One running, one queued, one parked: the connection pauses (ReadPauseTests shows that no read is
            // issued then), and the client is left with data it cannot write.
            #expect(await eventually { server.statistics().pausedConnections == 1 })
            #expect(server.statistics().queuedRequests == 1)
            // Handed to its worker; the handler may not have begun yet.
            #expect(await eventually { concurrency.started == 1 })
            #expect(await eventually { !client.channel.isWritable })
            gate.open()
            #expect(await eventually { client.responses.count == count })
            #expect(server.statistics().pausedConnections == 0)
            #expect(server.statistics().requestsHandled == count)
            #expect(concurrency.most == 1)
            try await client.channel.close()
        }
    }

    /// Bytes that are not a frame: the connection closes by default, or drops its buffer and goes on.
    @Test(arguments: [false, true]) func bytesThatAreNotAFrameFollowThePolicy(discard: Bool) async throws {
        try await withPersistentServer(configure: { $0.framingErrorPolicy = discard ? .discardBuffer : .close }) { server, endpoint in
            let client = try await RawClient.connect(to: endpoint)
            var garbage = ByteBuffer()
            garbage.writeInteger(UInt32(1))  // a length no frame of this codec has
            try await client.channel.writeAndFlush(garbage)
            if discard {
                #expect(await eventually { server.statistics().receiveBuffersDiscarded == 1 })
                try await client.channel.writeAndFlush(TestFrame.request(7, "after").bytes)
                #expect(await eventually { client.responses.map(\.key) == [7] })
                #expect(client.channel.isActive)
                try await client.channel.close()
            } else {
                try await client.channel.closeFuture.get()
                #expect(server.statistics().receiveBuffersDiscarded == 0)
            }
        }
    }

    @Test func thePeersHeartbeatsAreAnswered() async throws {
        try await withPersistentServer { _, endpoint in
            try await withConnection(endpoints: [endpoint], configure: { $0.heartbeatInterval = .milliseconds(50) }) { connection in
                #expect(await eventually { connection.statistics().lastHeartbeatRTT != nil })
            }
        }
    }

    @Test func connectionsOverTheLimitAreClosed() async throws {
        try await withPersistentServer(configure: { $0.maxConnections = 1 }) { server, endpoint in
            try await withConnection(endpoints: [endpoint]) { first in
                #expect(await eventually { server.statistics().openConnections == 1 })
                try await withConnection(endpoints: [endpoint], waitUntilReady: false) { _ in
                    #expect(await eventually { server.statistics().rejectedConnections >= 1 })
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
                #expect(await eventually { concurrency.started == 1 })
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

/// A connection's events take one path: the statistics and the swift-metrics instruments say the same.
@Suite(.timeLimit(.minutes(2))) struct ConnectionObservabilityTests {
    @Test func statisticsAndMetricsAgree() async throws {
        let metrics = TestMetrics()
        let server = PersistentServer(
            codec: TestCodec(),
            configuration: .init(host: "127.0.0.1", port: 0)
        ) { request, responder in
            // Key 0 is never answered: it times out.
            if request.key != 0 { try? await responder.respond(.response(request.key, request.payload)) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            defer { group.cancelAll() }
            let endpoint = Endpoint(host: "127.0.0.1", port: try await server.localAddress().port!)
            let statistics = try await withConnection(endpoints: [endpoint], configure: { $0.metricsFactory = metrics }) { connection in
                for key in 1...50 as ClosedRange<UInt32> { _ = try await connection.request(.request(key, "v")) }
                await #expect(throws: TransportError.self) { _ = try await connection.request(.request(0, "lost"), timeout: .milliseconds(100)) }
                return connection.statistics()
            }
            server.stop()
            let dimensions = [("endpoint", endpoint.description)]
            #expect(statistics.requestsSucceeded == 50)
            #expect(statistics.requestsTimedOut == 1)
            #expect(metrics.counterTotal(label: "inlong_transport_requests_total", dimensions: dimensions + [("result", "ok")]) == 50)
            #expect(metrics.counterTotal(label: "inlong_transport_requests_total", dimensions: dimensions + [("result", "timeout")]) == 1)
            #expect(metrics.counterTotal(label: "inlong_transport_frames_out_total", dimensions: dimensions) == Int64(statistics.framesOut))
            #expect(metrics.counterTotal(label: "inlong_transport_bytes_in_total", dimensions: dimensions) == Int64(statistics.bytesIn))
            #expect(metrics.counterTotal(label: "inlong_transport_connects_total", dimensions: dimensions) == 1)
            #expect(try metrics.expectMeter("inlong_transport_requests_in_flight", dimensions).lastValue == 0)
            #expect(try metrics.expectMeter("inlong_transport_requests_in_flight", dimensions).values.max() == 1)
        }
    }

    @Test func theServersStatisticsArePublishedAsMetrics() async throws {
        let metrics = TestMetrics()
        var configuration = PersistentServer<TestCodec>.Configuration(host: "127.0.0.1", port: 0)
        configuration.metricsFactory = metrics
        configuration.maxConnections = 1
        let server = PersistentServer(codec: TestCodec(), configuration: configuration) { request, responder in
            try? await responder.respond(.response(request.key, request.payload))
        }
        let port = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            defer { group.cancelAll() }
            let port = try await server.localAddress().port!
            let listener = [("listener", "127.0.0.1:\(port)")]
            try await withConnection(endpoints: [Endpoint(host: "127.0.0.1", port: port)]) { connection in
                for key in 1...20 as ClosedRange<UInt32> { _ = try await connection.request(.request(key, "v")) }
                // One connection too many is turned away.
                try await withConnection(
                    endpoints: [Endpoint(host: "127.0.0.1", port: port)],
                    configure: { $0.reconnect = false },
                    waitUntilReady: false
                ) { _ in
                    #expect(await eventually { server.statistics().rejectedConnections == 1 })
                }
                // Published while the server runs, not only at its end.
                #expect(await eventually {
                    metrics.counterTotal(label: "inlong_transport_server_requests_handled_total", dimensions: listener) == 20
                        && (try? metrics.expectGauge("inlong_transport_server_connections_open", listener).lastValue) == 1
                })
            }
            server.stop()
            try await group.next()
            return port
        }
        let listener = [("listener", "127.0.0.1:\(port)")]
        #expect(metrics.counterTotal(label: "inlong_transport_server_connections_accepted_total", dimensions: listener) == 1)
        #expect(metrics.counterTotal(label: "inlong_transport_server_connections_rejected_total", dimensions: listener) == 1)
        #expect(metrics.counterTotal(label: "inlong_transport_server_requests_handled_total", dimensions: listener) == 20)
        #expect(try metrics.expectGauge("inlong_transport_server_connections_open", listener).lastValue == 0)
        #expect(try metrics.expectGauge("inlong_transport_server_requests_queued", listener).lastValue == 0)
        for counter in metrics.counters { #expect(counter.label.hasSuffix("_total"), "\(counter.label)") }
    }
}
