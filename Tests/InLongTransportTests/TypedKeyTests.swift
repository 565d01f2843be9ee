import NIOCore
import NIOEmbedded
import Testing

@testable import InLongTransport

/// The handler keeps the codec's own key type: responses find their requests by a `String` key (not an integer),
/// in any order, a key in use is refused, and a key that matches nothing completes nothing.
@Suite struct TypedKeyTests {
    /// `len(4) keyLength(1) key payload`, keyed by the key's text.
    struct NamedFrame: Sendable, Equatable {
        var key: String
        var payload: String
    }

    struct NamedCodec: FrameCodec {
        func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary {
            guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreBytes }
            return .frame(length: 4 + Int(length))
        }

        func encode(_ frame: NamedFrame, into buffer: inout ByteBuffer) throws {
            let key = Array(frame.key.utf8)
            let payload = Array(frame.payload.utf8)
            buffer.writeInteger(UInt32(1 + key.count + payload.count))
            buffer.writeInteger(UInt8(key.count))
            buffer.writeBytes(key)
            buffer.writeBytes(payload)
        }

        func decode(_ frame: ByteBuffer) throws -> NamedFrame {
            var frame = frame
            frame.moveReaderIndex(forwardBy: 4)
            let keyLength = Int(frame.readInteger(as: UInt8.self)!)
            let key = frame.readString(length: keyLength)!
            return NamedFrame(key: key, payload: frame.readString(length: frame.readableBytes)!)
        }

        func kind(of frame: NamedFrame) -> InboundFrameKind<String> { .response(frame.key) }
        func key(of request: NamedFrame) -> String { request.key }
        func makeHeartbeat() -> NamedFrame? { nil }
    }

    func bytes(_ frame: NamedFrame) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        try NamedCodec().encode(frame, into: &buffer)
        return buffer
    }

    @Test func responsesFindTheirRequestsByTheCodecsKey() throws {
        let counters = StatisticsCounters()
        let (channel, loop, handler) = try makeEmbeddedHandler(
            codec: NamedCodec(),
            stateMachine: .init(maxInFlight: 8, maxQueued: 8, heartbeatInterval: nil, readTimeout: nil),
            maxFrameLength: 1024,
            counters: counters
        )
        let keys = ["alpha", "beta", "gamma"]
        let promises = keys.map { key in
            let promise = loop.makePromise(of: NamedFrame.self)
            handler.submitRequest(NamedFrame(key: key, payload: "ask \(key)"), promise: promise, timeout: nil)
            return promise
        }
        // A key still in flight is refused: the response could not tell the two apart.
        let duplicate = loop.makePromise(of: NamedFrame.self)
        handler.submitRequest(NamedFrame(key: "beta", payload: "again"), promise: duplicate, timeout: nil)
        loop.run()
        #expect {
            try duplicate.futureResult.wait()
        } throws: { error in
            (error as? TransportError)?.code == .duplicateKey
        }

        // Answered in reverse order, plus one key that matches no request.
        try channel.writeInbound(try self.bytes(NamedFrame(key: "delta", payload: "nobody asked")))
        for key in keys.reversed() {
            try channel.writeInbound(try self.bytes(NamedFrame(key: key, payload: "answer \(key)")))
        }
        for (key, promise) in zip(keys, promises) {
            #expect(try promise.futureResult.wait() == NamedFrame(key: key, payload: "answer \(key)"))
        }
        #expect(counters.snapshot().requestsSucceeded == 3)
        #expect(counters.snapshot().inFlight == 0)
        _ = try? channel.finish()
    }
}
