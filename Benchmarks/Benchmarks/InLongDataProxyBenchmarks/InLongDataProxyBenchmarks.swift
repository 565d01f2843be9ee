import Benchmark
@_spi(Benchmarks) import InLongDataProxy
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

/// `records` (taken in turn from `logRecords(size:)`) as one newline-delimited buffer.
func logLines(size: Int, records: Int) -> ByteBuffer {
    let templates = logRecords(size: size)
    var lines = ByteBuffer()
    for index in 0..<records {
        lines.writeImmutableBuffer(templates[index % templates.count])
        lines.writeInteger(UInt8(ascii: "\n"))
    }
    return lines
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal, .peakMemoryResident],
        warmupIterations: 1,
        scalingFactor: .kilo,
        maxDuration: .seconds(10),
        maxIterations: 20
    )

    // The batch accumulator's append-and-seal paths alone (no lock, no I/O), with committed thresholds
    // (`Thresholds/`, checked by `scripts/check-benchmarks.sh`): 1,000 records per iteration into one accumulator
    // kept from iteration to iteration, sealed into batches at the client's default limits, each dropped as an
    // encoded one is (its block reused, its quota released). A fixed number of iterations, so that the batches
    // sealed per iteration, and with them the p90 of allocations, are the same from run to run. Allocations may
    // grow by 3 per 1,000 records (a sealed batch costs about one), instructions by 2 %. Names without spaces:
    // the thresholds' files are named after them.
    let appendConfiguration = Benchmark.Configuration(
        metrics: [.throughput, .wallClock, .cpuTotal, .mallocCountTotal, .instructions],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(60),
        maxIterations: 1000,
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 3]), .instructions: .init(relative: [.p90: 2.0])]
    )
    for (size, name) in [(100, "100B"), (1024, "1KiB")] {
        let templates = logRecords(size: size)
        let records = (0..<1000).map { templates[$0 % templates.count] }
        let lines = logLines(size: size, records: 1000)
        // One record per call, as `send` appends.
        var oneByOne = BatchAppendBenchmark()
        Benchmark("BatchAppend-\(name)-one-by-one", configuration: appendConfiguration) { benchmark in
            precondition(benchmark.scaledIterations.count == records.count)
            benchmark.startMeasurement()
            oneByOne.appendOneByOne(records, count: records.count)
            benchmark.stopMeasurement()
        }
        // A run of records per call, as `send(contentsOf:)` appends.
        var run = BatchAppendBenchmark()
        Benchmark("BatchAppend-\(name)-run", configuration: appendConfiguration) { benchmark in
            precondition(benchmark.scaledIterations.count == records.count)
            benchmark.startMeasurement()
            run.appendRun(records)
            benchmark.stopMeasurement()
        }
        // Newline-delimited records read in place, as `send(lines:)` appends.
        var delimited = BatchAppendBenchmark()
        Benchmark("BatchAppend-\(name)-lines", configuration: appendConfiguration) { benchmark in
            precondition(benchmark.scaledIterations.count == records.count)
            benchmark.startMeasurement()
            delimited.appendLines(lines)
            benchmark.stopMeasurement()
        }
    }

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
