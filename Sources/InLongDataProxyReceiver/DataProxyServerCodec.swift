import InLongTransport
import InLongWire
import NIOCore

/// The DataProxy protocol as its server reads it: whole request frames in (length prefix included), encoded
/// replies out. Every frame goes to the receiver's handler, heartbeats included, so that they are counted and
/// answered by the same rules; the server side matches nothing by key.
struct DataProxyServerCodec: FrameCodec {
    typealias Inbound = ByteBuffer
    typealias Outbound = ByteBuffer
    typealias Key = Int

    /// The largest frame accepted, length prefix included.
    var maxFrameSize: Int

    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary {
        guard let length = try InLongFraming.frameLength(in: buffer, maxFrameSize: self.maxFrameSize) else {
            return .needMoreBytes
        }
        return .frame(length: length)
    }

    func encode(_ frame: ByteBuffer, into buffer: inout ByteBuffer) throws {
        // Replies are encoded by the request processor already.
        if buffer.readableBytes == 0 {
            buffer = frame
        } else {
            buffer.writeImmutableBuffer(frame)
        }
    }

    func decode(_ frame: ByteBuffer) throws -> ByteBuffer { frame }

    func kind(of frame: ByteBuffer) -> InboundFrameKind<Int> { .unsolicited }

    func key(of request: ByteBuffer) -> Int { 0 }

    func makeHeartbeat() -> ByteBuffer? { nil }
}
