import ArgumentParser
import Foundation
import InLongAgent
import InLongDataProxy
import InLongTransport
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Options that say where records go.
struct TargetOptions: ParsableArguments {
    @Option(name: .customLong("proxy"), help: "A DataProxy host:port (repeat for several).")
    var proxies: [String] = []

    @Option(help: "The Manager's proxy-list URL, without the group id.")
    var manager: String?

    @Flag(help: "Send over DataProxy's HTTP API (/dataproxy/message): the --proxy ports are its HTTP ports.")
    var http = false

    @Flag(help: "Send over DataProxy's HTTP API through HTTPS (implies --http).")
    var https = false

    @Option(help: "PEM certificates to trust for HTTPS proxies, instead of the system's (implies --https).")
    var proxyCa: String?

    @Option(help: "A PEM client certificate (chain) for HTTPS proxies; with --proxy-key (implies --https).")
    var proxyCert: String?

    @Option(help: "The PEM private key of --proxy-cert.")
    var proxyKey: String?

    @Option(help: "How an HTTPS proxy's certificate is checked: full (default), noHostname, or none (tests only); implies --https.")
    var proxyVerify: String?

    @Option(help: "Manager Basic auth as secretId:secretKey.")
    var auth: String?

    @Option(help: "The tenant header for the Manager.")
    var tenant: String?

    @Option(help: "PEM certificates to trust for an https:// Manager, instead of the system's.")
    var managerCa: String?

    @Option(help: "A PEM client certificate (chain) for the Manager; with --manager-key.")
    var managerCert: String?

    @Option(help: "The PEM private key of --manager-cert.")
    var managerKey: String?

    @Option(help: "How the Manager's certificate is checked: full (default), noHostname, or none (tests only).")
    var managerVerify: String?

