import Foundation
import InLongTransport
import InLongWire
import NIOCore

/// The DataProxy protocol for ``InLongTransport``: type-7 requests keyed by `uniq`, type-8 heartbeats.
struct DataProxyCodec: FrameCodec {
    enum Outbound: Sendable {
        /// An encoded type-7 frame and its `uniq`.
        case data(uniq: UInt32, frame: ByteBuffer)
        case heartbeat
    }

    typealias Inbound = InLongResponse
    typealias Key = UInt32

    /// The largest reply accepted (acks echo request attributes, so they stay small).
    var maxFrameSize: Int

    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary {
        guard let length = try InLongFraming.frameLength(in: buffer, maxFrameSize: self.maxFrameSize) else {
            return .needMoreBytes
        }
        return .frame(length: length)
    }

    func encode(_ frame: Outbound, into buffer: inout ByteBuffer) throws {
        switch frame {
        case .data(_, let bytes):
            // The frame is kept until its ack anyway: share it rather than hold a second copy in flight.
            if buffer.readableBytes == 0 {
                buffer = bytes
            } else {
                buffer.writeImmutableBuffer(bytes)
            }
        case .heartbeat:
            // C++ layout: version 1, data time in seconds.
            let heartbeat = InLongBinaryHeartbeat(
                dataTime: UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970)),
                bodyVersion: 1
            )
            try heartbeat.encode(into: &buffer)
        }
    }

    func decode(_ frame: ByteBuffer) throws -> InLongResponse {
        try InLongResponse(frame: frame)
    }

    func kind(of frame: InLongResponse) -> InboundFrameKind<UInt32> {
        switch frame {
        case .binaryAck(let ack): .response(ack.uniq)
        case .binaryHeartbeat, .heartbeat: .heartbeatReply
        case .textAck: .unsolicited
        }
    }

    func key(of request: Outbound) -> UInt32 {
        switch request {
        case .data(let uniq, _): uniq
        case .heartbeat: 0
        }
    }

    func makeHeartbeat() -> Outbound? { .heartbeat }

    /// Type-8 replies carry the proxy's load; the stock server always sends 0xFFFF (unknown).
    func reportedLoad(in heartbeatReply: InLongResponse) -> Int? {
        if case .binaryHeartbeat(let reply) = heartbeatReply { reply.reportedLoad } else { nil }
    }
}
