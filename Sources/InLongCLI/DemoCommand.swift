import ArgumentParser
import Foundation
import Logging
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTransport
import NIOCore

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Send records to an embedded receiver and check that every one arrived.",
        usage: "inlong demo [<options>]",
        discussion: """
            Starts a receiver and a Manager on free loopback ports, sends records through the SDK with Manager \
            discovery, and compares what the receiver stored with what was sent.

            Examples:
              inlong demo
              inlong demo --records 1000000 --size 200 --out /tmp/demo.jsonl
            """
    )

    @Option(help: "Records to send.")
    var records = 100_000

    @Option(help: "Bytes per record.")
    var size = 100

    @Option(help: "Where the receiver writes the records (JSON Lines); by default a temporary file, removed after the check.")
    var out: String?

    @Flag(help: "Replace the --out file if it exists.")
    var overwrite = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .warning

    func validate() throws {
        guard self.records > 0, self.size >= 16 else { throw ValidationError("--records must be positive and --size at least 16") }
        if let out = self.out, !self.overwrite, FileManager.default.fileExists(atPath: out) {
            throw ValidationError("\(out) exists: give --overwrite, or another --out")
        }
    }

    func run() async throws {
        // Nothing is left in the working directory unless asked for with --out.
        let out = self.out ?? FileManager.default.temporaryDirectory.appendingPathComponent("inlong-demo-\(getpid()).jsonl").path
        defer { if self.out == nil { try? FileManager.default.removeItem(atPath: out) } }
        let sink: JSONLinesSink
        do {
            sink = try JSONLinesSink(url: URL(fileURLWithPath: out))
        } catch {
            throw CLIError("cannot write \(out): \(error)")
        }
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.manager = DataProxyManagerServer.Configuration()
        var logger = Logger(label: "inlong.demo")
        logger.logLevel = self.logLevel
        let receiver = DataProxyReceiver(configuration: receiverConfiguration, sink: sink, logger: logger)
        let group = "demo_group"
        let stream = "demo_stream"
        let total = self.records
        let size = self.size

        let outcome = try await withThrowingTaskGroup(of: Void.self) { tasks -> SendOutcome in
            tasks.addTask { try await receiver.run() }
            defer { receiver.stop() }
            let port = try await receiver.port()
            let managerURL = try await receiver.manager!.baseURL()
            print("receiver on 127.0.0.1:\(port), Manager endpoint \(managerURL)/\(group)")
            var manager = DataProxyClient.Configuration.Manager(url: managerURL, groups: [group])
            manager.cacheFile = nil
            let configuration = DataProxyClient.Configuration(manager: manager)
            let outcome = try await sendLines(configuration: configuration, group: group, stream: stream, logger: logger) { emit, _ in
                var index = 0
                var chunk: [ByteBuffer] = []
                chunk.reserveCapacity(1000)
                while index < total {
                    chunk.append(demoRecord(index, size: size))
                    index += 1
                    if chunk.count == 1000 || index == total {
                        try await emit(chunk)
                        chunk.removeAll(keepingCapacity: true)
                    }
                }
            }
            receiver.stop()
            try await tasks.waitForAll()
            return outcome
        }
        try? sink.close()
        let received = receiver.statistics()
        print(outcome.summary)
        print("receiver stored \(received.records) records (\(sink.lineCount) lines)" + (self.out.map { " in \($0)" } ?? ""))
        guard outcome.statistics.acked == total, received.records == total, sink.lineCount == total else {
            print("FAILED: \(total) records sent, \(outcome.statistics.acked) acked, \(received.records) received")
            throw ExitCode(1)
        }
        print("OK: every record arrived")
    }
}

/// A log-like record of `size` bytes: an index, a level, a service and filler.
func demoRecord(_ index: Int, size: Int) -> ByteBuffer {
    var text = "\(index)|2026-11-21T10:00:00.000Z|INFO|order-service|user=\(index % 9973)|action=checkout|"
    let filler = "abcdefghijklmnopqrstuvwxyz0123456789"
    while text.utf8.count < size { text += filler }
    return ByteBuffer(string: String(text.utf8.prefix(size))!)
}
