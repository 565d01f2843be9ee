import Benchmark
import InLongTransport
import NIOCore
import NIOPosix

/// `len(4) key(4) payload`: the smallest keyed protocol, so the benchmark measures the transport.
struct KeyedFrame: Sendable {
    var key: UInt32
    var payload: ByteBuffer
}

enum KeyedFraming {
    static func frameBoundary(in buffer: ByteBuffer) -> FrameBoundary {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreBytes }
        return .frame(length: Int(length) + 4)
    }

    static func encode(_ frame: KeyedFrame, into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(UInt32(4 + frame.payload.readableBytes), frame.key)
        buffer.writeImmutableBuffer(frame.payload)
    }

    static func decode(_ frame: ByteBuffer) -> KeyedFrame {
        KeyedFrame(
            key: frame.getInteger(at: frame.readerIndex + 4)!,
            payload: frame.getSlice(at: frame.readerIndex + 8, length: frame.readableBytes - 8)!
        )
    }
}

/// The client's side: every inbound frame is the response to the request with its key.
struct KeyedCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { KeyedFraming.frameBoundary(in: buffer) }
    func encode(_ frame: KeyedFrame, into buffer: inout ByteBuffer) throws { KeyedFraming.encode(frame, into: &buffer) }
    func decode(_ frame: ByteBuffer) throws -> KeyedFrame { KeyedFraming.decode(frame) }
    func kind(of frame: KeyedFrame) -> InboundFrameKind<UInt32> { .response(frame.key) }
    func key(of request: KeyedFrame) -> UInt32 { request.key }
    func makeHeartbeat() -> KeyedFrame? { nil }
}

/// The server's side: every inbound frame is a request.
struct KeyedServerCodec: FrameCodec {
    func frameBoundary(in buffer: ByteBuffer) throws -> FrameBoundary { KeyedFraming.frameBoundary(in: buffer) }
    func encode(_ frame: KeyedFrame, into buffer: inout ByteBuffer) throws { KeyedFraming.encode(frame, into: &buffer) }
    func decode(_ frame: ByteBuffer) throws -> KeyedFrame { KeyedFraming.decode(frame) }
    func kind(of frame: KeyedFrame) -> InboundFrameKind<UInt32> { .unsolicited }
    func key(of request: KeyedFrame) -> UInt32 { request.key }
    func makeHeartbeat() -> KeyedFrame? { nil }
}

/// Runs our own echo server and a connection to it for `body`, outside the measured time.
func withEchoServerAndConnection(
    _ body: (PersistentConnection<KeyedCodec>) async throws -> Void
) async throws {
    var serverConfiguration = PersistentServer<KeyedServerCodec>.Configuration(host: "127.0.0.1", port: 0)
    serverConfiguration.readTimeout = nil
    let server = PersistentServer(codec: KeyedServerCodec(), configuration: serverConfiguration) { request, responder in
        try? await responder.respond(request)
    }
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run() }
        let port = try await server.localAddress().port!
        var configuration = PersistentConnection<KeyedCodec>.Configuration(
            endpoints: [Endpoint(host: "127.0.0.1", port: port)]
        )
        configuration.heartbeatInterval = nil
        configuration.readTimeout = nil
        let connection = PersistentConnection(codec: KeyedCodec(), configuration: configuration)
        group.addTask { try await connection.run() }
        for await state in connection.connectivityStates() where state == .ready { break }
        try await body(connection)
        connection.close()
        server.stop()
        try await group.waitForAll()
    }
}

let benchmarks: @Sendable () -> Void = {
    // How far a run may stray from the committed `Thresholds/` (p90, per 1,000 requests) before
    // `scripts/check-benchmarks.sh` fails. Allocations are counted, not timed: with one request in flight, runs
    // differ by a few dozen (the event loop's wake-ups); with 64, the batching of many tasks at once moves them by
    // up to 5 %. Instructions by 2 %. Times are not checked: a shared machine makes them noise.
    func tolerances(allocations: Int) -> [BenchmarkMetric: BenchmarkThresholds] {
        [.mallocCountTotal: .init(absolute: [.p90: allocations]), .instructions: .init(relative: [.p90: 2.0])]
    }
    let thresholdTolerances = tolerances(allocations: 150)
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .cpuTotal, .mallocCountTotal, .instructions],
        warmupIterations: 2,
        scalingFactor: .kilo,
        maxDuration: .seconds(10),
        maxIterations: 20,
        thresholds: thresholdTolerances
    )

    // Names without spaces: the thresholds' files are named after them, and are looked up by them as they are.

    // Requests of 100 B echoed by a PersistentServer over loopback, 1k per iteration; `inFlight` tasks each send their share one
    // request after another, so that many requests are in flight at once.
    for inFlight in [1, 64] {
        var configuration = Benchmark.defaultConfiguration
        if inFlight > 1 { configuration.thresholds = tolerances(allocations: 600) }
        Benchmark("Echo-100B-\(inFlight)-in-flight", configuration: configuration) { benchmark in
            let payload = ByteBuffer(repeating: 0x61, count: 100)
            try await withEchoServerAndConnection { connection in
                let total = benchmark.scaledIterations.count
                benchmark.startMeasurement()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for task in 0..<inFlight {
                        group.addTask {
                            var key = UInt32(task)
                            while Int(key) < total {
                                blackHole(try await connection.request(KeyedFrame(key: key, payload: payload)))
                                key += UInt32(inFlight)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                benchmark.stopMeasurement()
            }
        }
    }

    // One request at a time from a task that prefers the connection's executor: the caller's side crosses no
    // thread, so what is left is the server's work and the two sockets.
    Benchmark("Echo-100B-1-in-flight-from-the-event-loop") { benchmark in
        let payload = ByteBuffer(repeating: 0x61, count: 100)
        try await withEchoServerAndConnection { connection in
            let total = benchmark.scaledIterations.count
            benchmark.startMeasurement()
            try await withTaskExecutorPreference(connection.taskExecutor) {
                for key in 0..<UInt32(total) {
                    blackHole(try await connection.request(KeyedFrame(key: key, payload: payload)))
                }
            }
            benchmark.stopMeasurement()
        }
    }
}
