import Benchmark
import InLongTransport
import NIOCore
import NIOPosix

/// `len(4) key(4) payload`: the smallest keyed protocol, so the benchmark measures the transport.
struct KeyedCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreBytes }
        return .frame(length: Int(length) + 4)
    }
    func encode(_ frame: KeyedFrame, into buffer: inout ByteBuffer) throws {
        buffer.writeMultipleIntegers(UInt32(4 + frame.payload.readableBytes), frame.key)
        buffer.writeImmutableBuffer(frame.payload)
    }
    func decode(_ frame: ByteBuffer) throws -> KeyedFrame {
        KeyedFrame(key: frame.getInteger(at: frame.readerIndex + 4)!, payload: frame.getSlice(at: frame.readerIndex + 8, length: frame.readableBytes - 8)!)
    }
    func kind(of frame: KeyedFrame) -> InboundFrameKind<UInt32> { .response(frame.key) }
    func key(of request: KeyedFrame) -> UInt32 { request.key }
    func makeHeartbeat() -> KeyedFrame? { nil }
}

struct KeyedFrame: Sendable {
    var key: UInt32
    var payload: ByteBuffer
}

/// Echoes raw bytes back: every request frame comes back as its own response.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .seconds(5)
    )

    for inFlight in [1, 64] {
        Benchmark("Requests over loopback, \(inFlight) in flight (1k requests of 100 B)") { benchmark in
            let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
                }
                .bind(host: "127.0.0.1", port: 0).get()
            var configuration = PersistentConnection<KeyedCodec>.Configuration(
                endpoints: [Endpoint(host: "127.0.0.1", port: server.localAddress!.port!)]
            )
            configuration.heartbeatInterval = nil
            let connection = PersistentConnection(codec: KeyedCodec(), configuration: configuration)
            let payload = ByteBuffer(repeating: 0x61, count: 100)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await connection.run() }
                while connection.connectivityState != .ready { try await Task.sleep(for: .milliseconds(5)) }
                var key: UInt32 = 0
                benchmark.startMeasurement()
                var remaining = benchmark.scaledIterations.count
                while remaining > 0 {
                    let round = min(inFlight, remaining)
                    remaining -= round
                    try await withThrowingTaskGroup(of: Void.self) { batch in
                        for _ in 0..<round {
                            key &+= 1
                            let request = KeyedFrame(key: key, payload: payload)
                            batch.addTask { blackHole(try await connection.request(request)) }
                        }
                        try await batch.waitForAll()
                    }
                }
                benchmark.stopMeasurement()
                connection.close()
                try await group.next()
                group.cancelAll()
            }
            try await server.close()
        }
    }
}
