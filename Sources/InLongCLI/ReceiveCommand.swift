import ArgumentParser
import Foundation
import InLongDataProxyReceiver
import InLongTransport
import InLongWire
import NIOCore
import Logging
import ServiceLifecycle
import UnixSignals

struct ReceiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "receive",
        abstract: "Run a DataProxy-compatible receiver until SIGINT or SIGTERM, then print totals.",
        discussion: """
            Examples:
              inlong receive                                 # 127.0.0.1:46801, records to inlong-received.jsonl
              inlong receive --listen 0.0.0.0:46801 --manager-port 8083 --out -
              inlong receive --count-only                    # store nothing (benchmarks)
            """
    )

    @Option(help: "The address to listen on, host:port.")
    var listen = "127.0.0.1:46801"

    @Option(help: "Also serve the Manager proxy-list endpoint on this port (0 picks one).")
    var managerPort: Int?

    @Option(help: "JSON Lines file for the records, or '-' for standard output.")
    var out = "inlong-received.jsonl"

    @Flag(help: "Count records without storing them.")
    var countOnly = false

    @Option(help: "Largest frame accepted, bytes.")
    var maxFrameSize = 512 << 10

    @Option(help: "Heartbeat load to report (default: unknown, 0xFFFF).")
    var load: Int16?

    func run() async throws {
        let endpoint = try parseEndpoint(self.listen)
        var configuration = DataProxyReceiver.Configuration()
        configuration.host = endpoint.host
        configuration.port = endpoint.port
        configuration.maxFrameSize = self.maxFrameSize
        configuration.faults.load = self.load
        if let managerPort = self.managerPort {
            var manager = DataProxyManagerServer.Configuration()
            manager.host = endpoint.host
            manager.port = managerPort
            configuration.manager = manager
        }
        let sink: any DataProxyReceiverSink
        let jsonSink: JSONLinesSink?
        if self.countOnly {
            sink = CountingSink()
            jsonSink = nil
        } else if self.out == "-" {
            jsonSink = JSONLinesSink()
            sink = jsonSink!
        } else {
            do {
                jsonSink = try JSONLinesSink(url: URL(fileURLWithPath: self.out))
            } catch {
                throw CLIError("cannot write \(self.out): \(error)")
            }
            sink = jsonSink!
        }
        var logger = Logger(label: "inlong.receive")
        logger.logLevel = .notice
        let receiver = DataProxyReceiver(configuration: configuration, sink: sink, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: receiver)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        let announce = Task {
            guard let address = try? await receiver.localAddress() else { return }
            var line = "listening on \(address.ipAddress ?? endpoint.host):\(address.port ?? 0)"
            if let manager = receiver.manager, let url = try? await manager.baseURL() { line += ", Manager endpoint \(url)/{groupId}" }
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        let start = ContinuousClock.now
        do {
            try await group.run()
        } catch {
            throw CLIError("receiver failed: \(error)")
        }
        announce.cancel()
        try? jsonSink?.close()
        let seconds = (ContinuousClock.now - start).components.seconds
        let statistics = receiver.statistics()
        let errors = statistics.errors.map { "\($0.key.rawValue): \($0.value)" }.sorted().joined(separator: ", ")
        let summary = """
            received \(statistics.records) records in \(statistics.messages) messages, \(statistics.frames) frames, \
            \(statistics.bytes) bytes from \(statistics.acceptedConnections) connections in \(seconds) s; \
            errors: \(errors.isEmpty ? "none" : errors)\(self.countOnly || self.out == "-" ? "" : "; written to \(self.out)")
            """
        FileHandle.standardError.write(Data((summary + "\n").utf8))
    }
}
