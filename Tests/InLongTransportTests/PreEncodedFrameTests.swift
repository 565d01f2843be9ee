import InLongTestUtils
import NIOCore
import NIOEmbedded
import Testing

@testable import InLongTransport

/// A codec whose requests arrive encoded: it hands them over as they are.
private struct PreEncodedCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { try TestCodec().frameBoundary(in: buffer) }

    func encode(_ frame: ByteBuffer, into buffer: inout ByteBuffer) throws {
        if buffer.readableBytes == 0 { buffer = frame } else { buffer.writeImmutableBuffer(frame) }
    }

    func decode(_ frame: ByteBuffer) throws -> TestFrame { try TestCodec().decode(frame) }
    func kind(of frame: TestFrame) -> InboundFrameKind<UInt32> { TestCodec().kind(of: frame) }
    func key(of request: ByteBuffer) -> UInt32 { request.getInteger(at: request.readerIndex + 5) ?? 0 }
    func makeHeartbeat() -> ByteBuffer? { nil }
}

@Suite struct PreEncodedFrameTests {
    /// The transport gives the codec an empty buffer, so a large frame kept by the application (for a retry)
    /// is written from the application's storage instead of a second copy held in flight.
    @Test func largeEncodedFramesAreWrittenWithoutACopy() throws {
        let (channel, loop, handler) = try makeEmbeddedHandler(
            codec: PreEncodedCodec(),
            stateMachine: .init(maxInFlight: 4, maxQueued: 4, heartbeatInterval: nil, readTimeout: nil),
            maxFrameLength: 1 << 20
        )
        let frame = TestFrame.request(7, String(repeating: "x", count: 40_000)).bytes
        let promise = loop.makePromise(of: TestFrame.self)
        handler.submitRequest(frame, promise: promise, timeout: nil)
        loop.run()
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(written == frame)
        let writtenBase = written.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        let frameBase = frame.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(writtenBase == frameBase)
        try channel.writeInbound(TestFrame.response(7, "ok").bytes)
        #expect(try promise.futureResult.wait().payload == "ok")
        #expect(try channel.finish().isClean)
    }
}
