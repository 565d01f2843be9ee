import ArgumentParser
import Configuration
import Foundation
import InLongAudit
import InLongDataProxyReceiver
import InLongTransport
import InLongWire
import NIOCore
import Logging
import NIOSSL
import ServiceLifecycle
import Synchronization
import UnixSignals

struct ReceiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "receive",
        abstract: "Run a DataProxy-compatible receiver until SIGINT or SIGTERM, then print totals.",
        discussion: """
            Examples:
              inlong receive              # 127.0.0.1:46801, to inlong-received.jsonl
              inlong receive --listen 0.0.0.0:46801 --manager-port 8083 --out -
              inlong receive --count-only # store nothing (benchmarks)
            """
    )

    @Option(help: "The address to listen on, host:port (default 127.0.0.1:46801).")
    var listen: String?

    @Option(help: "A JSON or YAML file of receiver settings; INLONG_RECEIVER_* environment variables override it, flags override both.")
    var config: String?

    @Option(help: "Also serve the Manager's endpoints on this port (0 picks one): the proxy list (the TCP port, and the --http-port as HTTP node), and with --audit-port the audit proxy list.")
    var managerPort: Int?

    @Option(help: "Also serve DataProxy's HTTP API (/dataproxy/message) on this port (0 picks one).")
    var httpPort: Int?

    @Option(help: "With --http-port: serve it over HTTPS with this PEM certificate (chain); with --http-key.")
    var httpCert: String?

    @Option(help: "The PEM private key of --http-cert.")
    var httpKey: String?

    @Option(help: "With --manager-port: also serve agents their tasks from this file (InLong's TaskResult JSON, read again at each request) and count their heartbeats.")
    var agentTasks: String?

    @Option(help: "JSON Lines file for the records, or '-' for standard output.")
    var out = "inlong-received.jsonl"

    @Flag(help: "Ack a request only once its records are fsynced to --out (group commit: one fsync covers every request written meanwhile; a connection's requests are then processed 16 at a time unless maxConcurrentRequests says more).")
    var fsync = false

    @Flag(help: "Count records without storing them.")
    var countOnly = false

    @Option(help: "Largest frame accepted, bytes.")
    var maxFrameSize: Int?

    @Option(help: "Heartbeat load to report (default: unknown, 0xFFFF).")
    var load: Int16?

    @Option(help: "The address the Manager endpoint hands out for this receiver (required when listening on all addresses).")
    var advertise: String?

    @Flag(help: "Append to an existing --out file.")
    var append = false

    @Flag(help: "Replace an existing --out file.")
    var overwrite = false

    @Flag(help: "Also write each record's body to standard output, one per line (summaries go to standard error).")
    var print = false

    @Flag(help: "Check the settings (flags, INLONG_RECEIVER_* variables, --config), print them and exit: 0 when valid, 64 when not.")
    var check = false

    @OptionGroup var faults: FaultOptions

    @OptionGroup var operatorOptions: OperatorOptions

    @OptionGroup var audit: AuditStandInOptions

    func validate() throws {
        let listen = self.listen ?? "127.0.0.1:46801"
        guard let endpoint = Endpoint(listen) else { throw ValidationError("--listen takes host:port, not '\(listen)'") }
        if self.managerPort != nil, self.advertise == nil, ["0.0.0.0", "::", "[::]"].contains(endpoint.host) {
            throw ValidationError("listening on all addresses: give --advertise HOST for the Manager endpoint to hand out")
        }
        if self.append, self.overwrite { throw ValidationError("give --append or --overwrite, not both") }
        if (self.httpCert == nil) != (self.httpKey == nil) { throw ValidationError("--http-cert and --http-key go together: give both or neither") }
        if self.fsync, self.countOnly || self.out == "-" { throw ValidationError("--fsync needs an --out file to sync") }
        if !self.countOnly, self.out != "-", !self.append, !self.overwrite, FileManager.default.fileExists(atPath: self.out) {
            throw ValidationError("\(self.out) exists: give --append or --overwrite")
        }
    }

    /// The receiver's settings, by precedence: flags, `INLONG_RECEIVER_*` environment variables, `--config`.
    func receiverConfiguration(environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> DataProxyReceiver.Configuration {
        var flags: [AbsoluteConfigKey: ConfigValue] = [:]
        if let listen = self.listen {
            let endpoint = try parseEndpoint(listen)
            flags["host"] = ConfigValue(.string(endpoint.host), isSecret: false)
            flags["port"] = ConfigValue(.int(endpoint.port), isSecret: false)
        }
        if let size = self.maxFrameSize { flags["maxFrameSize"] = ConfigValue(.int(size), isSecret: false) }
        if let advertise = self.advertise { flags["advertisedIP"] = ConfigValue(.string(advertise), isSecret: false) }
        if let port = self.managerPort { flags["manager.port"] = ConfigValue(.int(port), isSecret: false) }
        if let port = self.httpPort { flags["httpPort"] = ConfigValue(.int(port), isSecret: false) }
        if let load = self.load { flags["faults.load"] = ConfigValue(.int(Int(load)), isSecret: false) }
        if self.fsync { flags["fsync"] = ConfigValue(.bool(true), isSecret: false) }
        try refuseTypos(in: environment, keys: DataProxyReceiver.Configuration.settingKeys, prefix: "INLONG_RECEIVER")
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "flags", values: flags),
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: ["inlong", "receiver"]),
        ]
        if let file = self.config { providers.append(try await configFileProvider(file, keys: DataProxyReceiver.Configuration.settingKeys)) }
        var configuration: DataProxyReceiver.Configuration
        do {
            configuration = try DataProxyReceiver.Configuration(config: ConfigReader(providers: providers))
        } catch {
            throw ValidationError("\(error)")
        }
        // Acks after fsync: a connection's requests share fsyncs only if several are processed at once.
        if configuration.fsync, configuration.maxConcurrentRequests == 1 { configuration.maxConcurrentRequests = 16 }
        // Fault flags given on the command line win.
        let faults = try self.faults.faults()
        if self.faults.ackDelay != nil { configuration.faults.ackDelay = faults.ackDelay }
        if self.faults.dropAcks { configuration.faults.dropAcks = true }
        if self.faults.errorCode != nil { (configuration.faults.errorCode, configuration.faults.errorRate) = (faults.errorCode, faults.errorRate) }
        if self.faults.closeAfter != nil { configuration.faults.closeAfterFrames = faults.closeAfterFrames }
        if self.faults.stopReading { configuration.faults.stopReading = true }
        if let certificateFile = self.httpCert, let keyFile = self.httpKey {
            guard configuration.httpPort != nil else { throw ValidationError("--http-cert needs --http-port") }
            configuration.httpTLSConfiguration = try Self.serverTLS(certificateFile: certificateFile, keyFile: keyFile)
        }
        if let file = self.agentTasks {
            guard configuration.manager != nil else { throw ValidationError("--agent-tasks needs --manager-port") }
            configuration.manager?.agentTasksFile = file
        }
        return configuration
    }

    func run() async throws {
        let configuration = try await self.receiverConfiguration()
        if self.check {
            Swift.print(Self.settings(configuration).joined(separator: "\n"))
            return
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
                jsonSink = try JSONLinesSink(url: URL(fileURLWithPath: self.out), append: self.append, fsync: configuration.fsync)
            } catch {
                throw CLIError("cannot write \(self.out): \(error)")
            }
            sink = jsonSink!
        }
        let logger = self.operatorOptions.logger("inlong.receive")
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        // Bound before the receiver starts: a busy metrics port is fatal, named, and never taken for the receiver's.
        // The endpoint bootstraps metrics, so it comes before the receiver that reports to them; its health reads
        // the receiver once there is one.
        let served = Mutex<DataProxyReceiver?>(nil)
        let metrics = try await self.operatorOptions.metricsEndpoint(logger: logger, health: {
            served.withLock { $0 }?.statistics().sinkFailure.map { "the sink fails: \($0)" }
        })?.start()
        defer { metrics?.cancel() }
        let standIn = self.audit.makeStandIn(host: configuration.host, logger: logger)
        let stored = standIn.map { AuditingSink(inner: sink, collector: $0.collector) as any DataProxyReceiverSink } ?? sink
        let receiver = DataProxyReceiver(configuration: configuration, sink: self.print ? PrintingSink(inner: stored) : stored, logger: logger)
        served.withLock { $0 = receiver }
        services.append(.init(service: receiver))
        services += standIn?.services ?? []
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        let announce = Task {
            guard let address = try? await receiver.localAddress() else { return }
            var line = "listening on \(address.ipAddress ?? configuration.host):\(address.port ?? 0)"
            if let manager = receiver.manager, let url = try? await manager.baseURL() { line += ", Manager endpoint \(url)/{groupId}" }
            if configuration.httpPort != nil, let http = try? await receiver.httpLocalAddress() {
                line += ", \(configuration.httpTLSConfiguration == nil ? "HTTP" : "HTTPS") \(http.ipAddress ?? configuration.host):\(http.port ?? 0)"
            }
            FileHandle.standardError.write(Data((line + "\n").utf8))
            if let standIn, let audit = try? await standIn.collector.localAddress() {
                // The Manager endpoint lists the audit proxy stand-in as the audit proxy of every component.
                receiver.manager?.setAuditProxies([.init(ip: configuration.advertisedIP ?? audit.ipAddress ?? configuration.host, port: audit.port ?? 0)])
                let line = await standIn.announcement(address: audit)
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        }
        let start = ContinuousClock.now
        do {
            try await group.run()
        } catch let error as ReceiverError {
            throw CLIError("\(error)")
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
        try self.operatorOptions.writeStats([
            "records": statistics.records,
            "messages": statistics.messages,
            "frames": statistics.frames,
            "bytes": statistics.bytes,
            "connections": statistics.acceptedConnections,
            "seconds": Int(seconds),
            "errors": Dictionary(uniqueKeysWithValues: statistics.errors.map { (String($0.key.rawValue), $0.value) }),
        ])
    }
}

