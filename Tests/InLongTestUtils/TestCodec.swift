package import InLongTransport
package import NIOCore

/// A minimal binary protocol for the transport's tests: `len(4) kind(1) key(4) payload`, `len` counting kind + key +
/// payload.
package struct TestFrame: Sendable, Hashable {
    package enum Kind: UInt8, Sendable {
        case request = 0, response = 1, heartbeat = 2, heartbeatReply = 3, push = 4
    }

    package var kind: Kind
    package var key: UInt32
    package var payload: String = ""

    package init(kind: Kind, key: UInt32, payload: String = "") {
        self.kind = kind
        self.key = key
        self.payload = payload
    }

    package static func request(_ key: UInt32, _ payload: String = "") -> TestFrame { TestFrame(kind: .request, key: key, payload: payload) }
    package static func response(_ key: UInt32, _ payload: String = "") -> TestFrame { TestFrame(kind: .response, key: key, payload: payload) }

    package var bytes: ByteBuffer {
        var buffer = ByteBuffer()
        try! TestCodec().encode(self, into: &buffer)
        return buffer
    }
}

package struct TestError: Error {
    package init() {}
}

package struct TestCodec: FrameCodec {
    package var maxFrame: Int
    package var heartbeats: Bool

    package init(maxFrame: Int = 1 << 20, heartbeats: Bool = true) {
        self.maxFrame = maxFrame
        self.heartbeats = heartbeats
    }

    package func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreBytes }
        guard length >= 5, Int(length) + 4 <= self.maxFrame else { throw TestError() }
        return .frame(length: Int(length) + 4)
    }

    package func encode(_ frame: TestFrame, into buffer: inout ByteBuffer) throws {
        buffer.writeInteger(UInt32(5 + frame.payload.utf8.count))
        buffer.writeInteger(frame.kind.rawValue)
        buffer.writeInteger(frame.key)
        buffer.writeString(frame.payload)
    }

    package func decode(_ frame: ByteBuffer) throws -> TestFrame {
        var frame = frame
        guard let (_, kindByte, key) = frame.readMultipleIntegers(as: (UInt32, UInt8, UInt32).self),
            let kind = TestFrame.Kind(rawValue: kindByte)
        else { throw TestError() }
        return TestFrame(kind: kind, key: key, payload: frame.readString(length: frame.readableBytes) ?? "")
    }

    package func kind(of frame: TestFrame) -> InboundFrameKind<UInt32> {
        switch frame.kind {
        case .response: .response(frame.key)
        case .heartbeatReply: .heartbeatReply
        case .request, .heartbeat, .push: .unsolicited
        }
    }

    package func key(of request: TestFrame) -> UInt32 { request.key }

    package func makeHeartbeat() -> TestFrame? { self.heartbeats ? TestFrame(kind: .heartbeat, key: 0) : nil }

    package func heartbeatResponse(to frame: TestFrame) -> TestFrame? {
        frame.kind == .heartbeat ? TestFrame(kind: .heartbeatReply, key: frame.key) : nil
    }
}
