import InLongTestUtils
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import InLongTransport

@Suite struct FramerTests {
    @Test func lengthFieldFramesOfEveryWidth() throws {
        var buffer = ByteBuffer(bytes: [0x05, 1, 2, 3, 4, 5, 9])
        #expect(try LengthFieldFramer(lengthFieldLength: 1).frameBoundary(in: buffer) == .frame(length: 6))
        buffer = ByteBuffer(bytes: [0x00, 0x02, 1, 2])
        #expect(try LengthFieldFramer(lengthFieldLength: 2).frameBoundary(in: buffer) == .frame(length: 4))
        buffer = ByteBuffer(bytes: [0x02, 0x00, 0x00, 0x00, 1, 2])
        #expect(try LengthFieldFramer(lengthFieldLength: 4, endianness: .little).frameBoundary(in: buffer) == .frame(length: 6))
        buffer = ByteBuffer(bytes: [0, 0, 0, 0, 0, 0, 0, 1, 7])
        #expect(try LengthFieldFramer(lengthFieldLength: 8).frameBoundary(in: buffer) == .frame(length: 9))
    }

    @Test func lengthFieldAfterAHeaderAndWithAnAdjustment() throws {
        // type(1) length(2) counting the whole frame: adjustment -3 removes the header it counted.
        let buffer = ByteBuffer(bytes: [0x07, 0x00, 0x05, 0xAA, 0xBB])
        let framer = LengthFieldFramer(lengthFieldOffset: 1, lengthFieldLength: 2, lengthAdjustment: -3)
        #expect(try framer.frameBoundary(in: buffer) == .frame(length: 5))
    }

    @Test func lengthFieldNeedsTheWholeField() throws {
        #expect(try LengthFieldFramer().frameBoundary(in: ByteBuffer(bytes: [0, 0, 1])) == .needMoreBytes)
        #expect(try LengthFieldFramer(lengthFieldOffset: 2).frameBoundary(in: ByteBuffer(bytes: [9, 9, 0, 0, 0])) == .needMoreBytes)
    }

    @Test func lengthFieldRefusesTooLongAndNegativeFrames() {
        #expect(throws: FramingError.self) {
            try LengthFieldFramer(maxFrameLength: 100).frameBoundary(in: ByteBuffer(bytes: [0, 0, 1, 0]))
        }
        #expect(throws: FramingError.self) {
            try LengthFieldFramer(lengthAdjustment: -10).frameBoundary(in: ByteBuffer(bytes: [0, 0, 0, 1]))
        }
    }

    @Test func delimitedFrames() throws {
        let newline = DelimiterFramer()
        #expect(try newline.frameBoundary(in: ByteBuffer(string: "abc\ndef")) == .frame(length: 4))
        #expect(try newline.frameBoundary(in: ByteBuffer(string: "abc")) == .needMoreBytes)
        let crlf = DelimiterFramer(delimiter: Array("\r\n".utf8))
        #expect(try crlf.frameBoundary(in: ByteBuffer(string: "a\rb\r\nc")) == .frame(length: 5))
        #expect(try crlf.frameBoundary(in: ByteBuffer(string: "a\rb\r")) == .needMoreBytes)
    }

    @Test func aDelimiterThatNeverComesIsAnErrorAtTheMaximum() {
        let framer = DelimiterFramer(maxFrameLength: 8)
        #expect(throws: FramingError.self) { try framer.frameBoundary(in: ByteBuffer(string: "123456789")) }
        #expect(throws: FramingError.self) { try framer.frameBoundary(in: ByteBuffer(string: "123456789\n")) }
    }

    @Test func startByteSkipsGarbageThenDelegates() throws {
        let framer = StartByteFramer(start: [0x7E], then: LengthFieldFramer(lengthFieldOffset: 1, lengthFieldLength: 1))
        #expect(try framer.frameBoundary(in: ByteBuffer(bytes: [1, 2, 3, 0x7E, 2, 9, 9])) == .skip(count: 3))
        #expect(try framer.frameBoundary(in: ByteBuffer(bytes: [0x7E, 2, 9, 9])) == .frame(length: 4))
        #expect(try framer.frameBoundary(in: ByteBuffer(bytes: [0x7E])) == .needMoreBytes)
        // A partial multi-byte marker at the end is kept until the next bytes tell.
        let two = StartByteFramer(start: [0xAB, 0xCD], then: DelimiterFramer())
        #expect(try two.frameBoundary(in: ByteBuffer(bytes: [1, 0xAB])) == .skip(count: 1))
        #expect(try two.frameBoundary(in: ByteBuffer(bytes: [0xAB, 0x00])) == .skip(count: 2))
    }
}

