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
}
