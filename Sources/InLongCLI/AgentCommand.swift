import ArgumentParser
import Foundation
import InLongAgent
import InLongDataProxy
import InLongTransport
import InLongWire
import Logging
import ServiceLifecycle
import UnixSignals

/// `inlong agent`: runs the agent (the default), or tells where its files stand (`status`).
struct AgentCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Collect lines from files into InLong (`inlong agent run --help` for its options), or print where they stand.",
        subcommands: [AgentCommand.self, AgentStatusCommand.self],
        defaultSubcommand: AgentCommand.self
    )
}

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Collect lines from files into InLong, with an offset per file.",
        discussion: """
            Lines are sent at least once: a crash, restart, rotation or proxy outage loses none (a restart sends \
            again what was read and not acked). SIGINT or SIGTERM stops reading, waits for acks up to \
            --shutdown-timeout, writes the checkpoint and exits 0.

            Examples:
              inlong agent --config agent.yaml
              inlong agent --path '/var/log/app/*.log' --group g --stream s \\
                --proxy 127.0.0.1:46801 --state-dir /var/lib/inlong-agent
              inlong agent status --state-dir /var/lib/inlong-agent
            """
    )

    @Option(help: "A JSON or YAML agent configuration (sources, proxies or manager or sdkConfig, stateDirectory, budgets); INLONG_* environment variables override its settings.")
    var config: String?

    @Option(name: .customLong("path"), help: "A glob of files to collect (repeat for several).")
    var paths: [String] = []

    @Flag(help: "Read lines from standard input (a pipe) instead of files, without offsets: the agent stops at its end once every line was acked, and exits 1 if any was dead-lettered.")
    var stdin = false

    @Option(help: "The InLong group (with --path).")
    var group: String?

    @Option(help: "The InLong stream (with --path).")
    var stream: String?

    @OptionGroup var target: TargetOptions

    @Option(name: .customLong("attribute"), help: "A message attribute key=value for every message (repeat for several).")
    var attributes: [String] = []

    @Option(help: "Where the checkpoint and the dead-letter file live (default: .inlong/agent).")
    var stateDir: String?

    @Option(help: "Where files found at start without a checkpoint begin: beginning or end (default: beginning).")
    var startAt: String?

    @Option(help: "Lines longer than this many bytes are truncated (default: 1 MiB).")
    var maxLineLength: Int?

    /// Where the state lives without a configuration file.
    var stateDirectory: String { self.stateDir ?? ".inlong/agent" }

    @Option(help: "Join lines into records: lines matching this regular expression (POSIX extended) continue the record before them (as Filebeat's multiline.pattern with match: after).")
    var multilinePattern: String?

    @Flag(help: "With --multiline-pattern: lines NOT matching it continue the record (the pattern is the start of a record).")
    var multilineNegate = false

    @Option(help: "With --multiline-pattern: seconds without a new line after which the record under way is sent (default 5).")
    var multilineTimeout: Double?

    @Option(name: .customLong("include"), help: "Send only records matching one of these regular expressions (repeat for several; after multiline).")
    var includes: [String] = []

    @Option(name: .customLong("exclude"), help: "Do not send records matching one of these regular expressions (repeat for several; after multiline).")
    var excludes: [String] = []

    @Option(help: "Close a file not written for this many seconds (its offset kept); it is opened again once it grows (closeInactive; default: never).")
    var closeInactive: Double?

    @Option(help: "Read at most this many lines a second from the source (all its files together, or standard input); a second's worth may go at once.")
    var maxLinesPerSecond: Int?

    @Option(help: "Read at most this many bytes a second from the source (all its files together, or standard input); a second's worth may go at once.")
    var maxBytesPerSecond: Int?

    @Option(help: "Seconds to wait for acks on SIGINT or SIGTERM.")
    var shutdownTimeout: Double?

    @Flag(help: "Do not compress batches.")
    var noCompression = false

    @Flag(help: "Stop once every file found is read to its end and acked (for one-off loads and benchmarks).")
    var once = false

    @Flag(help: "Check the configuration (file, INLONG_* variables, flags), print it and exit: 0 when valid, 64 when not.")
    var check = false

    @OptionGroup var tasks: AgentTaskOptions

    @OptionGroup var operatorOptions: OperatorOptions

    @OptionGroup var audit: AuditTargetOptions

    func configuration() async throws -> AgentConfiguration {
        var configuration: AgentConfiguration
        if let config = self.config {
            guard self.paths.isEmpty else { throw ValidationError("give either --config or --path, not both") }
            // The file says what these say for --path: given with it, they would be ignored without a word.
            if let flag = self.pathOnlyFlagsGiven.first {
                throw ValidationError("\(flag) does not apply with --config: set it in the file (or give --path instead of --config)")
            }
            do {
                configuration = try AgentConfigurationFile.load(path: config)
            } catch {
                throw ValidationError("\(error)")
            }
        } else if self.paths.isEmpty, !self.stdin, self.target.manager != nil, self.group == nil, self.stream == nil {
            configuration = try await self.managerTaskConfiguration()
        } else {
            guard !self.paths.isEmpty || self.stdin else {
                throw ValidationError("give --config FILE, or --path GLOB (or --stdin) with --group and --stream, or --manager URL alone")
            }
            guard self.paths.isEmpty || !self.stdin else { throw ValidationError("give either --path or --stdin, not both") }
            guard let group = self.group, let stream = self.stream else {
                throw ValidationError("\(self.stdin ? "--stdin" : "--path") needs --group and --stream")
            }
            try validateName(group, option: "--group")
            try validateName(stream, option: "--stream")
            var client = try await readClientConfiguration(file: nil, target: self.target, group: group, keys: AgentConfigurationFile.settingKeys)
            if self.noCompression { client.batching.compressionThreshold = nil }
            if self.stdin {
                configuration = try self.standardInputConfiguration(group: group, stream: stream, client: client)
                return try self.applyCommon(to: configuration)
            }
            var source = AgentConfiguration.FileSource(paths: self.paths, group: group, stream: stream)
            guard let startAt = AgentConfiguration.FileSource.StartPosition(rawValue: self.startAt ?? "beginning") else {
                throw ValidationError("--start-at takes beginning or end")
            }
            source.startAt = startAt
            if let maxLineLength = self.maxLineLength {
                guard maxLineLength > 0 else { throw ValidationError("--max-line-length must be positive") }
                source.maxLineLength = maxLineLength
            }
            if let pattern = self.multilinePattern {
                var multiline = AgentConfiguration.FileSource.Multiline(pattern: pattern)
                multiline.negate = self.multilineNegate
                if let seconds = self.multilineTimeout {
                    guard let timeout = Duration(settingSeconds: seconds), timeout > .zero else {
                        throw ValidationError("--multiline-timeout takes seconds")
                    }
                    multiline.timeout = timeout
                }
                source.multiline = multiline
            } else if self.multilineNegate || self.multilineTimeout != nil {
                throw ValidationError("--multiline-negate and --multiline-timeout need --multiline-pattern")
            }
            source.include = self.includes
            source.exclude = self.excludes
            if let seconds = self.closeInactive {
                guard let duration = Duration(settingSeconds: seconds), duration > .zero else {
                    throw ValidationError("--close-inactive takes a positive number of seconds")
                }
                source.closeInactive = duration
            }
            source.rateLimit = try self.rateLimit()
            do {
                try source.validate()
            } catch {
                throw ValidationError("\(error)")
            }
            for attribute in self.attributes {
                let parts = attribute.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { throw ValidationError("--attribute takes key=value") }
                source.attributes[String(parts[0])] = String(parts[1])
            }
            if client.manager?.cacheFile == nil { client.manager?.cacheFile = AgentConfiguration.proxyCacheFile(in: self.stateDirectory) }
            configuration = AgentConfiguration(sources: [source], stateDirectory: self.stateDirectory, client: client)
        }
        return try self.applyCommon(to: configuration)
    }

    /// The settings every mode takes from flags.
    private func applyCommon(to configuration: AgentConfiguration) throws -> AgentConfiguration {
        var configuration = configuration
        if let seconds = self.shutdownTimeout {
            guard let duration = Duration(settingSeconds: seconds) else { throw ValidationError("--shutdown-timeout takes seconds") }
            configuration.shutdownTimeout = duration
        }
        configuration.client.audit = self.audit.applied(to: configuration.client.audit).map(agentAudit)
        return configuration
    }

    /// `--max-lines-per-second` and `--max-bytes-per-second`, each a second's worth of burst.
    private func rateLimit() throws -> AgentConfiguration.RateLimit? {
        for (flag, value) in [("--max-lines-per-second", self.maxLinesPerSecond), ("--max-bytes-per-second", self.maxBytesPerSecond)] {
            if let value, value <= 0 { throw ValidationError("\(flag) must be a positive number, not \(value)") }
        }
        guard self.maxLinesPerSecond != nil || self.maxBytesPerSecond != nil else { return nil }
        return AgentConfiguration.RateLimit(bytesPerSecond: self.maxBytesPerSecond, linesPerSecond: self.maxLinesPerSecond)
    }

    /// `--stdin`: standard input as the one source, a record per line.
    private func standardInputConfiguration(group: String, stream: String, client: DataProxyClient.Configuration) throws -> AgentConfiguration {
        let fileOnly: [(String, Bool)] = [
            ("--start-at", self.startAt != nil), ("--multiline-pattern", self.multilinePattern != nil),
            ("--multiline-negate", self.multilineNegate), ("--multiline-timeout", self.multilineTimeout != nil),
            ("--include", !self.includes.isEmpty), ("--exclude", !self.excludes.isEmpty), ("--once", self.once),
            ("--close-inactive", self.closeInactive != nil),
        ]
        if let (flag, _) = fileOnly.first(where: \.1) { throw ValidationError("\(flag) applies to files (--path), not to --stdin") }
        var listener = AgentConfiguration.Listener(port: 0, group: group, stream: stream)
        listener.transport = .stdin
        listener.format = .lines
        if let maxLineLength = self.maxLineLength {
            guard maxLineLength > 0 else { throw ValidationError("--max-line-length must be positive") }
            listener.maxMessageLength = maxLineLength
            listener.maxBufferedBytes = max(listener.maxBufferedBytes, maxLineLength)
        }
        for attribute in self.attributes {
            let parts = attribute.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("--attribute takes key=value") }
            listener.attributes[String(parts[0])] = String(parts[1])
        }
        listener.rateLimit = try self.rateLimit()
        do {
            try listener.validate()
        } catch {
            throw ValidationError("\(error)")
        }
        var client = client
        if client.manager?.cacheFile == nil { client.manager?.cacheFile = AgentConfiguration.proxyCacheFile(in: self.stateDirectory) }
        var configuration = AgentConfiguration(sources: [], stateDirectory: self.stateDirectory, client: client)
        configuration.listeners = [listener]
        return configuration
    }

    /// The flags of `--path` mode that were given: the file says the same things.
    var pathOnlyFlagsGiven: [String] {
        let target = self.target
        let given: [(String, Bool)] = [
            ("--stdin", self.stdin), ("--group", self.group != nil), ("--stream", self.stream != nil), ("--attribute", !self.attributes.isEmpty),
            ("--state-dir", self.stateDir != nil), ("--start-at", self.startAt != nil), ("--max-line-length", self.maxLineLength != nil),
            ("--multiline-pattern", self.multilinePattern != nil), ("--multiline-negate", self.multilineNegate),
            ("--multiline-timeout", self.multilineTimeout != nil), ("--include", !self.includes.isEmpty), ("--exclude", !self.excludes.isEmpty),
            ("--close-inactive", self.closeInactive != nil), ("--max-lines-per-second", self.maxLinesPerSecond != nil),
            ("--max-bytes-per-second", self.maxBytesPerSecond != nil), ("--no-compression", self.noCompression), ("--proxy", !target.proxies.isEmpty), ("--manager", target.manager != nil),
            ("--http", target.http), ("--auth", target.auth != nil), ("--tenant", target.tenant != nil), ("--manager-ca", target.managerCa != nil),
            ("--manager-cert", target.managerCert != nil), ("--manager-key", target.managerKey != nil), ("--manager-verify", target.managerVerify != nil),
            ("--https", target.https), ("--proxy-ca", target.proxyCa != nil), ("--proxy-cert", target.proxyCert != nil),
            ("--proxy-key", target.proxyKey != nil), ("--proxy-verify", target.proxyVerify != nil),
        ]
        return given.filter(\.1).map(\.0)
    }

    func run() async throws {
        let configuration = try await self.configuration()
        if self.check {
            print(Self.settings(configuration).joined(separator: "\n"))
            return
        }
        let logger = self.operatorOptions.logger("inlong.agent")
        let agent = Agent(configuration: configuration, logger: logger)
        let fetcher = self.managerTaskFetcher(configuration, agent: agent, logger: logger)
        // Unhealthy while a group is stalled (named, with its waiting lines and why its proxies take nothing),
        // while the checkpoint cannot be written (acked lines would be read again after a restart), or while the
        // Manager that gives the tasks has not answered for longer than its timeout.
        let metricsEndpoint = try self.operatorOptions.metricsEndpoint(logger: logger) {
            let statistics = agent.statistics()
            let problems = statistics.stalledGroups.map { group in
                "stalled: group \(group.group), \(group.linesWaiting) lines wait" + (group.proxyProblem.map { " (\($0))" } ?? "")
            } + [statistics.checkpointError.map { "checkpoint: \($0)" }, fetcher?.health()].compactMap { $0 }
            return problems.isEmpty ? nil : problems.joined(separator: "\n")
        }
        let metrics = try await metricsEndpoint?.start()
        defer { metrics?.cancel() }
        let start = ContinuousClock.now
        let progress = Progress {
            let statistics = agent.statistics()
            let stalled = statistics.stalledGroups.map { group in
                "  stalled: \(group.group) (\(group.linesWaiting) lines wait" + (group.proxyProblem.map { "; \($0)" } ?? "") + ")"
            }.joined()
            return "files \(statistics.openFiles)  read \(statistics.linesRead) lines / \(statistics.bytesRead / 1_000_000) MB  acked \(statistics.linesAcked) lines"
                + "  lag \(statistics.lagBytes / 1_000) KB  \(megabytes(statistics.bytesAcked, seconds: secondsSince(start)))" + stalled
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: agent, successTerminationBehavior: .gracefullyShutdownGroup)]
                    + [fetcher].compactMap { $0 }.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        let watcher = self.once ? Task { await Self.stopWhenCaughtUp(agent) } : nil
        defer { watcher?.cancel() }
        let reloads = await self.reloadOnHangup(agent: agent, logger: logger)
        defer { reloads?.cancel() }
        // Says, per group, why no proxy can be reached or which does not answer, as `inlong send` does; the agent
        // keeps trying (what it read waits, within the group's share of the budgets).
        let groups = agent.groups
        let reachability = Task {
            await withDiscardingTaskGroup { watches in
                for name in groups {
                    watches.addTask {
                        _ = await ReachabilityWatch(notice: .seconds(5), timeout: nil, prefix: groups.count > 1 ? "group \(name): " : "")
                            .run(statistics: { agent.clientStatistics(group: name) })
                    }
                }
            }
        }
        defer { reachability.cancel() }
        // What is watched and where the state is, on any output (a service manager's log included).
        FileHandle.standardError.write(Data((Self.startLine(configuration) + "\n").utf8))
        do {
            try await group.run()
        } catch {
            progress.finish()
            throw CLIError("agent failed: \(error)")
        }
        progress.finish()
        let statistics = agent.statistics()
        let seconds = secondsSince(start)
        print(
            "agent: \(statistics.filesOpened) files, \(statistics.linesRead) lines read, \(statistics.linesAcked) acked, "
                + "\(statistics.deadLettered) dead-lettered, \(statistics.resent) resent; \(statistics.bytesAcked) bytes acked in "
                + String(format: "%.2f s", seconds) + " (\(megabytes(statistics.bytesAcked, seconds: seconds))); checkpoint \(configuration.checkpointPath)"
        )
        try self.operatorOptions.writeStats([
            "files": statistics.filesOpened,
            "linesRead": statistics.linesRead,
            "linesAcked": statistics.linesAcked,
            "bytesRead": statistics.bytesRead,
            "bytesAcked": statistics.bytesAcked,
            "deadLettered": statistics.deadLettered,
            "resent": statistics.resent,
            "lagBytes": Int(statistics.lagBytes),
            "unreadBytes": Int(statistics.unreadBytes),
            "deadLetterFailures": statistics.deadLetterFailures,
            "stalledGroups": statistics.stalledGroups.count,
            "seconds": seconds,
        ])
        for group in statistics.groups where group.linesWaiting > 0 {
            print("group \(group.group): \(group.linesWaiting) lines read and not acked" + (group.proxyProblem.map { " (\($0))" } ?? ""))
        }
        if let recovery = agent.checkpointRecovery {
            print("the checkpoint was unreadable (\(recovery.reason)) and was set aside as \(recovery.setAsidePath)")
        }
        if let error = statistics.checkpointError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        // Standard input cannot be read again: lines it could not deliver are a failure of this run.
        if self.stdin, statistics.deadLettered > 0 {
            FileHandle.standardError.write(Data("error: \(statistics.deadLettered) lines were not delivered: they are in \(configuration.deadLetterPath)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// The agent's effective settings, one `key: value` per line, as `--check` prints them.
    static func settings(_ configuration: AgentConfiguration) -> [String] {
        var lines = ["stateDirectory: \(configuration.stateDirectory)"]
        for (index, source) in configuration.sources.enumerated() {
            lines.append("sources[\(index)]: \(source.paths.joined(separator: ", ")) -> \(source.group)/\(source.stream), start at \(source.startAt.rawValue)")
            if let multiline = source.multiline {
                lines.append(
                    "sources[\(index)].multiline: '\(multiline.pattern)'\(multiline.negate ? " negated" : ""), match \(multiline.match.rawValue), "
                        + "at most \(multiline.maxLines) lines and \(multiline.maxBytes) bytes, timeout \(seconds(multiline.timeout))"
                )
            }
            if !source.include.isEmpty { lines.append("sources[\(index)].include: \(source.include.map { "'\($0)'" }.joined(separator: ", "))") }
            if !source.exclude.isEmpty { lines.append("sources[\(index)].exclude: \(source.exclude.map { "'\($0)'" }.joined(separator: ", "))") }
            if let name = source.name { lines.append("sources[\(index)].name: \(name)") }
            if let closeInactive = source.closeInactive { lines.append("sources[\(index)].closeInactive: \(seconds(closeInactive))") }
            if let limit = source.rateLimit { lines.append("sources[\(index)].rateLimit: \(Self.describe(limit))") }
        }
        for (index, listener) in configuration.listeners.enumerated() {
            if let limit = listener.rateLimit { lines.append("listeners[\(index)].rateLimit: \(Self.describe(limit))") }
        }
        lines.append("maxUnackedBytes: \(configuration.maxUnackedBytes)")
        lines.append("maxUnackedBytesPerFile: \(configuration.maxUnackedBytesPerFile)")
        lines.append("maxOpenFiles: \(configuration.maxOpenFiles)")
        lines.append("shutdownTimeout: \(seconds(configuration.shutdownTimeout))")
        return lines + effectiveSettings(configuration.client)
    }

    /// `agent: watching /var/log/app/*.log (g/s), ...; state in DIR; proxies 127.0.0.1:46801` (or the Manager).
    /// A source's close-inactive and rate limit follow its group and stream: `(g/s; close inactive 30 s; at most
    /// 500 lines/s)`.
    static func startLine(_ configuration: AgentConfiguration) -> String {
        let listeners = configuration.listeners.map {
            "\($0.format.rawValue) on \($0.address) (\(([$0.group + "/" + $0.stream] + [$0.rateLimit.map(Self.describe)].compactMap { $0 }).joined(separator: "; ")))"
        }
        let files = configuration.sources.map { source in
            let details = [source.group + "/" + source.stream] + [
                source.closeInactive.map { "close inactive \(seconds($0)) s" }, source.rateLimit.map(Self.describe),
            ].compactMap { $0 }
            return "\(source.paths.joined(separator: ", ")) (\(details.joined(separator: "; ")))"
        }
        let sources = files.isEmpty && listeners.isEmpty ? "the Manager's tasks" : (files + listeners).joined(separator: "; ")
        let target = configuration.client.manager.map { "Manager \($0.url)" }
            ?? "proxies " + configuration.client.proxies.map(\.description).joined(separator: ", ")
        return "agent: watching \(sources); state in \(configuration.stateDirectory); \(target)"
    }

    /// `at most 500 lines/s and 1048576 bytes/s`, with the bursts when they differ from a second's worth.
    static func describe(_ limit: AgentConfiguration.RateLimit) -> String {
        let parts = [
            limit.linesPerSecond.map { "\($0) lines/s" + (limit.burstLines.map { ", burst \($0)" } ?? "") },
            limit.bytesPerSecond.map { "\($0) bytes/s" + (limit.burstBytes.map { ", burst \($0)" } ?? "") },
        ].compactMap { $0 }
        return "at most " + parts.joined(separator: " and ")
    }

    /// Stops the agent once it read every file to its end and every read is acked (a last line without its newline
    /// is neither sent nor committed: it may not be finished).
    private static func stopWhenCaughtUp(_ agent: Agent) async {
        await agent.waitUntilCaughtUp()
        if !Task.isCancelled { agent.stop() }
    }
}
