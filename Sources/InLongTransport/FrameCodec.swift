public import NIOCore

/// Where the next frame ends in the unread bytes of a connection.
public enum FrameBoundary: Sendable, Hashable {
    /// The first `length` bytes form a frame (they may not all have arrived yet).
    case frame(length: Int)
    /// More bytes are needed to tell.
    case needMoreBytes
    /// The first `count` bytes are not a valid frame start: drop them and look again (resynchronisation).
    case skip(count: Int)
}

/// What an inbound frame is to the transport.
public enum InboundFrameKind<Key: Hashable & Sendable>: Sendable, Hashable {
    /// The response to the request with this key.
    case response(Key)
    /// The reply to a heartbeat the transport sent.
    case heartbeatReply
    /// A frame the peer sent on its own: handed to the application's handler, off the event loop.
    case unsolicited
}

/// How an application protocol is carried over a persistent connection: framing, encoding, decoding and
/// request/response correlation. The transport knows nothing else about the protocol.
///
/// Throwing from ``frameBoundary(in:)`` (an impossible length) or ``decode(_:)`` closes the connection with
/// ``TransportError/Code/protocolViolation``: the receive buffer is discarded and pending requests fail.
public protocol FrameCodec: Sendable {
    /// A frame the application sends.
    associatedtype Outbound: Sendable
    /// A frame the application receives.
    associatedtype Inbound: Sendable
    /// What pairs a response with its request.
    associatedtype Key: Hashable & Sendable

    /// Where the next frame ends in `buffer`'s readable bytes.
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary
    /// Appends `frame`'s bytes. The transport passes an empty buffer: a codec whose frame is already encoded can
    /// assign it (`buffer = bytes`), which costs no copy.
    func encode(_ frame: Outbound, into buffer: inout ByteBuffer) throws
    /// Decodes one whole frame, as delimited by ``frameBoundary(in:)``.
    func decode(_ frame: ByteBuffer) throws -> Inbound
    /// Classifies an inbound frame.
    func kind(of frame: Inbound) -> InboundFrameKind<Key>
    /// The key a response to `request` will carry.
    func key(of request: Outbound) -> Key
    /// A heartbeat request, or `nil` when the protocol has none (then only the read timeout applies).
    func makeHeartbeat() -> Outbound?
    /// The load a peer reports in a heartbeat reply (0 or more, higher is busier), or `nil` when the reply
    /// carries none. A ``LoadBalancingPolicy`` can weigh connections by it. Defaults to `nil`.
    func reportedLoad(in heartbeatReply: Inbound) -> Int?
    /// The answer to a frame the peer sent on its own, when it is the peer's heartbeat: the transport writes it
    /// at once, on the event loop, and the frame goes no further. `nil` (the default) hands the frame to the
    /// application as unsolicited.
    func heartbeatResponse(to frame: Inbound) -> Outbound?
}

extension FrameCodec {
    public func reportedLoad(in heartbeatReply: Inbound) -> Int? { nil }
    public func heartbeatResponse(to frame: Inbound) -> Outbound? { nil }
}
