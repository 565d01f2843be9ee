import InLongTestUtils
import InLongTransport
import NIOCore
import Testing

/// Frames a peer pushes unasked, over loopback: dropped and counted without a handler, handed to one with it.
@Suite struct UnsolicitedFrameTests {
    /// Frames the peer pushes on its own, with no handler to take them, are dropped and counted, not buffered.
    @Test func unsolicitedFramesWithoutAHandlerAreDroppedAndCounted() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        let pushed = 500
        try await withConnection(endpoints: [server.endpoint]) { connection in
            #expect(await eventually { server.activeConnectionCount == 1 })
            for index in 0..<pushed { server.push(TestFrame(kind: .push, key: UInt32(index), payload: "unasked")) }
            #expect(await eventually { connection.statistics().unsolicitedDropped == pushed })
            // The connection is still usable.
            let answer = try await connection.request(.request(1, "after")).payload
            #expect(answer == "after")
        }
    }

    /// With a handler, the frames reach it.
    @Test func unsolicitedFramesReachTheHandler() async throws {
        let server = try await TestServer()
        defer { Task { await server.stop() } }
        let received = Collector<UInt32>()
        try await withConnection(endpoints: [server.endpoint], inbound: { frame, _ in received.append(frame.key) }) { connection in
            #expect(await eventually { server.activeConnectionCount == 1 })
            for index in 0..<50 { server.push(TestFrame(kind: .push, key: UInt32(index))) }
            #expect(await eventually { received.all.count == 50 })
            // Handlers run concurrently, so they may see the frames in any order.
            #expect(received.all.sorted() == Array(0..<50))
            #expect(connection.statistics().unsolicitedDropped == 0)
        }
    }
}
