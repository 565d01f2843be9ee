import Benchmark
import InLongSnappy
import InLongWire
import NIOCore

/// Log-like text: fixed structure with varying numbers, as application logs look.
private func logLines(bytes: Int) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(bytes + 200)
    var i = 0
    while out.count < bytes {
        out += Array(
            ("2026-11-21 10:\(i % 60):\(i % 59).\(i % 1000)|INFO|order-service|user=\(i * 7919 % 100_000)"
                + "|action=checkout|items=\(i % 9)|amount=\(i % 500).90|region=eu-west-1|status=OK\n").utf8
        )
        i += 1
    }
    return Array(out.prefix(bytes))
}

private func randomBytes(_ count: Int) -> [UInt8] {
    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
    return (0..<count).map { _ in
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        return UInt8(truncatingIfNeeded: x)
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: 10,
        maxDuration: .seconds(3)
    )
    let blockSize = 1 << 20
    let inputs: [(String, [UInt8])] = [("log text", logLines(bytes: blockSize)), ("random", randomBytes(blockSize))]

    for (name, input) in inputs {
        // One iteration = 1 MiB, so throughput (per second) reads as MiB/s.
        Benchmark("Snappy compress 1 MiB \(name)") { benchmark in
            var output = [UInt8](repeating: 0, count: Snappy.maxCompressedLength(forInputLength: input.count))
            for _ in benchmark.scaledIterations {
                input.withUnsafeBytes { source in
                    output.withUnsafeMutableBytes { blackHole(Snappy.compress(source, into: $0)) }
                }
            }
        }
        let compressed = Snappy.compress(input)
        Benchmark("Snappy decompress 1 MiB \(name)") { benchmark in
            var output = [UInt8](repeating: 0, count: input.count)
            for _ in benchmark.scaledIterations {
                compressed.withUnsafeBytes { source in
                    output.withUnsafeMutableBytes { blackHole(try! Snappy.decompress(source, into: $0)) }
                }
            }
        }
    }

    let records = (0..<50).map { i in
        InLongRecord(data: ByteBuffer(bytes: logLines(bytes: 100 + i * 101).suffix(100)))
    }
    for (label, threshold) in [("plain", nil), ("snappy", 512)] as [(String, Int?)] {
        let message = try! InLongBinaryMessage(
            records: records,
            attributes: "groupId=test_group&streamId=test_stream",
            uniq: 1,
            dataTime: 1_700_000_000,
            compressionThreshold: threshold
        )
        var frame = ByteBuffer()
        try! message.encode(into: &frame)

        Benchmark(
            "Type-7 encode 50 x 100 B \(label)",
            configuration: .init(scalingFactor: .kilo)
        ) { benchmark in
            var buffer = ByteBuffer()
            buffer.reserveCapacity(1 << 16)
            for _ in benchmark.scaledIterations {
                buffer.clear()
                let built = try! InLongBinaryMessage(
                    records: records,
                    attributes: "groupId=test_group&streamId=test_stream",
                    uniq: 1,
                    dataTime: 1_700_000_000,
                    compressionThreshold: threshold
                )
                try! built.encode(into: &buffer)
                blackHole(buffer.readableBytes)
            }
        }
        Benchmark(
            "Type-7 decode 50 x 100 B \(label)",
            configuration: .init(scalingFactor: .kilo)
        ) { benchmark in
            for _ in benchmark.scaledIterations {
                let decoded = try! InLongBinaryMessage(frame: frame)
                blackHole(try! decoded.records().count)
            }
        }
    }
}
