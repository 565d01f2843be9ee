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
    private struct State {
        /// The bound port; `nil` until bound, or for good once the server ended.
        var port: Int?
        var ended = false
        var portWaiters: [CheckedContinuation<Int?, Never>] = []
        /// Told once: `nil` when the port is bound, or why it cannot be.
        var started: AsyncStream<String?>.Continuation?
    }

    private let state = Mutex(State())

    /// Serves in a task, returned once the port is bound. A bind failure is thrown, naming the address and the
    /// cause: no command runs without the metrics it was asked for.
    func start() async throws -> Task<Void, Never> {
        let (outcome, report) = AsyncStream.makeStream(of: String?.self)
        self.modify { $0.started = report }
        let task = Task {
            do {
                try await self.run()
            } catch {
                report.yield(TransportError.plainCause(error))
            }
            report.finish()
        }
        for await failure in outcome {
            guard let failure else {
                // Said once, with the port bound (for `--metrics HOST:0` the only way to learn it).
                let port = self.modify { $0.port } ?? self.port
                FileHandle.standardError.write(Data("metrics on http://\(self.host):\(port)/metrics, health on /health\n".utf8))
                return task
            }
            throw CLIError("cannot serve metrics on \(self.host):\(self.port): \(failure)")
        }
        throw CLIError("cannot serve metrics on \(self.host):\(self.port): the server ended")
    }

    /// The port it listens on, once it does (for `--metrics 127.0.0.1:0`).
    func localPort() async -> Int? {
        await withCheckedContinuation { continuation in
            let known = self.modify { state -> Int?? in
                if state.port != nil || state.ended { return .some(state.port) }
                state.portWaiters.append(continuation)
                return .none
            }
            if let known { continuation.resume(returning: known) }
        }
    }

    /// The server listens on `port`, or (`nil`) ended: tells whoever waits for it.
    private func settle(port: Int?) {
        let (waiters, started) = self.modify { state in
            defer { state.portWaiters = [] }
            if let port { state.port = port } else { state.ended = true }
            return (state.portWaiters, state.started)
        }
        for waiter in waiters { waiter.resume(returning: port) }
        if port != nil { started?.yield(nil) }
    }

    private func modify<Value>(_ body: (inout State) -> Value) -> Value {
        self.state.withLock { body(&$0) }
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
            onServerRunning: { channel in self.settle(port: channel.localAddress?.port) },
            logger: self.logger
        )
        defer { self.settle(port: nil) }
        try await application.run()
    }
}
