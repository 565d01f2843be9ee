import InLongTestUtils
import InLongTransport
import NIOCore
import Testing

/// Request timeouts on real sockets, through a proxy that slows or swallows the traffic: a request's timeout runs
/// from its write, and a connection whose requests go unanswered is replaced.
@Suite(.timeLimit(.minutes(3))) struct RequestTimeoutTests {
    /// A slow but healthy link (500 KB/s) with far more queued than it carries within a request timeout: requests
    /// wait their turn in the connection's queue and the socket's buffer, and none times out falsely.
    @Test func aThrottledLinkWithManyQueuedRequestsTimesNoneOut() async throws {
        let server = try await TestServer(behavior: .acknowledge)
        let proxy = try await FaultProxy(upstreamPort: server.port, mode: .throttle(bytesPerSecond: 500_000))
        defer { Task { await proxy.stop(); await server.stop() } }
        let count = 256
        let payload = String(repeating: "x", count: 16 << 10)
        try await withConnection(
            endpoints: [Endpoint(host: "127.0.0.1", port: proxy.port)],
            configure: {
                // 4 MiB at 500 KB/s takes over 8 s: counted from submission, the requests at the back would time
                // out. Counted from the write, each has only the kernel's socket buffers ahead of it (about 1 s at
                // this rate on loopback), well within the timeout even on a loaded machine.
                $0.requestTimeout = .seconds(5)
                $0.maxInFlight = 32
                $0.writeBufferWaterMarks = .init(low: 64 << 10, high: 128 << 10)
            }
        ) { connection in
            let futures = try (0..<count).map { key in try connection.submit(.request(UInt32(key), payload)) }
            var failures: [TransportError] = []
            for future in futures {
                do {
                    _ = try await future.get()
                } catch let error as TransportError {
                    failures.append(error)
                }
            }
            let firstFailure = failures.first.map { "\($0)" } ?? ""
            #expect(failures.count == 0, "first: \(firstFailure)")
            let statistics = connection.statistics()
            #expect(statistics.requestsSucceeded == count)
            #expect(statistics.requestsTimedOut == 0)
            #expect(statistics.connects == 1)
            #expect(server.requestCount == count)
        }
    }

    /// A connection whose requests vanish (the proxy swallows them; the socket stays up): after three request
    /// timeouts in a row it is closed as unresponsive, the request still in flight fails as possibly delivered,
    /// and later requests succeed on a fresh connection.
    @Test func aBlackHoledConnectionIsRecycledAfterConsecutiveTimeouts() async throws {
        let server = try await TestServer(behavior: .echo)
        let proxy = try await FaultProxy(upstreamPort: server.port, mode: .blackhole)
        defer { Task { await proxy.stop(); await server.stop() } }
        try await withConnection(
            endpoints: [Endpoint(host: "127.0.0.1", port: proxy.port)],
            configure: { $0.recycleAfterTimeouts = 3 }
        ) { connection in
            // The mode applies to connections accepted from now on: the open one stays black-holed. The proxy
            // accepts after the client sees its connect succeed, so wait for that before switching.
            #expect(await eventually { proxy.acceptedConnections == 1 })
            proxy.mode = .pass
            let stuck = Task { () -> TransportError? in
                do {
                    _ = try await connection.request(.request(1_000), timeout: .seconds(120))
                    return nil
                } catch {
                    return error as? TransportError
                }
            }
            #expect(await eventually { connection.inFlightCount == 1 })
            for key in 1...3 {
                await #expect {
                    try await connection.request(.request(UInt32(key)), timeout: .milliseconds(200))
                } throws: { error in
                    let error = error as! TransportError
                    return error.code == .requestTimeout && error.mayHaveBeenDelivered
                }
            }
            let recycled = await stuck.value
            #expect(recycled?.code == .unresponsive)
            #expect(recycled?.mayHaveBeenDelivered == true)
            #expect(await connection.answersEventually(.request(10)))
            let statistics = connection.statistics()
            #expect(statistics.disconnects["unresponsive"] == 1)
            #expect(statistics.requestsTimedOut == 3)
            #expect(proxy.acceptedConnections == 2)
            #expect(server.requestCount >= 1)
        }
    }
}
