public import NIOCore
import Synchronization

/// How much room to give a codec that encodes a frame off the event loop. An empty buffer costs a codec that
/// writes its frame an allocation and a reallocation or two as the frame grows; a buffer with room for the
/// frames seen so far costs one allocation. A codec that hands over a frame it holds encoded (`buffer = frame`,
/// see ``FrameCodec/encode(_:into:)``) turns that room into a wasted allocation: once that is seen, the hint
/// turns itself off and the codec gets empty buffers, as it would without one. Frames larger than
/// ``limit`` turn it off too (their copy outweighs a reallocation).
///
/// Shared by the tasks encoding for one connection; a relaxed atomic, written only when the room changes.
@usableFromInline
final class EncodingCapacityHint: Sendable {
    /// The largest frame worth a hint.
    static let limit = 1024
    /// The room a first frame gets.
    static let initial = 64

    /// The room to give; 0 when off.
    private let room = Atomic<Int>(EncodingCapacityHint.initial)

    /// The room given now (0: an empty buffer), for tests.
    var current: Int { self.room.load(ordering: .relaxed) }

    /// What ``learn(from:_:)`` compares the encoded frame with.
    @usableFromInline
    struct Given {
        fileprivate var room: Int
        fileprivate var capacity: Int
        fileprivate var base: UInt
    }

    /// A buffer for the codec to encode into: empty, with the room the frames so far call for. Hand the encoded
    /// buffer to ``learn(from:_:)``.
    @usableFromInline
    func makeBuffer() -> (ByteBuffer, Given) {
        let room = self.room.load(ordering: .relaxed)
        guard room > 0 else { return (ByteBuffer(), Given(room: 0, capacity: 0, base: 0)) }
        let buffer = ByteBufferAllocator().buffer(capacity: room)
        return (buffer, Given(room: room, capacity: buffer.capacity, base: Self.base(of: buffer)))
    }

    /// Encodes with `encode` into a buffer from ``makeBuffer()``, and learns from the result.
    func encode(_ encode: (inout ByteBuffer) throws -> Void) rethrows -> ByteBuffer {
        var (buffer, given) = self.makeBuffer()
        try encode(&buffer)
        self.learn(from: buffer, given)
        return buffer
    }

    /// The codec encoded `buffer`, made by ``makeBuffer()`` with `given`.
    @usableFromInline
    func learn(from buffer: ByteBuffer, _ given: Given) {
        guard given.room > 0 else { return }
        self.learn(from: buffer, given: given.capacity, base: given.base, room: given.room)
    }

    private func learn(from buffer: ByteBuffer, given: Int, base: UInt, room: Int) {
        let size = buffer.writerIndex
        let next: Int
        if Self.base(of: buffer) == base {
            // Written in place: the room sufficed, or the storage grew where it lay (realloc extended it).
            guard buffer.capacity > given else { return }
            next = size > Self.limit ? 0 : Self.roundedUp(size)
        } else if size <= given {
            // A new storage the frame did not need to grow into: the codec handed its own over.
            next = 0
        } else if size > Self.limit {
            next = 0
        } else {
            next = Self.roundedUp(size)
        }
        if next != room { self.room.store(next, ordering: .relaxed) }
    }

    private static func base(of buffer: ByteBuffer) -> UInt {
        buffer.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
    }

    private static func roundedUp(_ size: Int) -> Int {
        var room = Self.initial
        while room < size { room <<= 1 }
        return room
    }
}
