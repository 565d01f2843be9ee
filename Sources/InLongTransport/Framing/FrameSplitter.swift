public import NIOCore

/// Splits a connection's inbound bytes into whole frames with a codec's ``FrameCodec/frameBoundary(in:)``. Both
/// sides use it, so that framing rules (the cap on bytes buffered while the codec needs more, skips, bad lengths)
/// are one piece of code. Pure: the channel handler appends what it reads and takes frames while it wants them,
/// so bytes it does not take yet (reading paused) simply stay here.
@usableFromInline
struct FrameSplitter {
    /// The largest frame; more bytes than this buffered while the codec still needs more is a framing error.
    @usableFromInline let maxFrameLength: Int
    /// Bytes of the latest reads not taken yet.
    @usableFromInline var buffer: ByteBuffer?
    /// A frame whose length the codec told, straddling reads: gathered in a buffer of its own, so that only its
    /// bytes are copied (once) and the rest of each read is sliced as it is. Appending the next read to the last
    /// one instead copied the whole buffer whenever frames sliced from it were still alive (copy on write), and
    /// again as it grew: a fifth of a busy receiver's time.
    @usableFromInline var straddling: ByteBuffer?
    /// The straddling frame's length.
    @usableFromInline var straddlingLength = 0

    @inlinable
    init(maxFrameLength: Int) {
        self.maxFrameLength = maxFrameLength
    }

    /// Bytes of storage held (for tests of the bound).
    @inlinable var capacity: Int { (self.buffer?.capacity ?? 0) + (self.straddling?.capacity ?? 0) }

    @inlinable
    mutating func append(_ bytes: ByteBuffer) {
        var bytes = bytes
        if let missing = self.straddling.map({ self.straddlingLength - $0.readableBytes }), missing > 0 {
            // Taken out while it grows, so that its storage has one owner and is written in place.
            var straddling = self.straddling.take()!
            straddling.writeImmutableBuffer(bytes.readSlice(length: min(missing, bytes.readableBytes))!)
            self.straddling = straddling
            // Until the frame is whole, every byte read is its own.
            guard bytes.readableBytes > 0 else { return }
        }
        guard self.buffer != nil else {
            self.buffer = bytes
            return
        }
        // A read that ends mid-frame leaves consumed bytes in front of the partial frame: drop them once they
        // outweigh what is left (amortised, as ByteToMessageDecoder does), or the buffer grows with every read.
        if self.buffer!.readerIndex > 0 && self.buffer!.readerIndex >= self.buffer!.readableBytes {
            self.buffer!.discardReadBytes()
        }
        self.buffer!.writeImmutableBuffer(bytes)
    }

    /// The next whole frame, or `nil` until more bytes arrive. Throws on a framing error; the caller then
    /// discards the buffer (``discard()``) or closes the connection.
    @inlinable
    mutating func nextFrame(with codec: some FrameCodec) throws -> ByteBuffer? {
        if let straddling = self.straddling {
            guard straddling.readableBytes == self.straddlingLength else { return nil }
            self.straddling = nil
            return straddling
        }
        while var buffer = self.buffer, buffer.readableBytes > 0 {
            switch try codec.frameBoundary(in: buffer) {
            case .needMoreBytes:
                // A codec that never finds a frame's end must not grow the buffer without bound.
                guard buffer.readableBytes < self.maxFrameLength else { throw TransportError(.protocolViolation) }
                return nil
            case .skip(let count):
                guard count > 0, count <= buffer.readableBytes else { throw TransportError(.protocolViolation) }
                buffer.moveReaderIndex(forwardBy: count)
                self.buffer = buffer
            case .frame(let length):
                guard length > 0, length <= self.maxFrameLength else { throw TransportError(.protocolViolation) }
                guard buffer.readableBytes >= length else {
                    // The frame goes on in the next reads: gathered apart from them. Storage for the whole frame
                    // up to 1 MiB at once (a longer one grows as its bytes come, so that a length alone commits
                    // little memory).
                    var straddling = ByteBufferAllocator().buffer(capacity: min(length, max(buffer.readableBytes, 1 << 20)))
                    straddling.writeImmutableBuffer(buffer)
                    self.straddling = straddling
                    self.straddlingLength = length
                    self.buffer = nil
                    return nil
                }
                let frame = buffer.readSlice(length: length)!
                // Dropping the emptied buffer lets the next read's buffer be taken as it is, without a copy.
                self.buffer = buffer.readableBytes == 0 ? nil : buffer
                return frame
            }
        }
        self.buffer = nil
        return nil
    }

    @inlinable
    mutating func discard() {
        self.buffer = nil
        self.straddling = nil
    }
}
