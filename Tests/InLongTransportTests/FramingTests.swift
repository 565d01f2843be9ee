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

/// The splitter against random reads: frames of random lengths (some longer than a read, some split inside their
/// length field) cut into reads of random sizes, frames taken at random moments (a paused reader takes none for a
/// while); after every step, the frames taken are the frames sent, byte for byte and in order, and the storage held
/// stays within what the reads and one straddling frame need.
@Suite struct FrameSplitterScheduleTests {
    private struct Violation: Error, CustomStringConvertible {
        var description: String
    }

    static func run(seed: UInt64, delimited: Bool) throws {
        var random = Xorshift(seed: seed)
        let maxFrameLength = 1 << 16
        let framer = delimited ? AnyFramer(DelimiterFramer(maxFrameLength: maxFrameLength)) : AnyFramer(LengthFieldFramer(maxFrameLength: maxFrameLength))
        let codec = FramedCodec(framer: framer)
        var splitter = FrameSplitter(maxFrameLength: maxFrameLength)
        // The frames, as the peer sent them, and the stream of their bytes.
        var sent: [[UInt8]] = []
        var stream: [UInt8] = []
        for index in 0..<200 {
            let length = Int.random(in: 1...(index % 7 == 0 ? 40_000 : 3_000), using: &random)
            var frame: [UInt8]
            if delimited {
                frame = (0..<length).map { _ in UInt8.random(in: 0...9, using: &random) } + [UInt8(ascii: "\n")]
            } else {
                frame = withUnsafeBytes(of: UInt32(length).bigEndian, Array.init) + (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            }
            sent.append(frame)
            stream += frame
        }
        var taken: [[UInt8]] = []
        var position = 0
        func fail(_ what: String) -> Violation { Violation(description: "seed \(seed), delimited \(delimited): \(what)") }
        while position < stream.count || taken.count < sent.count {
            if position < stream.count, Int.random(in: 0..<3, using: &random) > 0 {
                // Reads of every size, from a byte (inside a length field) to more than a long frame.
                let size = min(stream.count - position, [1, 3, 100, 2_000, 9_000, 65_536].randomElement(using: &random)!)
                splitter.append(ByteBuffer(bytes: stream[position..<(position + size)]))
                position += size
            } else {
                while let frame = try splitter.nextFrame(with: codec) { taken.append(Array(frame.readableBytesView)) }
                if position == stream.count, taken.count < sent.count { throw fail("\(sent.count - taken.count) frames never came") }
            }
            guard taken.count <= sent.count, taken.indices.allSatisfy({ taken[$0] == sent[$0] }) else {
                throw fail("frame \(taken.count - 1) differs from what was sent")
            }
            // What is held: with lengths, the reads not taken yet (each at most a 64 KiB read) and one frame of its
            // own size; while a delimiter is looked for, one buffer that grows by doubling and is compacted.
            let held = position - sent.prefix(taken.count).reduce(0) { $0 + $1.count }
            let bound = delimited ? 4 * (maxFrameLength + 65_536) : 2 * held + 2 * 65_536 + maxFrameLength
            guard splitter.capacity <= bound else { throw fail("\(splitter.capacity) bytes of storage for \(held) held") }
        }
        guard splitter.buffer == nil, splitter.straddling == nil else { throw fail("bytes left over") }
    }

    @Test(arguments: 0..<20) func lengthFieldFramesSurviveEveryCut(seed: UInt64) throws {
        try Self.run(seed: seed, delimited: false)
    }

    @Test(arguments: 100..<110) func delimitedFramesSurviveEveryCut(seed: UInt64) throws {
        try Self.run(seed: seed, delimited: true)
    }
}

/// One framer type for both kinds of frames in ``FrameSplitterScheduleTests``.
private struct AnyFramer: Framer {
    let boundary: @Sendable (ByteBuffer) throws(FramingError) -> FrameBoundary
    init(_ framer: some Framer) { self.boundary = { (buffer) throws(FramingError) in try framer.frameBoundary(in: buffer) } }
    func frameBoundary(in buffer: ByteBuffer) throws(FramingError) -> FrameBoundary { try self.boundary(buffer) }
}
