import InLongTestUtils
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import InLongTransport

/// What a peer sends cannot make the connection hold more than a frame or so, whatever its pace.
@Suite struct InboundBoundsTests {
    /// Reads that always end mid-frame: consumed bytes must not pile up in front of the partial frame.
    @Test func receiveBufferDropsConsumedBytesWhenReadsEndMidFrame() throws {
        let counters = StatisticsCounters()
        let (channel, _, handler) = try makeEmbeddedHandler(
            codec: TestCodec(),
            stateMachine: .init(maxInFlight: 4, maxQueued: 4, heartbeatInterval: nil, readTimeout: nil),
            maxFrameLength: 1 << 20,
            counters: counters
        )
        var stream = ByteBuffer()
        let frameCount = 2_000
        for index in 0..<frameCount {
            stream.writeImmutableBuffer(TestFrame(kind: .push, key: UInt32(index), payload: String(repeating: "p", count: 1_000)).bytes)
        }
        var largest = 0
        while stream.readableBytes > 0 {
            // 700-byte reads never line up with the 1,009-byte frames.
            let chunk = stream.readBytes(length: min(700, stream.readableBytes))!
            try channel.writeInbound(ByteBuffer(bytes: chunk))
            largest = max(largest, handler.receiveBufferCapacity)
        }
        #expect(counters.framesIn.load(ordering: .relaxed) == frameCount)
        // About 2 MB went through; the buffer never needs more than a few frames' worth.
        #expect(largest <= 16 << 10)
        _ = try? channel.finish()
    }

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
