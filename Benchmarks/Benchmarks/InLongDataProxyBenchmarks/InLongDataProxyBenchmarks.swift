import Benchmark
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTransport
import NIOCore

/// Log-like records of `size` bytes, 64 different ones.
func logRecords(size: Int) -> [ByteBuffer] {
    (0..<64).map { index in
        let second = index % 60
        var line = "2026-11-21T10:00:\(second < 10 ? "0" : "")\(second).123Z INFO svc=orders req=\(100_000 + index * 7919) user=u\(index * 31) "
        while line.utf8.count < size { line += "path=/api/v1/items/\(index) status=200 took=\(index % 17)ms " }
        return ByteBuffer(string: String(line.utf8.prefix(size))!)
    }
}

/// Runs a counting receiver and a client with default settings, then `body` under measurement.
func withClient(
    _ benchmark: Benchmark,
    _ body: (DataProxyClient) async throws -> Void
) async throws {
    var receiverConfiguration = DataProxyReceiver.Configuration()
    receiverConfiguration.host = "127.0.0.1"
    receiverConfiguration.port = 0
    let receiver = DataProxyReceiver(configuration: receiverConfiguration, sink: CountingSink())
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await receiver.run() }
        let port = try await receiver.port()
        let configuration = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: port)])
        try await withDataProxyClient(configuration: configuration) { client in
            // One record first, so that the connection is up before the measurement.
            _ = try await client.sendAndWait(ByteBuffer(string: "warm-up"), group: "bench", stream: "s")
            benchmark.startMeasurement()
            try await body(client)
            let flushed = await client.flush(timeout: .seconds(600))
            precondition(flushed, "records left unacked")
            benchmark.stopMeasurement()
            let statistics = client.statistics()
            precondition(statistics.failed == 0 && statistics.acked == statistics.accepted, "records failed")
        }
        receiver.stop()
        try await group.waitForAll()
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal, .peakMemoryResident],
        warmupIterations: 1,
        scalingFactor: .kilo,
        maxDuration: .seconds(10),
        maxIterations: 20
    )

    // Every run sends `scaledIterations.count` records and waits for every ack: throughput and allocations are
    // per record (the receiver's allocations, per frame, included).
    for (size, scale) in [(100, BenchmarkScalingFactor.mega), (1024, .kilo), (10240, .kilo)] {
        Benchmark("send(contentsOf:) \(size) B records, acked", configuration: .init(scalingFactor: scale)) { benchmark in
            let records = logRecords(size: size)
            let chunk = (0..<1000).map { records[$0 % records.count] }
            try await withClient(benchmark) { client in
                var remaining = benchmark.scaledIterations.count
                while remaining > 0 {
                    let count = min(remaining, chunk.count)
                    try await client.send(contentsOf: chunk[0..<count], group: "bench", stream: "s")
                    remaining -= count
                }
            }
        }
    }

    Benchmark("send 100 B records one by one, acked", configuration: .init(scalingFactor: .mega, maxIterations: 5)) { benchmark in
        let records = logRecords(size: 100)
        try await withClient(benchmark) { client in
            for index in benchmark.scaledIterations {
                try await client.send(records[index % records.count], group: "bench", stream: "s")
            }
        }
    }
}