/// ``TestCodec`` frames found by a framer, for the handler's framing behaviour.
private struct FramedCodec<F: Framer>: FrameCodec {
    let framer: F
    let inner = TestCodec()
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { try self.framer.frameBoundary(in: buffer) }
    func encode(_ frame: TestFrame, into buffer: inout ByteBuffer) throws { try self.inner.encode(frame, into: &buffer) }
    func decode(_ frame: ByteBuffer) throws -> TestFrame { try self.inner.decode(frame) }
    func kind(of frame: TestFrame) -> InboundFrameKind<UInt32> { self.inner.kind(of: frame) }
    func key(of request: TestFrame) -> UInt32 { request.key }
    func makeHeartbeat() -> TestFrame? { nil }
}

@Suite struct HandlerFramingTests {
    private func embedded<F: Framer>(
        _ framer: F,
        maxFrameLength: Int = 1024,
        policy: PersistentConnection<FramedCodec<F>>.Configuration.FramingErrorPolicy
    ) throws -> (EmbeddedChannel, StatisticsCounters) {
        let counters = StatisticsCounters()
        let (channel, _, _) = try makeEmbeddedHandler(
            codec: FramedCodec(framer: framer),
            stateMachine: .init(maxInFlight: 4, maxQueued: 4, heartbeatInterval: nil, readTimeout: nil),
            maxFrameLength: maxFrameLength,
            framingErrorPolicy: policy,
            counters: counters
        )
        return (channel, counters)
    }

    /// The skip answer drops bytes and looks again: garbage before each frame costs nothing but the bytes.
    @Test func skippedBytesResynchronise() throws {
        // Frames below 64 KiB start with two zero bytes of their length field.
        let (channel, counters) = try self.embedded(StartByteFramer(start: [0, 0], then: LengthFieldFramer()), policy: .close)
        var bytes = ByteBuffer(bytes: [0xFF, 0xFE, 0x01])
        bytes.writeImmutableBuffer(TestFrame(kind: .push, key: 1).bytes)
        bytes.writeBytes([0x55, 0x66])
        bytes.writeImmutableBuffer(TestFrame(kind: .push, key: 2).bytes)
        try channel.writeInbound(bytes)
        #expect(counters.framesIn.load(ordering: .relaxed) == 2)
        #expect(channel.isActive)
        _ = try? channel.finish()
    }

    @Test func discardPolicyDropsTheBufferAndGoesOn() throws {
        let (channel, counters) = try self.embedded(LengthFieldFramer(maxFrameLength: 64), policy: .discardBuffer)
        // Announces a frame far over the limit.
        try channel.writeInbound(ByteBuffer(bytes: [0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3]))
        #expect(channel.isActive)
        #expect(counters.receiveBuffersDiscarded.load(ordering: .relaxed) == 1)
        try channel.writeInbound(TestFrame(kind: .push, key: 3).bytes)
        #expect(counters.framesIn.load(ordering: .relaxed) == 1)
        _ = try? channel.finish()
    }

    @Test func closePolicyClosesOnAFramingError() throws {
        let (channel, counters) = try self.embedded(LengthFieldFramer(maxFrameLength: 64), policy: .close)
        try channel.writeInbound(ByteBuffer(bytes: [0x7F, 0xFF, 0xFF, 0xFF]))
        #expect(!channel.isActive)
        #expect(counters.receiveBuffersDiscarded.load(ordering: .relaxed) == 0)
    }

    /// A framer that keeps asking for more (no delimiter ever) is stopped at the frame limit, not buffered forever.
    @Test func bytesBufferedWhileTheCodecNeedsMoreAreCapped() throws {
        // The framer's own limit is larger, so the transport's cap is what stops it.
        let (channel, _) = try self.embedded(DelimiterFramer(maxFrameLength: 1 << 30), maxFrameLength: 4096, policy: .close)
        let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 1000)
        for _ in 0..<5 where channel.isActive { try channel.writeInbound(chunk) }
        #expect(!channel.isActive)
    }
}
