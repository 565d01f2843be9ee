import NIOCore
import Testing

@testable import InLongTransport

/// The room given to codecs that encode off the event loop: it follows the frames a codec writes, and turns itself
/// off for a codec that hands its own encoded frames over, whose storage must pass as it is.
@Suite struct EncodingCapacityHintTests {
    static func base(_ buffer: ByteBuffer) -> UInt { buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } }

    @Test func aWritingCodecGetsRoomForItsFrames() {
        let hint = EncodingCapacityHint()
        #expect(hint.current == EncodingCapacityHint.initial)
        // Larger than the first room: it grows, and the next frame gets room for its size.
        let first = hint.encode { $0.writeBytes([UInt8](repeating: 1, count: 108)) }
        #expect(first.readableBytes == 108)
        #expect(hint.current == 128)
        let second = hint.encode { buffer in
            #expect(buffer.readableBytes == 0)
            #expect(buffer.capacity >= 108)
            buffer.writeBytes([UInt8](repeating: 2, count: 108))
        }
        #expect(second.readableBytes == 108 && second.readableBytesView.allSatisfy { $0 == 2 })
        #expect(hint.current == 128)
    }

    @Test func aCodecHandingItsFramesOverGetsEmptyBuffersAndItsStoragePassesAsItIs() {
        let hint = EncodingCapacityHint()
        let frame = ByteBuffer(repeating: 7, count: 40)
        let encoded = hint.encode { buffer in
            #expect(buffer.readableBytes == 0)
            buffer = frame
        }
        #expect(Self.base(encoded) == Self.base(frame))
        #expect(hint.current == 0)
        let again = hint.encode { buffer in
            #expect(buffer.capacity == 0)
            buffer = frame
        }
        #expect(Self.base(again) == Self.base(frame))
    }

    @Test func largeFramesTurnTheHintOff() {
        let hint = EncodingCapacityHint()
        _ = hint.encode { $0.writeBytes([UInt8](repeating: 1, count: EncodingCapacityHint.limit + 1)) }
        #expect(hint.current == 0)
        let next = hint.encode { $0.writeBytes([1, 2, 3]) }
        #expect(Array(next.readableBytesView) == [1, 2, 3])
    }

    @Test func aThrowingCodecLeavesTheHintAsItWas() {
        struct Failure: Error {}
        let hint = EncodingCapacityHint()
        #expect(throws: Failure.self) { _ = try hint.encode { _ in throw Failure() } }
        #expect(hint.current == EncodingCapacityHint.initial)
    }
}
