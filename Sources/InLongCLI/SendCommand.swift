import ArgumentParser
import Foundation
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

    @Option(help: "Manager Basic auth as secretId:secretKey.")
    var auth: String?

    @Option(help: "The tenant header for the Manager.")
    var tenant: String?

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

    @Option(help: "On SIGINT or SIGTERM: seconds to keep sending what was read before failing the rest.")
    var grace = 5

    @Option(help: "Seconds with no proxy reachable, or none answering, after which to stop, fail what is left and exit non-zero.")
    var unreachableTimeout = 60

    @Argument(help: "Files to send; standard input when none.")
    var files: [String] = []

    @Flag(help: "Check the settings (flags, INLONG_* variables, --config), print them and exit: 0 when valid, 64 when not.")
    var check = false

    @OptionGroup var operatorOptions: OperatorOptions

    func validate() throws {
        try validateName(self.group, option: "--group")
        try validateName(self.stream, option: "--stream")
    }

    func run() async throws {
        var configuration = try await readClientConfiguration(file: self.config, target: self.target, group: self.group)
        if self.noCompression { configuration.batching.compressionThreshold = nil }
        if let directory = self.spool {
            var spool = configuration.spool ?? .init(directory: directory)
            spool.directory = directory
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
        let metrics = try await self.operatorOptions.metricsEndpoint(logger: logger)?.start()
        defer { metrics?.cancel() }
        let (clientConfiguration, group, stream) = (configuration, self.group, self.stream)
        let grace = Duration.seconds(max(self.grace, 0))
        let unreachableTimeout = Duration.seconds(max(self.unreachableTimeout, 1))
        // SIGINT or SIGTERM shuts the group down gracefully: reading stops, and what was read has `--grace`
        // seconds to be acked.
        let job = SendJob { interruptions in
            try await sendLines(
                configuration: clientConfiguration,
                group: group,
                stream: stream,
                grace: grace,
                interruptions: interruptions,
                unreachableTimeout: unreachableTimeout,
                logger: logger
            ) { emit, stop in
                for file in sources {
                    let handle = file == "-" ? FileHandle.standardInput : FileHandle(forReadingAtPath: file)!
                    try await forEachLineChunk(handle, stop: stop, emit)
                }
            }
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
        ])
        if outcome.failed > 0 || outcome.statistics.acked != outcome.records {
            throw ExitCode(1)
        }
    }
}