extension ReceiveCommand {
    /// A server's TLS from a PEM certificate chain and its key; a file that cannot be read is named.
    static func serverTLS(certificateFile: String, keyFile: String) throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw ValidationError("--http-cert: cannot read PEM certificates from \(certificateFile): \(error)")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw ValidationError("--http-key: cannot read a PEM private key from \(keyFile): \(error)")
        }
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }

    /// The receiver's effective settings, one `key: value` per line in the file's key names, as `--check` prints.
    static func settings(_ configuration: DataProxyReceiver.Configuration) -> [String] {
        var lines = [
            "host: \(configuration.host)",
            "port: \(configuration.port)",
            "maxFrameSize: \(configuration.maxFrameSize)",
            "maxConnections: \(configuration.maxConnections)",
            "maxConcurrentRequests: \(configuration.maxConcurrentRequests)",
            "maxQueuedRequests: \(configuration.maxQueuedRequests)",
            "readIdleTimeout: \(configuration.readIdleTimeout.map(seconds) ?? "none")",
            "knownGroups: \(configuration.knownGroups.map { $0.sorted().joined(separator: ", ") } ?? "any")",
            "fsync: \(configuration.fsync)",
        ]
        if let ip = configuration.advertisedIP { lines.append("advertisedIP: \(ip)") }
        if let port = configuration.httpPort { lines.append("httpPort: \(port)\(configuration.httpTLSConfiguration == nil ? "" : " (HTTPS)")") }
        if let manager = configuration.manager { lines += ["manager.port: \(manager.port)", "manager.clusterId: \(manager.clusterID)"] }
        let faults = configuration.faults
        if let delay = faults.ackDelay { lines.append("faults.ackDelay: \(seconds(delay))") }
        if faults.dropAcks { lines.append("faults.dropAcks: true") }
        if let code = faults.errorCode { lines += ["faults.errorCode: \(code.rawValue)", "faults.errorRate: \(faults.errorRate)"] }
        if let frames = faults.closeAfterFrames { lines.append("faults.closeAfterFrames: \(frames)") }
        if faults.stopReading { lines.append("faults.stopReading: true") }
        if let load = faults.load { lines.append("faults.load: \(load)") }
        return lines
    }
}

