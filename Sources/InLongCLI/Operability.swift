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
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .warning

    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics, and /health.")
    var metrics: String?

    @Option(name: .customLong("stats-json"), help: "Write the final summary as JSON to this file, for scripts.")
    var statsJSON: String?

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = self.logLevel
        return logger
    }

    /// The metrics endpoint to run beside the command, once metrics are bootstrapped to it; `nil` without
    /// `--metrics`.
    func metricsEndpoint(logger: Logger) throws -> MetricsEndpoint? {
        guard let metrics = self.metrics else { return nil }
        guard let endpoint = Endpoint(metrics) else { throw ValidationError("--metrics takes host:port, not '\(metrics)'") }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusNamingFactory(registry: registry))
        return MetricsEndpoint(host: endpoint.host, port: endpoint.port, registry: registry, logger: logger)
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
    private let boundPort = Mutex<Int?>(nil)

    /// The port it listens on, once it does (for `--metrics 127.0.0.1:0`).
    func localPort() async -> Int? {
        for _ in 0..<6000 {
            if let port = self.boundPort.withLock({ $0 }) { return port }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    init(host: String, port: Int, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.host = host
        self.port = port
        self.registry = registry
        self.logger = logger
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
        router.get("/health") { _, _ in "ok\n" }
        let application = Application(
            router: router,
            configuration: .init(address: .hostname(self.host, port: self.port)),
            onServerRunning: { channel in self.boundPort.withLock { $0 = channel.localAddress?.port } },
            logger: self.logger
        )
        try await application.run()
    }
}

/// Prometheus names for the package's metrics: dots become underscores, counters end in `_total`, timers in
/// `_seconds`.
struct PrometheusNamingFactory: MetricsFactory {
    let base: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry) {
        self.base = PrometheusMetricsFactory(registry: registry)
    }

    static func name(_ label: String, suffix: String = "") -> String {
        var name = String(label.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" })
        if !suffix.isEmpty, !name.hasSuffix(suffix) { name += suffix }
        return name
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        self.base.makeCounter(label: Self.name(label, suffix: "_total"), dimensions: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        self.base.makeFloatingPointCounter(label: Self.name(label, suffix: "_total"), dimensions: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        self.base.makeRecorder(label: Self.name(label), dimensions: dimensions, aggregate: aggregate)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        self.base.makeMeter(label: Self.name(label), dimensions: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        self.base.makeTimer(label: Self.name(label, suffix: "_seconds"), dimensions: dimensions)
    }

    func destroyCounter(_ handler: any CounterHandler) { self.base.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { self.base.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { self.base.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { self.base.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { self.base.destroyTimer(handler) }
}
