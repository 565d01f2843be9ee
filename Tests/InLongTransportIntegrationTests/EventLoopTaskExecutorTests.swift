import InLongTestUtils
import NIOCore
import NIOPosix
import Testing

@testable import InLongTransport

/// A task that prefers a connection's executor makes its requests and gets their responses on the connection's
/// loop, on every channel the connection opens.
@Suite(.timeLimit(.minutes(2))) struct EventLoopTaskExecutorTests {
    @Test func requestsFromATaskOnTheConnectionsLoopAreAnsweredThere() async throws {
        let server = try await TestServer(behavior: .echo)
        defer { Task { await server.stop() } }
        try await withEventLoopGroup(threads: 3) { group in
            try await withConnection(endpoints: [server.endpoint], eventLoopGroup: group) { connection in
                #expect(!connection.eventLoop.inEventLoop)
                let onLoop = try await withTaskExecutorPreference(connection.taskExecutor) {
                    var onLoop = 0
                    for key in 0..<200 {
                        let response = try await connection.request(.request(UInt32(key), "k\(key)"))
                        #expect(response == .response(UInt32(key), "k\(key)"))
                        if connection.eventLoop.inEventLoop { onLoop += 1 }
                    }
                    // Child tasks inherit the preference and may have many requests in flight at once.
                    try await withThrowingTaskGroup(of: Bool.self) { tasks in
                        for key in 200..<264 {
                            tasks.addTask {
                                let response = try await connection.request(.request(UInt32(key), "k\(key)"))
                                return response == .response(UInt32(key), "k\(key)") && connection.eventLoop.inEventLoop
                            }
                        }
                        for try await answered in tasks where answered { onLoop += 1 }
                    }
                    return onLoop
                }
                #expect(onLoop == 264)
                #expect(connection.statistics().requestsSucceeded == 264)
            }
        }
    }

    @Test func aCancelledRequestOnTheLoopFailsAsCancelled() async throws {
        let server = try await TestServer(behavior: .silent)
        defer { Task { await server.stop() } }
        try await withConnection(endpoints: [server.endpoint], configure: { $0.drainTimeout = .milliseconds(100) }) {
            connection in
            let task = Task(executorPreference: connection.taskExecutor) {
                #expect(connection.eventLoop.inEventLoop)
                return try await connection.request(.request(1), timeout: .seconds(60))
            }
            #expect(await eventually { connection.inFlightCount == 1 })
            task.cancel()
            await #expect {
                try await task.value
            } throws: { error in
                (error as? TransportError)?.code == .cancelled
            }
            #expect(await eventually { connection.inFlightCount == 0 })
        }
    }

    @Test func everyReconnectionUsesTheConnectionsLoop() async throws {
        let server = try await TestServer(behavior: .echo)
        defer { Task { await server.stop() } }
        try await withEventLoopGroup(threads: 4) { group in
            try await withConnection(
                endpoints: [server.endpoint],
                configure: { $0.maxConnectionAge = .milliseconds(50) },
                eventLoopGroup: group
            ) { connection in
                // With four loops in the group, a channel that took the group's next loop would land elsewhere.
                var channels = 0
                var onTheConnectionsLoop = 0
                var connects = 0
                while channels < 4 {
                    #expect(await eventually {
                        connection.statistics().connects > connects && connection.currentChannel != nil
                    })
                    connects = connection.statistics().connects
                    guard let channel = connection.currentChannel else { continue }
                    channels += 1
                    if channel.eventLoop === connection.eventLoop { onTheConnectionsLoop += 1 }
                }
                #expect(onTheConnectionsLoop == 4)
            }
        }
    }
}

/// A group of its own for `body`, shut down after it, whatever it ends with.
private func withEventLoopGroup(threads: Int, _ body: (MultiThreadedEventLoopGroup) async throws -> Void) async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    do {
        try await body(group)
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
    try await group.shutdownGracefully()
}
