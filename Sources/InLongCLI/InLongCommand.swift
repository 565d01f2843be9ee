import ArgumentParser
import AsyncAlgorithms
import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTransport
import InLongWire
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

#if !YAML || !ManagerDiscovery
#error("the inlong tool needs swift-inlong's package traits 'YAML' and 'ManagerDiscovery' (both on by default)")
#endif

/// The tool's version, as `inlong --version` prints it.
let inlongVersion = "0.6.0"

@main
struct InLongCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inlong",
        abstract: "Ship records to Apache InLong, or run a compatible receiver.",
        discussion: """
            Examples:
              inlong demo            # embedded receiver, 100,000 records through the SDK
              inlong receive --listen 127.0.0.1:46801 --manager-port 8083
              inlong send --group g --stream s --proxy 127.0.0.1:46801 app.log
              inlong agent --path '/var/log/app/*.log' --group g --stream s \\
                --proxy 127.0.0.1:46801
              inlong discover --manager "$MANAGER" --group g
              inlong bench --records 2000000 --size 100

            $MANAGER stands for the Manager's proxy-list URL, e.g.
            http://127.0.0.1:8083/inlong/manager/openapi/dataproxy/getIpList
            """,
        version: inlongVersion,
        subcommands: [DemoCommand.self, SendCommand.self, ReceiveCommand.self, AgentCommands.self, DiscoverCommand.self, BenchCommand.self, AuditReportCommand.self]
    )

    static func main() async {
        limitMallocArenas()
        let command: any ParsableCommand
        do {
            command = try Self.parseAsRoot(nil)
        } catch {
            Self.exit(withError: error)
        }
        do {
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                var command = command
                try command.run()
            }
        } catch {
            // A usage error found while running (a bad setting in a file, say) shows the subcommand's usage, not
            // the top level's.
            guard Self.exitCode(for: error) == .validationFailure else { Self.exit(withError: error) }
            let name = type(of: command)._commandName
            let text = """
                Error: \(Self.message(for: error))
                Usage: \(Self.usageString(for: type(of: command)))
                  See 'inlong \(name) --help' for more information.

                """
            FileHandle.standardError.write(Data(text.utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
    }
}

/// Caps glibc's malloc arenas at two, before any thread starts. Frames are allocated on one thread and freed on
/// another; with an arena per thread, freed memory stays spread over many arenas and RSS drifts tens of MB above
/// the SDK's quota (measured under a stalled proxy). `MALLOC_ARENA_MAX` in the environment still wins.
private func limitMallocArenas() {
    #if canImport(Glibc)
    // `M_ARENA_MAX` from <malloc.h>, which the Glibc module does not export.
    let arenaMax: Int32 = -8
    if getenv("MALLOC_ARENA_MAX") == nil { _ = glibcMallopt(arenaMax, 2) }
    #endif
}

#if canImport(Glibc)
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// A one-line error and a non-zero exit, instead of a stack of detail.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Live counters on a terminal, nothing otherwise.
final class Progress: Sendable {
    let enabled = isatty(STDOUT_FILENO) == 1
    private let task: Task<Void, Never>?

    init(_ line: @escaping @Sendable () -> String) {
        guard isatty(STDOUT_FILENO) == 1 else {
            self.task = nil
            return
        }
        self.task = Task {
            for await _ in AsyncTimerSequence(interval: .milliseconds(200), clock: .continuous) {
                FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line()).utf8))
            }
        }
    }

    func finish() {
        self.task?.cancel()
        if self.enabled { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
    }
}

func parseEndpoint(_ text: String) throws -> Endpoint {
    guard let endpoint = Endpoint(text) else { throw ValidationError("'\(text)' is not host:port") }
    return endpoint
}

func formatRate(_ count: Double, seconds: Double) -> String {
    guard seconds > 0 else { return "-" }
    let rate = count / seconds
    return rate >= 1_000_000 ? String(format: "%.2f M ", rate / 1_000_000) : String(format: "%.0f ", rate)
}

/// A byte rate in the unit that shows it: `812.4 MB/s`, `2.9 kB/s`, `0 B/s`.
func megabytes(_ bytes: Int, seconds: Double) -> String {
    let rate = Double(bytes) / max(seconds, 1e-9)
    if rate >= 100_000 { return String(format: "%.1f MB/s", rate / 1_000_000) }
    if rate >= 100 { return String(format: "%.1f kB/s", rate / 1_000) }
    return String(format: "%.0f B/s", rate)
}

/// A group or stream id as the SDK takes it (the same rule as its `send`): checked before anything connects.
func validateName(_ value: String, option: String) throws {
    guard !value.isEmpty, InLongAttributes.isValidComponent(value) else {
        throw ValidationError("\(option) '\(value)' must not be empty, contain '&' or '=', or start or end with a space")
    }
}

func milliseconds(_ duration: Duration?) -> String {
    guard let duration else { return "-" }
    let (seconds, attoseconds) = duration.components
    return String(format: "%.2f ms", Double(seconds) * 1000 + Double(attoseconds) / 1e15)
}

/// Failed records by persistence, then by cause: ` (notSent 1000, possiblySent 0; shutDown: 1000)`.
func failureSummary(_ statistics: DataProxyClientStatistics) -> String {
    guard !statistics.failures.isEmpty else { return "" }
    let causes = statistics.failures.map { "\($0.key): \($0.value)" }.sorted().joined(separator: ", ")
    return " (notSent \(statistics.failedNotSent), possiblySent \(statistics.failedPossiblySent); \(causes))"
}

/// Seconds elapsed since `start`.
func secondsSince(_ start: ContinuousClock.Instant) -> Double {
    let (seconds, attoseconds) = (ContinuousClock.now - start).components
    return Double(seconds) + Double(attoseconds) / 1e18
}

/// Peak resident memory for a summary line: "123 MB", or "-" where it cannot be read.
func peakResidentText() -> String {
    peakResidentBytes().map { String(format: "%.0f MB", Double($0) / 1_000_000) } ?? "-"
}

/// Peak resident memory of this process, from /proc (Linux), in bytes.
func peakResidentBytes() -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let digits = line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        return digits.map { $0 * 1024 }
    }
    return nil
}
