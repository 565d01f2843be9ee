public import NIOCore

/// Small frames copied together so that the frames of a tick cost one write; frames at least ``limit`` large are
/// written as they are, without copying (and holding twice) them. Both ends' channel handlers write through it.
/// `items` are the caller's count of what a buffer carries (the client counts requests, whose timeouts start
/// when their write completes).
@usableFromInline
struct OutboundCoalescer {
    @inlinable
    static var limit: Int { 16 << 10 }

    /// What to write after an append, in order.
    @usableFromInline
    struct Writes {
        /// Frames coalesced before this one: to write before it.
        @usableFromInline var before: (buffer: ByteBuffer, items: Int)?
        /// A write that carries this frame (alone, or coalesced with those before once they grew large).
        @usableFromInline var including: (buffer: ByteBuffer, items: Int)?

        @inlinable
        init(before: (buffer: ByteBuffer, items: Int)?, including: (buffer: ByteBuffer, items: Int)?) {
            self.before = before
            self.including = including
        }
    }

    @usableFromInline var buffer: ByteBuffer?
    @usableFromInline var items = 0

    /// Bytes coalesced and not yet taken.
    @inlinable var pendingBytes: Int { self.buffer?.readableBytes ?? 0 }

    /// Whether anything (even an empty frame) waits to be taken.
    @inlinable var hasPending: Bool { self.buffer != nil }

    @inlinable
    mutating func append(_ bytes: ByteBuffer, items: Int) -> Writes {
        if bytes.readableBytes >= Self.limit {
            return Writes(before: self.take(), including: (bytes, items))
        }
        if self.buffer == nil {
            self.buffer = bytes
        } else {
            self.buffer!.writeImmutableBuffer(bytes)
        }
        self.items += items
        return Writes(before: nil, including: self.pendingBytes >= Self.limit * 4 ? self.take() : nil)
    }

    /// What is coalesced, to write now.
    @inlinable
    mutating func take() -> (buffer: ByteBuffer, items: Int)? {
        guard let buffer = self.buffer else { return nil }
        self.buffer = nil
        defer { self.items = 0 }
        return (buffer, self.items)
    }
}
