import Foundation
import InLongAgent
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import Logging
import NIOCore
import Synchronization
import Testing

/// A temporary directory with the files an agent test writes, removed at the end.
struct AgentWorkspace: ~Copyable {
    let root: String

    init() throws {
        self.root = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-agent-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: self.root + "/logs", withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: self.root) }

    var logs: String { self.root + "/logs" }
    var state: String { self.root + "/state" }

    func path(_ name: String) -> String { self.logs + "/" + name }

    /// Appends `lines`, each with a newline.
    func append(_ lines: [String], to name: String) throws {
        try self.write(lines.map { $0 + "\n" }.joined(), to: name)
    }

    /// Appends raw text.
    func write(_ text: String, to name: String) throws {
        let path = self.path(name)
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let handle = try #require(FileHandle(forWritingAtPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    func configuration(port: Int, glob: String = "*.log") -> AgentConfiguration {
        var client = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: port)])
        client.batching.linger = .milliseconds(5)
        client.retry.backoff = ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(200), multiplier: 2, jitter: 0.1)
        client.connection.backoff = ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(200), multiplier: 2, jitter: 0.1)
        var configuration = AgentConfiguration(
            sources: [AgentConfiguration.FileSource(paths: [self.logs + "/" + glob], group: "g", stream: "s")],
            stateDirectory: self.state,
            client: client
        )
        configuration.scanInterval = .milliseconds(50)
        configuration.pollInterval = .milliseconds(10)
        configuration.checkpointInterval = .milliseconds(50)
        configuration.releaseAfter = .milliseconds(200)
        configuration.resendDelay = .milliseconds(50)
        return configuration
    }
}

/// Runs an agent for the duration of `body`, then stops it gracefully and waits for its end.
func withAgent<Result: Sendable>(
    _ configuration: AgentConfiguration,
    _ body: (Agent) async throws -> Result
) async throws -> Result {
    var debugLogger = Logger(label: "agent-test"); debugLogger.logLevel = .debug
    let agent = Agent(configuration: configuration, logger: ProcessInfo.processInfo.environment["AGENT_DEBUG"] != nil ? debugLogger : Logger(label: "x", factory: { _ in SwiftLogNoOpLogHandler() }))
    let run = Task { try await agent.run() }
    do {
        let result = try await body(agent)
        agent.stop()
        try await run.value
        return result
    } catch {
        agent.stop()
        _ = try? await run.value
        throw error
    }
}

/// The bodies the receiver stored, as text.
func storedLines(_ receiver: DataProxyReceiver) -> [String] {
    receiver.memorySink.records.map { String(buffer: $0.body) }
}

/// The lines `prefix-0` to `prefix-(count-1)`.
func numbered(_ prefix: String, _ range: Range<Int>) -> [String] {
    range.map { "\(prefix)-\($0)" }
}