/// Reads a file in 1 MiB chunks and hands its lines (without the newline) in batches, as slices of the chunk.
/// A line longer than `maxLineLength` ends the read with an error.
func forEachLineChunk(
    _ handle: FileHandle,
    maxLineLength: Int = 4 << 20,
    stop: @escaping @Sendable () -> Bool = { false },
    _ emit: ([ByteBuffer]) async throws -> Void
) async throws {
    let descriptor = handle.fileDescriptor
    var carry = ByteBuffer()
    var lines: [ByteBuffer] = []
    while !stop() {
        // A pipe or terminal may stay silent: wait in slices, so that `stop` ends the read.
        var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let polled = poll(&ready, 1, 100)
        if polled == 0 { continue }
        if polled < 0, errno != EINTR { throw CLIError("cannot read: \(String(cString: strerror(errno)))") }
        var buffer = ByteBufferAllocator().buffer(capacity: carry.readableBytes + (1 << 20))
        buffer.writeImmutableBuffer(carry)
        let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1 << 20) { destination in
            while true {
                let count = read(descriptor, destination.baseAddress, destination.count)
                if count >= 0 { return count }
                if errno != EINTR { throw CLIError("cannot read: \(String(cString: strerror(errno)))") }
            }
        }
        if count == 0 { break }
        // Line ends found with memchr over the chunk's bytes; the lines share its storage.
        lines.removeAll(keepingCapacity: true)
        let consumed = buffer.withUnsafeReadableBytes { bytes -> Int in
            guard let base = bytes.baseAddress else { return 0 }
            var start = 0
            while start < bytes.count, let found = memchr(base + start, Int32(UInt8(ascii: "\n")), bytes.count - start) {
                let newline = base.distance(to: UnsafeRawPointer(found))
                var end = newline
                if end > start, bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                if end > start { lines.append(buffer.getSlice(at: buffer.readerIndex + start, length: end - start)!) }
                start = newline + 1
            }
            return start
        }
        buffer.moveReaderIndex(forwardBy: consumed)
        // A line no frame can carry is an error, not a reason to read the rest of the file into memory.
        guard buffer.readableBytes <= maxLineLength else {
            throw CLIError("a line is longer than \(maxLineLength) bytes (records must fit a frame)")
        }
        carry = buffer
        if !lines.isEmpty { try await emit(lines) }
    }
    if carry.readableBytes > 0 { try await emit([carry]) }
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
            retries \(statistics.retries)
            """
    }
}

/// Set once an interruption arrived.
final class InterruptFlag: Sendable {
    let value = Atomic(false)
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
    logger: Logger = Logger(label: "inlong.send", factory: { _ in SwiftLogNoOpLogHandler() }),
    produce: (_ emit: ([ByteBuffer]) async throws -> Void, _ stop: @escaping @Sendable () -> Bool) async throws -> Void
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
            if await watch.run(statistics: { client.statistics() }) {
                gaveUp.value.store(true, ordering: .relaxed)
                interrupted.value.store(true, ordering: .relaxed)
                client.close(deadline: .zero)
            }
            return false
        }
        let progress = Progress {
            let statistics = client.statistics()
            let spooled = client.configuration.spool == nil ? "" : "  spooled \(statistics.spoolBytes >> 20) MiB"
            return "accepted \(statistics.accepted)  acked \(statistics.acked)  failed \(statistics.failed)  held \(statistics.heldRecords)\(spooled)"
        }
        defer { progress.finish() }
        do {
            try await produce({ chunk in
                bytes += chunk.reduce(0) { $0 + $1.readableBytes }
                lines += chunk.count
                try await client.send(contentsOf: chunk, group: group, stream: stream)
            }, { interrupted.value.load(ordering: .relaxed) })
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

struct DiscoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "discover",
        abstract: "Print the proxy list the Manager returns for a group.",
        usage: "inlong discover [<options>] --group <group>",
        discussion: """
            Example:
              inlong discover --manager "$MANAGER" --group g

            $MANAGER stands for the Manager's proxy-list URL, e.g.
            http://127.0.0.1:8083/inlong/manager/openapi/dataproxy/getIpList
            """
    )

    @Option(help: "The Manager's proxy-list URL, without the group id.")
    var manager: String?

    @Option(help: "The InLong group.")
    var group: String

    @Option(help: "Manager Basic auth as secretId:secretKey (better: INLONG_MANAGER_AUTH or --config).")
    var auth: String?

    @Option(help: "The tenant header.")
    var tenant: String?

    @Option(help: "A JSON or YAML file of client settings (manager.url, manager.auth, ...); INLONG_* environment variables override it, flags override both.")
    var config: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .warning

    @Flag(help: "Print everything the Manager says (cluster id, load, each node) as JSON.")
    var json = false

    /// The Manager to ask, from flags, `INLONG_*` variables and `--config`, as `send` reads them.
    func managerConfiguration(environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> DataProxyClient.Configuration.Manager {
        var arguments: [String] = []
        if let manager = self.manager { arguments += ["--manager", manager] }
        if let auth = self.auth { arguments += ["--auth", auth] }
        if let tenant = self.tenant { arguments += ["--tenant", tenant] }
        let target = try TargetOptions.parse(arguments)
        let missing = ValidationError("give --manager URL (or INLONG_MANAGER_URL, or manager.url in --config FILE)")
        let settings: DataProxyClient.Configuration
        do {
            settings = try await readClientConfiguration(file: self.config, target: target, group: self.group, environment: environment)
        } catch let error as ValidationError where error.message.hasPrefix("give --proxy") {
            throw missing
        }
        guard var configuration = settings.manager else { throw missing }
        configuration.cacheFile = nil
        configuration.attempts = 1
        return configuration
    }

    func run() async throws {
        let configuration = try await self.managerConfiguration()
        var logger = Logger(label: "inlong.discover")
        logger.logLevel = self.logLevel
        do {
            let directory = try await DataProxyClient.discoverProxyDirectory(manager: configuration, group: self.group, logger: logger)
            if self.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(directory), as: UTF8.self))
            } else {
                // One proxy per line, for scripts; the cluster and loads on standard error.
                let cluster = directory.clusterID.map { "cluster \($0)" } ?? "no cluster id"
                FileHandle.standardError.write(Data("group \(self.group): \(cluster), \(directory.nodes.count) proxies\n".utf8))
                for node in directory.nodes {
                    print("\(node.host):\(node.port)")
                }
            }
        } catch {
            throw CLIError("cannot ask the Manager at \(configuration.url) for group \(self.group)'s proxies: \(error)")
        }
    }
}
