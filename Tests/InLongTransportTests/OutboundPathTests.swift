import InLongTestUtils
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

@testable import InLongTransport

/// The coalescer both channel handlers write through, driven by seeded random frames: every byte goes out once,
/// in order; a large frame goes as it is; no write carries more than its frames' items; a frame is never in a
/// write before the write of an earlier frame.
@Suite struct OutboundCoalescerTests {
    @Test(arguments: 0..<20)
    func randomFramesLeaveInOrderWithTheirItems(seed: UInt64) {
        var random = Xorshift(seed: seed)
        var coalescer = OutboundCoalescer()
        // Each frame's bytes carry its step number, so that out-of-order or lost bytes show.
        var sent: [UInt8] = []
        var writtenCount = 0
        var itemsIn = 0
        var itemsOut = 0
        func take(_ write: (buffer: ByteBuffer, items: Int)?) {
            guard let write else { return }
            let count = write.buffer.readableBytes
            #expect(writtenCount + count <= sent.count)
            // memcmp: an element-wise comparison of megabytes is slow in a debug build.
            let same = writtenCount + count <= sent.count && write.buffer.withUnsafeReadableBytes { written in
                sent.withUnsafeBytes { count == 0 || memcmp($0.baseAddress! + writtenCount, written.baseAddress!, count) == 0 }
            }
            #expect(same)
            writtenCount += count
            itemsOut += write.items
            #expect(itemsOut <= itemsIn)
        }
        for step in 0..<200 {
            // Mostly small frames, some empty, some at or over the limit.
            let size: Int
            switch random.next() % 10 {
            case 0: size = 0
            case 1: size = OutboundCoalescer.limit + Int(random.next() % 1024)
            case 2: size = OutboundCoalescer.limit - 1
            default: size = Int(random.next() % 4096)
            }
            let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: step), count: size)
            let items = Int(random.next() % 2)
            sent += bytes
            itemsIn += items
            let writes = coalescer.append(ByteBuffer(bytes: bytes), items: items)
            if size >= OutboundCoalescer.limit {
                #expect(writes.including?.buffer.readableBytes == size, "a large frame goes as it is")
            }
            take(writes.before)
            // The frame itself is never in a write before the frames ahead of it.
            #expect(writtenCount <= sent.count - size)
            take(writes.including)
            #expect(writtenCount + coalescer.pendingBytes == sent.count)
            if random.next() % 8 == 0 { take(coalescer.take()) }
        }
        take(coalescer.take())
        #expect(writtenCount == sent.count)
        #expect(itemsOut == itemsIn)
        #expect(!coalescer.hasPending)
    }
}

/// The reader both channel handlers take frames from: paused, it keeps frames and holds the read back; a framing
/// error drops the buffer and gives the policy.
@Suite struct FrameReaderTests {
    @Test func pausedItKeepsFramesAndHoldsTheReadBack() throws {
        var reader = FrameReader(maxFrameLength: 1024, framingErrorPolicy: PersistentConnection<TestCodec>.Configuration.FramingErrorPolicy.close)
        var bytes = TestFrame.request(1).bytes
        bytes.writeImmutableBuffer(TestFrame.request(2).bytes)
        reader.append(bytes)
        let first = try reader.next(with: TestCodec())
        #expect(first?.key == 1)
        reader.pause()
        #expect(reader.isPaused)
        let whilePaused = try reader.next(with: TestCodec())
        #expect(whilePaused == nil)
        let readNow = reader.readRequested()
        #expect(!readNow)
        reader.resume()
        let second = try reader.next(with: TestCodec())
        let none = try reader.next(with: TestCodec())
        #expect(second?.key == 2 && none == nil)
        let held = reader.takeHeldRead()
        let heldAgain = reader.takeHeldRead()
        let readAfter = reader.readRequested()
        #expect(held && !heldAgain && readAfter)
    }

    @Test func aFramingErrorDropsTheBufferAndGivesThePolicy() throws {
        var reader = FrameReader(maxFrameLength: 16, framingErrorPolicy: PersistentConnection<TestCodec>.Configuration.FramingErrorPolicy.discardBuffer)
        reader.append(TestFrame.request(1, String(repeating: "x", count: 64)).bytes)
        var failed = false
        do { _ = try reader.next(with: TestCodec()) } catch { failed = true }
        #expect(failed)
        let policy = reader.framingFailed()
        #expect(policy == .discardBuffer)
        #expect(reader.capacity == 0)
        reader.append(TestFrame.request(3).bytes)
        let next = try reader.next(with: TestCodec())
        #expect(next?.key == 3)
    }
}

/// A seeded generator for the transport tests' random schedules (they depend on nothing of InLong's).
struct Xorshift: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { self.state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    mutating func next() -> UInt64 {
        self.state ^= self.state << 13
        self.state ^= self.state >> 7
        self.state ^= self.state << 17
        return self.state
    }
}
