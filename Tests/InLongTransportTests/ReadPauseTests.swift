import InLongTestUtils
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import InLongTransport

/// While the handler pool has no room, a connection takes no frame from its buffer and passes no `read()` on
/// to the socket; both sides. The pools here run no workers, so nothing ever frees room.
@Suite struct ReadPauseTests {
    /// Counts the reads that reach the socket (it sits at the head of the pipeline).
    final class ReadCounter: ChannelOutboundHandler, Sendable {
        typealias OutboundIn = ByteBuffer
        let reads = Atomic<Int>(0)
        func read(context: ChannelHandlerContext) {
            self.reads.add(1, ordering: .relaxed)
            context.read()
        }
    }

    private func requests(_ keys: Range<UInt32>) -> ByteBuffer {
        var bytes = ByteBuffer()
        for key in keys { bytes.writeImmutableBuffer(TestFrame.request(key).bytes) }
        return bytes
    }

    @Test func theClientStopsReadingWhenThePoolIsFull() throws {
        let pool = InboundHandlerPool<TestCodec>(configuration: .init(width: 1, queueLimit: 1)) { _, _ in }
        let counters = StatisticsCounters()
        let (channel, _, _) = try makeEmbeddedHandler(
            codec: TestCodec(),
            stateMachine: .init(maxInFlight: 4, maxQueued: 4, heartbeatInterval: nil, readTimeout: nil),
            maxFrameLength: 1 << 20,
            counters: counters,
            inbound: pool
        )
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(counter, position: .first)
        channel.read()
        #expect(counter.reads.load(ordering: .relaxed) == 1)
        // One queued, one parked; the other three stay in the receive buffer.
        try channel.writeInbound(self.requests(0..<5))
        #expect(counters.framesIn.load(ordering: .relaxed) == 2)
        #expect(pool.pausedCount == 1)
        channel.read()
        #expect(counter.reads.load(ordering: .relaxed) == 1)
        #expect(counters.unsolicitedDropped.load(ordering: .relaxed) == 0)
        _ = try? channel.finish()
        #expect(pool.pausedCount == 0)
    }

    @Test func theServerStopsReadingWhenThePoolIsFull() throws {
        let pool = HandlerPoolCore(configuration: .init(width: 1, queueLimit: 1))
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(
            ServerConnectionHandler(codec: TestCodec(), pool: pool, connectionOpened: { _ in .init(request: { _, _ in }) }, maxFrameLength: 1 << 20, framingErrorPolicy: .close, discarded: ServerCounter())
        )
        try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.read()
        #expect(counter.reads.load(ordering: .relaxed) == 1)
        try channel.writeInbound(self.requests(0..<5))
        #expect(pool.queuedCount == 1)
        #expect(pool.pausedCount == 1)
        channel.read()
        #expect(counter.reads.load(ordering: .relaxed) == 1)
        _ = try? channel.finish()
        #expect(pool.pausedCount == 0)
        #expect(pool.queuedCount == 0)
    }
}