/// Fault injection, for people testing their own clients against the receiver.
struct FaultOptions: ParsableArguments {
    @Option(help: "Answer each data request only after this long, with its unit: 200ms, 1.5s.")
    var ackDelay: String?

    @Flag(help: "Store data requests but never answer them.")
    var dropAcks = false

    @Option(help: "Answer data requests with this DataProxy error code instead of storing them (e.g. 1 for SINK_SERVICE_UNREADY).")
    var errorCode: Int?

    @Option(help: "With --error-code: the fraction (0 to 1) of requests answered with it.")
    var errorRate = 1.0

    @Option(help: "Close each connection after it delivered this many data requests.")
    var closeAfter: Int?

    @Flag(help: "Stop reading from every connection (the client's writes back up).")
    var stopReading = false

    func faults() throws -> DataProxyReceiver.Faults {
        var faults = DataProxyReceiver.Faults()
        if let delay = self.ackDelay {
            // A unit is required: a bare number meant milliseconds here before, and seconds in files.
            guard delay.last?.isLetter == true, let duration = Duration(setting: delay) else {
                throw ValidationError("--ack-delay takes a duration with its unit, such as 200ms or 1.5s, not '\(delay)'")
            }
            faults.ackDelay = duration
        }
        faults.dropAcks = self.dropAcks
        if let code = self.errorCode {
            guard code >= 0 else { throw ValidationError("--error-code takes a DataProxy error code") }
            faults.errorCode = DataProxyResultCode(rawValue: code)
        }
        guard (0...1).contains(self.errorRate) else { throw ValidationError("--error-rate takes a fraction from 0 to 1") }
        faults.errorRate = self.errorRate
        if let count = self.closeAfter {
            guard count > 0 else { throw ValidationError("--close-after takes a positive count") }
            faults.closeAfterFrames = count
        }
        faults.stopReading = self.stopReading
        return faults
    }
}

/// Writes each record's body to standard output, one per line, then hands the message on.
final class PrintingSink: DataProxyReceiverSink {
    let inner: any DataProxyReceiverSink
    private let output = Mutex(FileHandle.standardOutput)

    init(inner: any DataProxyReceiverSink) {
        self.inner = inner
    }

    var needsRecords: Bool { true }

    func write(_ message: ReceivedMessage) async throws {
        var bytes: [UInt8] = []
        for record in message.records {
            bytes += record.body.readableBytesView
            bytes.append(UInt8(ascii: "\n"))
        }
        self.output.withLock { try? $0.write(contentsOf: bytes) }
        try await self.inner.write(message)
    }

    func flush() async throws {
        try await self.inner.flush()
    }
}
