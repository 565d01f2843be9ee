import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import Synchronization
import Testing

@testable import InLongDataProxy

/// The pool tells its owner (the client's router) when a connection becomes ready and when it stops being ready.
@Suite(.timeLimit(.minutes(2))) struct PoolReadinessTests {
    @Test func aConnectionIsToldReadyThenNotReadyWhenItsProxyGoesAndWhenThePoolCloses() async throws {
        final class Told: Sendable {
            let changes = Mutex<[(Endpoint, Bool)]>([])
            func append(_ change: PersistentConnectionPool<DataProxyCodec>.ReadinessChange) { self.changes.withLock { $0.append((change.endpoint, change.isReady)) } }
            var readiness: [Bool] { self.changes.withLock { $0.map(\.1) } }
            var first: Endpoint? { self.changes.withLock { $0.first?.0 } }
            var last: Endpoint? { self.changes.withLock { $0.last?.0 } }
        }
        let told = Told()
        func changes() -> [Bool] { told.readiness }
        try await withRefusingPort { refused in
            try await withReceiver { receiver in
                let up = Endpoint(host: "127.0.0.1", port: try await receiver.port())
                let down = Endpoint(host: "127.0.0.1", port: refused)
                var configuration = PersistentConnection<DataProxyCodec>.Configuration(endpoints: [up])
                configuration.backoff = ExponentialBackoff(initial: .milliseconds(50), maximum: .milliseconds(200))
                let pool = PersistentConnectionPool(
                    codec: DataProxyCodec(maxFrameSize: 1 << 20),
                    endpoints: [up, down],
                    configuration: configuration,
                    readinessChanged: { told.append($0) }
                )
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { await pool.runUntilClosed() }
                    #expect(await eventually { changes() == [true] })
                    // Only the proxy that accepts was told ready.
                    #expect(told.first == up)
                    // A proxy no longer used: its connection drains, closes, and is told not ready.
                    pool.updateEndpoints([down])
                    #expect(await eventually { changes() == [true, false] })
                    #expect(told.last == up)
                    pool.updateEndpoints([up])
                    #expect(await eventually { changes() == [true, false, true] })
                    pool.close()
                }
                // Closing the pool ends every connection: the ready one is told not ready, last.
                #expect(changes() == [true, false, true, false])
            }
        }
    }
}
