public import NIOCore

/// The inbound side of both ends' channel handlers: the receive buffer (split into frames by the codec, never
/// more than one maximum frame buffered), the read gate (frames stay buffered and no read is issued while the
/// handlers have no room), and what a framing error does. One piece of code, so the client and the server cannot
/// drift apart on any of these rules.
///
/// Not generic over the codec: only ``next(with:)`` needs it, and it is inlinable, so that the client's request
/// path compiles it for the application's codec.
@usableFromInline
struct FrameReader {
    /// What a framing error does.
    @usableFromInline
    enum FramingErrorAction: Equatable {
        case close
        /// Drop what is buffered and go on.
        case discardBuffer
    }

    @usableFromInline var splitter: FrameSplitter
    @usableFromInline var gate = ReadGate()
    @usableFromInline let framingErrorAction: FramingErrorAction

    @inlinable
    init<Codec>(maxFrameLength: Int, framingErrorPolicy: PersistentConnection<Codec>.Configuration.FramingErrorPolicy) {
        self.splitter = FrameSplitter(maxFrameLength: maxFrameLength)
        switch framingErrorPolicy {
        case .close: self.framingErrorAction = .close
        case .discardBuffer: self.framingErrorAction = .discardBuffer
        }
    }

    /// Bytes of storage the receive buffer holds (for tests of its bound).
    @inlinable var capacity: Int { self.splitter.capacity }

    @inlinable
    mutating func append(_ bytes: ByteBuffer) {
        self.splitter.append(bytes)
    }

    /// The next whole frame, decoded, or `nil` when the buffer holds none or reading is paused. After it throws
    /// (bytes that are not a frame), call ``framingFailed()``.
    @inlinable
    mutating func next<Codec: FrameCodec>(with codec: Codec) throws -> Codec.Inbound? {
        guard !self.gate.paused, let bytes = try self.splitter.nextFrame(with: codec) else { return nil }
        return try codec.decode(bytes)
    }

    /// Drops what is buffered; the configured policy says whether the connection closes or goes on.
    @inlinable
    mutating func framingFailed() -> FramingErrorAction {
        self.splitter.discard()
        return self.framingErrorAction
    }

    // MARK: The read gate

    @inlinable var isPaused: Bool { self.gate.paused }

    /// The handlers have no room: frames stay buffered, and reads are held back.
    @inlinable
    mutating func pause() {
        self.gate.paused = true
    }

    /// The channel asked to read: `true` to pass the read on now.
    @inlinable
    mutating func readRequested() -> Bool {
        self.gate.readRequested()
    }

    /// The handlers have room again: take the buffered frames, then ask ``takeHeldRead()``.
    @inlinable
    mutating func resume() {
        self.gate.paused = false
    }

    /// After ``resume()`` and taking the buffered frames: `true` to issue the read held back meanwhile.
    @inlinable
    mutating func takeHeldRead() -> Bool {
        self.gate.resumed()
    }
}
