public import NIOCore

/// Splits a connection's inbound bytes into whole frames with a codec's ``FrameCodec/frameBoundary(in:)``. Both
/// sides use it, so that framing rules (the cap on bytes buffered while the codec needs more, skips, bad lengths)
/// are one piece of code. Pure: the channel handler appends what it reads and takes frames while it wants them,
/// so bytes it does not take yet (reading paused) simply stay here.
@usableFromInline
struct FrameSplitter {
    /// The largest frame; more bytes than this buffered while the codec still needs more is a framing error.
    @usableFromInline let maxFrameLength: Int
    @usableFromInline var buffer: ByteBuffer?

    @inlinable
    init(maxFrameLength: Int) {
        self.maxFrameLength = maxFrameLength
    }

    /// Bytes of storage held (for tests of the bound).
    @inlinable var capacity: Int { self.buffer?.capacity ?? 0 }

    @inlinable
    mutating func append(_ bytes: ByteBuffer) {
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
                guard buffer.readableBytes >= length else { return nil }
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
    }
}