    func credentials() throws -> (secretID: String, secretKey: String)? {
        guard let auth = self.auth else { return nil }
        guard let credentials = DataProxyClient.Configuration.Manager.credentials(parsing: auth) else { throw ValidationError("--auth takes secretId:secretKey") }
        return credentials
    }
}

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send each line of the files (or standard input) as a record.",
        discussion: """
            Examples:
              inlong send --group g --stream s --proxy 127.0.0.1:46801 app.log
              tail -F app.log | inlong send --group g --stream s --manager "$MANAGER"

            $MANAGER stands for the Manager's proxy-list URL, e.g.
            http://manager:8083/inlong/manager/openapi/dataproxy/getIpList
            """
    )

    @Option(help: "The InLong group.")
    var group: String

    @Option(help: "The InLong stream.")
    var stream: String

    @OptionGroup var target: TargetOptions

    @Option(help: "A JSON or YAML file of client settings; INLONG_* environment variables override it, flags override both.")
    var config: String?

    @Flag(help: "Do not compress batches.")
    var noCompression = false

    @Option(help: "A spool directory: every line read is written there before it is sent, and what a killed run left is sent by the next run on the same directory.")
    var spool: String?

    @Option(help: "With --spool: the most MiB the spool grows to by lines read while no proxy takes them and memory is full (then reading waits). Defaults to 1024.")
    var spoolMaxMib: Int?

    @Option(help: "On SIGINT or SIGTERM: seconds to keep sending what was read before failing the rest.")
    var grace = 5

    @Option(help: "Seconds with no proxy reachable, or none answering, after which to stop, fail what is left and exit non-zero.")
    var unreachableTimeout = 60

    @Option(help: "Lines longer than this many bytes are overlong (the newline and a \\r before it not counted).")
    var maxLineLength = 4 << 20

    @Option(help: "What becomes of an overlong line: truncate (to --max-line-length), skip, or fail (stop reading there, deliver what was read, exit 1). Counted in the summary either way.")
    var overlong = "truncate"

    @Argument(help: "Files to send; standard input when none.")
    var files: [String] = []

    @Flag(help: "Check the settings (flags, INLONG_* variables, --config), print them and exit: 0 when valid, 64 when not.")
    var check = false

    @OptionGroup var operatorOptions: OperatorOptions

    @OptionGroup var audit: AuditTargetOptions

    func validate() throws {
        try validateName(self.group, option: "--group")
        try validateName(self.stream, option: "--stream")
        guard LineSplitter.OverlongPolicy(rawValue: self.overlong) != nil else {
            throw ValidationError("--overlong takes truncate, skip or fail")
        }
        guard self.maxLineLength > 0 else { throw ValidationError("--max-line-length takes a positive number of bytes") }
        if let mib = self.spoolMaxMib {
            guard mib > 0 else { throw ValidationError("--spool-max-mib takes a positive number of MiB") }
            guard self.spool != nil else { throw ValidationError("--spool-max-mib needs --spool") }
        }
    }

    func run() async throws {
        var configuration = try await readClientConfiguration(file: self.config, target: self.target, group: self.group)
        if self.noCompression { configuration.batching.compressionThreshold = nil }
        configuration.audit = self.audit.applied(to: configuration.audit)
        if let directory = self.spool {
            var spool = configuration.spool ?? .init(directory: directory)
            spool.directory = directory
            if let mib = self.spoolMaxMib { spool.maxBytes = mib << 20 }
            configuration.spool = spool
        }
        if self.check {
            print((["group: \(self.group)", "stream: \(self.stream)"] + effectiveSettings(configuration)).joined(separator: "\n"))
            return
        }
        let sources = self.files.isEmpty ? ["-"] : self.files
        for file in sources where file != "-" {
            let descriptor = open(file, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw CLIError("cannot read \(file): \(String(cString: strerror(errno)).lowercased())") }
            close(descriptor)
        }
        // The client's warnings (a proxy that cannot be reached) are what the reachability watch says in plain
        // words at once: shown again only when asked for with --log-level.
        let logger = self.operatorOptions.logger("inlong.send", level: .error)
        // Unhealthy while no proxy is reachable or answering (once the watch told it): the reason, as told.
        let health = HealthProblem()
        let metrics = try await self.operatorOptions.metricsEndpoint(logger: logger, health: { health.current })?.start()
        defer { metrics?.cancel() }
        let (clientConfiguration, group, stream) = (configuration, self.group, self.stream)
        let grace = Duration.seconds(max(self.grace, 0))
        let unreachableTimeout = Duration.seconds(max(self.unreachableTimeout, 1))
        // SIGINT or SIGTERM shuts the group down gracefully: reading stops, and what was read has `--grace`
        // seconds to be acked.
        let lineReader = SendLineReader(maxLineLength: self.maxLineLength, overlong: LineSplitter.OverlongPolicy(rawValue: self.overlong) ?? .truncate)
        let job = SendJob { interruptions in
            var reader = lineReader
            var outcome = try await sendLines(
                configuration: clientConfiguration,
                group: group,
                stream: stream,
                grace: grace,
                interruptions: interruptions,
                unreachableTimeout: unreachableTimeout,
                health: health,
                logger: logger
            ) { emit, stop in
                for file in sources where reader.failure == nil {
                    let handle = file == "-" ? FileHandle.standardInput : FileHandle(forReadingAtPath: file)!
                    try await reader.read(handle, name: file == "-" ? "standard input" : file, stop: stop, emit)
                }
            }
            outcome.reading = reader
            return outcome
        }
        let services = ServiceGroup(
            configuration: .init(
                services: [.init(service: job, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await services.run()
        guard let outcome = job.outcome else { throw CLIError("the send ended without an outcome") }
        print(outcome.summary)
        try self.operatorOptions.writeStats([
            "lines": outcome.lines,
            "accepted": outcome.statistics.accepted,
            "acked": outcome.statistics.acked,
            "failed": outcome.failed,
            "bytes": outcome.bytes,
            "seconds": outcome.seconds,
            "interrupted": outcome.interrupted,
            "failures": outcome.statistics.failures,
            "written": outcome.statistics.sent,
            "failedNotSent": outcome.statistics.failedNotSent + (outcome.records - outcome.statistics.accepted),
            "replayed": outcome.statistics.replayedRecords,
            "failedPossiblySent": outcome.statistics.failedPossiblySent,
            "overlongLines": outcome.reading.overlongLines,
            "overlong": outcome.reading.overlong.rawValue,
            "maxLineLength": outcome.reading.maxLineLength,
            "emptyLines": outcome.reading.emptyLines,
        ])
        if let failure = outcome.reading.failure { throw CLIError(failure) }
        if outcome.failed > 0 || outcome.statistics.acked != outcome.records {
            throw ExitCode(1)
        }
    }
}

/// Runs a client, feeds it with `produce`, waits for every ack, and reports.
struct SendOutcome {
    var statistics: DataProxyClientStatistics
    var seconds: Double
    var bytes: Int
    /// Lines read; every one ends acked or failed (refused after an interruption counts as failed).
    var lines = 0
    var interrupted = false
    /// Stopped because no proxy could be reached.
    var unreachable = false
    /// How the lines were read: overlong and empty lines, and an overlong line that stopped the read.
    var reading = SendLineReader()

    /// Records to account for: the lines read, and what a previous run left in the spool.
    var records: Int { self.lines + self.statistics.replayedRecords }
    var failed: Int { self.records - self.statistics.acked }

    var summary: String {
        let statistics = self.statistics
        let refused = self.records - statistics.accepted
        let replayed = statistics.replayedRecords > 0 ? " and \(statistics.replayedRecords) a previous run left in the spool" : ""
        return """
            \(self.unreachable ? "no proxy reachable: " : self.interrupted ? "interrupted: " : "")read \(self.lines) lines\(replayed), accepted \(statistics.accepted) records (\(self.bytes) bytes), \
            written \(statistics.sent) in \(String(format: "%.2f", self.seconds)) s: \
            acked \(statistics.acked), failed \(self.failed)\(refused > 0 ? " (\(refused) never accepted)" : "")\(failureSummary(statistics)); \
            \(formatRate(Double(statistics.acked), seconds: self.seconds))records/s, \(megabytes(self.bytes, seconds: self.seconds)); \
            ack latency p50 \(milliseconds(statistics.ackLatencyP50)), p99 \(milliseconds(statistics.ackLatencyP99)); \
            retries \(statistics.retries)\(self.readingSummary)
            """
    }

    /// Lines that were not sent as they were: nothing is changed or left out unsaid.
    private var readingSummary: String {
        var parts: [String] = []
        let reading = self.reading
        if reading.overlongLines > 0 {
            let fate = switch reading.overlong {
            case .truncate: "truncated to \(reading.maxLineLength) bytes"
            case .skip: "skipped"
            case .fail: "stopped the read"
            }
            parts.append("\(reading.overlongLines) \(reading.overlongLines == 1 ? "line" : "lines") over \(reading.maxLineLength) bytes \(fate)")
        }
        if reading.emptyLines > 0 { parts.append("\(reading.emptyLines) empty \(reading.emptyLines == 1 ? "line" : "lines") left out") }
        return parts.map { "; " + $0 }.joined()
    }
}

/// Set once an interruption arrived.
final class InterruptFlag: Sendable {
    let value = Atomic(false)
}

/// What makes a command unhealthy now (`/health` answers 503 with it), set by the task that watches for it.
final class HealthProblem: Sendable {
    private let problem = Mutex<String?>(nil)

    var current: String? { self.problem.withLock { $0 } }

    func set(_ problem: String?) { self.problem.withLock { $0 = problem } }
}

/// Sends the lines `produce` emits; on an interruption, stops reading (`produce` is given a `stop` to check),
/// gives what was accepted `grace` to be acked, and fails the rest.
func sendLines(
    configuration: DataProxyClient.Configuration,
    group: String,
    stream: String,
    grace: Duration = .seconds(5),
    interruptions: AsyncStream<Void>? = nil,
    unreachableNotice: Duration = .seconds(5),
    unreachableTimeout: Duration? = nil,
    health: HealthProblem? = nil,
    logger: Logger = Logger.disabled,
    produce: (_ emit: LineEmitter, _ stop: @escaping @Sendable () -> Bool) async throws -> Void
) async throws -> SendOutcome {
    let start = ContinuousClock.now
    let client = DataProxyClient(configuration: configuration, logger: logger)
    let interrupted = InterruptFlag()
    let gaveUp = InterruptFlag()
    var bytes = 0
    var lines = 0
    try await withThrowingTaskGroup(of: Bool.self) { tasks in
        tasks.addTask {
            // Closed by this function alone: at an interruption, with `grace`.
            try await client.runUntilClosed()
            return true
        }
        if let interruptions {
            tasks.addTask {
                for await _ in interruptions {
                    interrupted.value.store(true, ordering: .relaxed)
                    client.close(deadline: grace)
                    break
                }
                return false
            }
        }
        // Tells, within `unreachableNotice`, why no proxy can be reached or why none answers, and gives up after
        // `unreachableTimeout` of either.
        tasks.addTask {
            let watch = ReachabilityWatch(notice: unreachableNotice, timeout: unreachableTimeout)
            if await watch.run(statistics: { client.statistics() }, problem: { health?.set($0) }) {
                gaveUp.value.store(true, ordering: .relaxed)
                interrupted.value.store(true, ordering: .relaxed)
                client.close(deadline: .zero)
            }
            return false
        }
        let progress = Progress {
            let statistics = client.statistics()
            let spilled = statistics.spilledRecords > 0 ? " (\(statistics.spilledRecords) on disk only)" : ""
            let spooled = client.configuration.spool == nil ? "" : "  spooled \(statistics.spoolBytes >> 20) MiB\(spilled)"
            return "accepted \(statistics.accepted)  acked \(statistics.acked)  failed \(statistics.failed)  held \(statistics.heldRecords)\(spooled)"
        }
        defer { progress.finish() }
        do {
            let emitter = LineEmitter(
                lines: { chunk in
                    bytes += chunk.reduce(0) { $0 + $1.readableBytes }
                    lines += chunk.count
                    try await client.send(contentsOf: chunk, group: group, stream: stream)
                },
                delimited: { run in
                    // Walked in place by the client: no buffer per line.
                    do {
                        let appended = try await client.appendDelimited(run, group: group, stream: stream)
                        bytes += appended.bytes
                        lines += appended.ids.count
                        return appended.empty
                    } catch {
                        // Every line read counts, those refused included.
                        let counted = DelimitedRecords.count(run)
                        bytes += counted.bytes
                        lines += counted.records
                        throw error
                    }
                }
            )
            try await produce(emitter, { interrupted.value.load(ordering: .relaxed) })
        } catch let error as DataProxyError {
            // Refused because an interruption closed the client: the rest counts as failed.
            if !(interrupted.value.load(ordering: .relaxed) && error.code == .shutDown) {
                client.close(deadline: .zero)
                throw CLIError("\(error)")
            }
        } catch {
            client.close(deadline: .zero)
            throw error
        }
        if !interrupted.value.load(ordering: .relaxed) {
            _ = await client.flush(timeout: .seconds(300))
            client.close(deadline: .seconds(60))
        }
        // Until the client's run ended (the interruption watcher is cancelled then).
        while let runEnded = try await tasks.next(), !runEnded {}
        tasks.cancelAll()
    }
    let seconds = secondsSince(start)
    return SendOutcome(
        statistics: client.statistics(),
        seconds: seconds,
        bytes: bytes,
        lines: lines,
        interrupted: interrupted.value.load(ordering: .relaxed),
        unreachable: gaveUp.value.load(ordering: .relaxed)
    )
}

/// `inlong send`'s work as a `Service`: a graceful shutdown (SIGINT, SIGTERM) becomes the interruption that stops
/// reading and closes the client with its grace; the outcome is kept for the summary.
final class SendJob: Service, Sendable {
    private let body: @Sendable (AsyncStream<Void>) async throws -> SendOutcome
    private let result = Mutex<SendOutcome?>(nil)

    init(_ body: @escaping @Sendable (AsyncStream<Void>) async throws -> SendOutcome) {
        self.body = body
    }

    var outcome: SendOutcome? { self.result.withLock { $0 } }

    func run() async throws {
        let (interruptions, interrupt) = AsyncStream.makeStream(of: Void.self)
        let outcome = try await withGracefulShutdownHandler {
            try await self.body(interruptions)
        } onGracefulShutdown: {
            interrupt.yield()
        }
        self.result.withLock { $0 = outcome }
    }
}
