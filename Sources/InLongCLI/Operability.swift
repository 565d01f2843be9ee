public import ArgumentParser
import CoreMetrics
import Foundation
import Hummingbird
public import Logging
import InLongTransport
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// What every long-running subcommand offers an operator: log level, a Prometheus endpoint, a JSON summary.
struct OperatorOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical (default: warning; error for send, which says why no proxy answers in its own words).")
    var logLevel: Logger.Level?

    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics, and /health.")
    var metrics: String?

    @Option(name: .customLong("stats-json"), help: "Write the final summary as JSON to this file, for scripts.")
    var statsJSON: String?

    /// A logger at `--log-level`, or at `level` when none was given.
    func logger(_ label: String, level: Logger.Level = .warning) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = self.logLevel ?? level
        return logger
    }

    /// The metrics endpoint to run beside the command, once metrics are bootstrapped to it; `nil` without
    /// `--metrics`.
    /// `health` says why the command is unhealthy (`/health` answers 503 with it), or `nil`.
    func metricsEndpoint(logger: Logger, health: @escaping @Sendable () -> String? = { nil }) throws -> MetricsEndpoint? {
        guard let metrics = self.metrics else { return nil }
        guard let endpoint = Endpoint(metrics) else { throw ValidationError("--metrics takes host:port, not '\(metrics)'") }
        let registry = PrometheusCollectorRegistry()
        // The package names its metrics the Prometheus way already.
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return MetricsEndpoint(host: endpoint.host, port: endpoint.port, registry: registry, logger: logger, health: health)
    }

    /// Writes `summary` as JSON to `--stats-json`, if given.
    func writeStats(_ summary: [String: any Sendable]) throws {
        guard let path = self.statsJSON else { return }
        let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted])
        guard FileManager.default.createFile(atPath: path, contents: data + Data("\n".utf8)) else {
            throw CLIError("cannot write \(path)")
        }
    }
}

/// `GET /metrics` in the Prometheus text format and `GET /health`, as a `Service`.
final class MetricsEndpoint: Service, Sendable {
    let host: String
    let port: Int
    let registry: PrometheusCollectorRegistry
    let logger: Logger
    let health: @Sendable () -> String?
    private let boundPort = Mutex<Int?>(nil)
    /// Told once: `nil` when the port is bound, or why it cannot be.
    private let started = Mutex<AsyncStream<String?>.Continuation?>(nil)

    /// Serves in a task, returned once the port is bound. A bind failure is thrown, naming the address and the
    /// cause: no command runs without the metrics it was asked for.
    func start() async throws -> Task<Void, Never> {
        let (outcome, report) = AsyncStream.makeStream(of: String?.self)
        self.started.withLock { $0 = report }
        let task = Task {
            do {
                try await self.run()
            } catch {
                report.yield(TransportError.plainCause(error))
            }
            report.finish()
        }
        for await failure in outcome {
            guard let failure else { return task }
            throw CLIError("cannot serve metrics on \(self.host):\(self.port): \(failure)")
        }
        throw CLIError("cannot serve metrics on \(self.host):\(self.port): the server ended")
    }

    /// The port it listens on, once it does (for `--metrics 127.0.0.1:0`).
    func localPort() async -> Int? {
        for _ in 0..<6000 {
            if let port = self.boundPort.withLock({ $0 }) { return port }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    init(host: String, port: Int, registry: PrometheusCollectorRegistry, logger: Logger, health: @escaping @Sendable () -> String? = { nil }) {
        self.host = host
        self.port = port
        self.registry = registry
        self.logger = logger
        self.health = health
    }

    func run() async throws {
        let router = Router()
        let registry = self.registry
        router.get("/metrics") { _, _ -> Response in
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer))
            )
        }
        let health = self.health
        router.get("/health") { _, _ -> Response in
            guard let problem = health() else { return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
            return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: problem + "\n")))
        }
        let application = Application(
            router: router,
            configuration: .init(address: .hostname(self.host, port: self.port)),
            onServerRunning: { channel in
                self.boundPort.withLock { $0 = channel.localAddress?.port }
                _ = self.started.withLock { $0?.yield(nil) }
            },
            logger: self.logger
        )
        try await application.run()
    }
}
