import ArgumentParser
import Foundation
import Logging
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTransport
import NIOCore

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the SDK against an embedded receiver over loopback.",
        usage: "inlong bench [<options>]",
        discussion: """
            Every record is acked before the figures are printed.

            Examples:
              inlong bench --records 2000000 --size 100 --mode single
              inlong bench --records 500000 --size 1024 --mode batch
              # one send per record from 8 tasks:
              inlong bench --records 2000000 --size 100 --mode concurrent
              # against a receiver started elsewhere:
              inlong bench --proxy 127.0.0.1:46801 --records 1000000
              # the receiver alone, raw pipelined frames:
              inlong bench --receiver-only --records 5000000 --size 100
            """
    )

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        /// One `send` per record.
        case single
        /// `send(contentsOf:)` with 1000 records per call.
        case batch
        /// One `send` per record from 8 concurrent tasks.
        case concurrent
    }

    @Option(help: "Records to send.")
    var records = 1_000_000

    @Option(help: "Bytes per record.")
    var size = 100

    @Option(help: "single: one send per record; batch: send(contentsOf:) of 1000; concurrent: one send per record from 8 tasks.")
    var mode = Mode.batch

    @Flag(help: "Do not compress batches.")
    var noCompression = false

    @Option(help: "Offer records at this rate (records/s) instead of as fast as possible, to measure latency below saturation.")
    var rate: Int?

    @Option(name: .customLong("proxy"), help: "Send to this receiver instead of an embedded one.")
    var proxy: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .warning

    @Flag(help: "Measure the embedded receiver alone, fed pre-encoded frames by a raw pipelined sender.")
    var receiverOnly = false

    @Option(help: "With --receiver-only: sender connections.")
    var connections = 1

    @Option(help: "With --receiver-only: unacked frames per connection.")
    var window = 64

    @Flag(help: "With --receiver-only: have the receiver decompress and split every message, as for a storing sink.")
    var decode = false

    func run() async throws {
        guard self.records > 0, self.size >= 16 else { throw CLIError("--records must be positive and --size at least 16") }
        let sink = CountingSink()
        let receiver = DataProxyReceiver(configuration: .loopback, sink: sink)
        let records = self.records
        let size = self.size
        let mode = self.mode
        let template = (0..<64).map { demoRecord($0, size: size) }
        if self.receiverOnly {
            guard self.connections > 0, self.window > 0 else { throw CLIError("--connections and --window must be positive") }
            let bench = ReceiverBench(records: records, size: size, connections: self.connections, window: self.window, compress: !self.noCompression, decode: self.decode)
            let outcome = try await bench.run(template: template)
            let peak = peakResidentText()
            print("receiver only: \(outcome.records) records of \(size) B in \(outcome.frames) frames over \(self.connections) connection(s), window \(self.window), compression \(self.noCompression ? "off" : "on"), records \(self.decode ? "decoded" : "counted")")
            print(
                "ingested in \(String(format: "%.2f", outcome.seconds)) s: \(formatRate(Double(outcome.records), seconds: outcome.seconds))records/s, "
                    + "\(megabytes(outcome.payloadBytes, seconds: outcome.seconds)) of records, \(megabytes(outcome.wireBytes, seconds: outcome.seconds)) on the wire; failed acks \(outcome.failedAcks)"
            )
            print("peak resident memory \(peak)")
            if outcome.failedAcks > 0 { throw ExitCode(1) }
            return
        }
        let outcome = try await withThrowingTaskGroup(of: Void.self) { tasks -> SendOutcome in
            let endpoint: Endpoint
            if let proxy = self.proxy {
                endpoint = try parseEndpoint(proxy)
            } else {
                tasks.addTask { try await receiver.run() }
                endpoint = Endpoint(host: "127.0.0.1", port: try await receiver.port())
            }
            var configuration = DataProxyClient.Configuration(proxies: [endpoint])
            if self.noCompression { configuration.batching.compressionThreshold = nil }
            var logger = Logger(label: "inlong.bench")
            logger.logLevel = self.logLevel
            let outcome = try await benchSend(configuration: configuration, records: records, mode: mode, template: template, rate: self.rate, logger: logger)
            receiver.stop()
            try await tasks.waitForAll()
            return outcome
        }
        let peak = peakResidentText()
        print("mode \(mode.rawValue), \(records) records of \(size) B, compression \(self.noCompression ? "off" : "on")\(self.rate.map { ", offered at \($0) records/s" } ?? "")")
        print(outcome.summary)
        print("peak resident memory \(peak)")
        if self.proxy == nil { print("receiver counted \(sink.recordCount) records") }
        if outcome.statistics.acked != records { throw ExitCode(1) }
    }
}

func benchSend(
    configuration: DataProxyClient.Configuration,
    records: Int,
    mode: BenchCommand.Mode,
    template: [ByteBuffer],
    rate: Int? = nil,
    logger: Logger = Logger.disabled
) async throws -> SendOutcome {
    let start = ContinuousClock.now
    /// Sleeps until `sent` records are due at the offered rate.
    func pace(_ sent: Int) async throws {
        guard let rate, rate > 0 else { return }
        let due = start + .nanoseconds(Int64(Double(sent) / Double(rate) * 1e9))
        if due > .now { try await Task.sleep(until: due) }
    }
    let bytes = (0..<records).reduce(0) { $0 + template[$1 % template.count].readableBytes }
    let statistics = try await withDataProxyClient(configuration: configuration, logger: logger) { client in
        let progress = Progress {
            let statistics = client.statistics()
            return "accepted \(statistics.accepted)  acked \(statistics.acked)  held \(statistics.heldRecords)"
        }
        defer { progress.finish() }
        switch mode {
        case .single:
            for index in 0..<records {
                try await client.send(template[index % template.count], group: "bench", stream: "s")
                if index % 1000 == 999 { try await pace(index + 1) }
            }
        case .concurrent:
            let tasks = 8
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<tasks {
                    group.addTask {
                        var index = task
                        while index < records {
                            try await client.send(template[index % template.count], group: "bench", stream: "s")
                            index += tasks
                            if index % 8000 < tasks { try await pace(index) }
                        }
                    }
                }
                try await group.waitForAll()
            }
        case .batch:
            var index = 0
            var chunk: [ByteBuffer] = []
            chunk.reserveCapacity(1000)
            while index < records {
                chunk.removeAll(keepingCapacity: true)
                while chunk.count < 1000 && index < records {
                    chunk.append(template[index % template.count])
                    index += 1
                }
                try await client.send(contentsOf: chunk, group: "bench", stream: "s")
                try await pace(index)
            }
        }
        _ = await client.flush(timeout: .seconds(600))
        return client.statistics()
    }
    let seconds = secondsSince(start)
    return SendOutcome(statistics: statistics, seconds: seconds, bytes: bytes, lines: records)
}
