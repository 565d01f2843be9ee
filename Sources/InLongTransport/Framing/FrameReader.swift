import NIOCore

/// The inbound side of both ends' channel handlers: the receive buffer (split into frames by the codec, never
/// more than one maximum frame buffered), the read gate (frames stay buffered and no read is issued while the
/// handlers have no room), and what a framing error does. One piece of code, so the client and the server cannot
/// drift apart on any of these rules.
///
/// Not generic over the codec (only ``next(with:)`` is): the handlers that hold it run unspecialised (the codec
/// is the application's), and a generic struct's metadata would be looked up at every frame.
struct FrameReader {
    /// What a framing error does.
    enum FramingErrorAction: Equatable {
        case close
        /// Drop what is buffered and go on.
        case discardBuffer
    }

    private var splitter: FrameSplitter
    private var gate = ReadGate()
    let framingErrorAction: FramingErrorAction

    init<Codec>(maxFrameLength: Int, framingErrorPolicy: PersistentConnection<Codec>.Configuration.FramingErrorPolicy) {
        self.splitter = FrameSplitter(maxFrameLength: maxFrameLength)
        switch framingErrorPolicy {
        case .close: self.framingErrorAction = .close
        case .discardBuffer: self.framingErrorAction = .discardBuffer
        }
    }

    /// Bytes of storage the receive buffer holds (for tests of its bound).
    var capacity: Int { self.splitter.capacity }

    mutating func append(_ bytes: ByteBuffer) {
        self.splitter.append(bytes)
    }

    /// The next whole frame, decoded, or `nil` when the buffer holds none or reading is paused. After it throws
    /// (bytes that are not a frame), call ``framingFailed()``.
    mutating func next<Codec: FrameCodec>(with codec: Codec) throws -> Codec.Inbound? {
        guard !self.gate.paused, let bytes = try self.splitter.nextFrame(with: codec) else { return nil }
        return try codec.decode(bytes)
    }

    /// Drops what is buffered; the configured policy says whether the connection closes or goes on.
    mutating func framingFailed() -> FramingErrorAction {
        self.splitter.discard()
        return self.framingErrorAction
    }

    // MARK: The read gate

    var isPaused: Bool { self.gate.paused }

    /// The handlers have no room: frames stay buffered, and reads are held back.
    mutating func pause() {
        self.gate.paused = true
    }

    /// The channel asked to read: `true` to pass the read on now.
    mutating func readRequested() -> Bool {
        self.gate.readRequested()
    }

    /// The handlers have room again: take the buffered frames, then ask ``takeHeldRead()``.
    mutating func resume() {
        self.gate.paused = false
    }

    /// After ``resume()`` and taking the buffered frames: `true` to issue the read held back meanwhile.
    mutating func takeHeldRead() -> Bool {
        self.gate.resumed()
    }
}
