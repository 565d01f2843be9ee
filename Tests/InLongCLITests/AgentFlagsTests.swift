import ArgumentParser
import Foundation
import InLongAgent
import Testing

@testable import InLongCLI

/// `inlong agent --config FILE` takes its sources, state directory and client from the file: a `--path` flag given
/// with it would be ignored without a word, so it is refused, named.
@Suite struct AgentFlagsTests {
    private func configurationError(_ arguments: [String]) async throws -> String? {
        let command = try AgentCommand.parse(arguments)
        do {
            _ = try await command.configuration()
            return nil
        } catch let error as ValidationError {
            return error.message
        }
    }

    @Test func pathFlagsWithAConfigurationFileAreRefusedByName() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("agent-flags-\(UUID().uuidString).json").path
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agent-flags-\(UUID().uuidString)").path
        #expect(FileManager.default.createFile(atPath: file, contents: Data("""
            {"sources": [{"paths": ["/tmp/none-*.log"], "group": "g", "stream": "s"}], "proxies": ["127.0.0.1:1"], "stateDirectory": "\(directory)"}
            """.utf8)))
        defer { try? FileManager.default.removeItem(atPath: file) }
        for (flags, named) in [
            (["--state-dir", "/var/lib/x"], "--state-dir"), (["--proxy", "127.0.0.1:2"], "--proxy"), (["--group", "g"], "--group"),
            (["--start-at", "end"], "--start-at"), (["--max-line-length", "10"], "--max-line-length"), (["--no-compression"], "--no-compression"),
            (["--include", "x"], "--include"), (["--manager", "http://m"], "--manager"), (["--close-inactive", "5"], "--close-inactive"),
            (["--max-lines-per-second", "5"], "--max-lines-per-second"), (["--max-bytes-per-second", "5"], "--max-bytes-per-second"),
        ] {
            let error = try await self.configurationError(["--config", file] + flags)
            #expect(error == "\(named) does not apply with --config: set it in the file (or give --path instead of --config)", "\(flags)")
        }
        // Alone, the file is taken as it is; the flags of both modes still apply.
        #expect(try await self.configurationError(["--config", file]) == nil)
        #expect(try await self.configurationError(["--config", file, "--shutdown-timeout", "3"]) == nil)
    }

    @Test func pathModeKeepsItsDefaults() async throws {
        let command = try AgentCommand.parse(["--path", "/tmp/none-*.log", "--group", "g", "--stream", "s", "--proxy", "127.0.0.1:1"])
        let configuration = try await command.configuration()
        #expect(configuration.stateDirectory == ".inlong/agent")
        #expect(configuration.sources.first?.startAt == .beginning)
        #expect(configuration.sources.first?.maxLineLength == 1 << 20)
    }

    @Test func closeInactiveAndRateLimitFlagsSetTheSource() async throws {
        let base = ["--path", "/tmp/none-*.log", "--group", "g", "--stream", "s", "--proxy", "127.0.0.1:1"]
        let command = try AgentCommand.parse(base + ["--close-inactive", "2.5", "--max-lines-per-second", "500", "--max-bytes-per-second", "65536"])
        let configuration = try await command.configuration()
        let source = try #require(configuration.sources.first)
        #expect(source.closeInactive == .milliseconds(2500))
        #expect(source.rateLimit == AgentConfiguration.RateLimit(bytesPerSecond: 65536, linesPerSecond: 500))
        #expect(AgentCommand.startLine(configuration).contains("(g/s; close inactive 2.5 s; at most 500 lines/s and 65536 bytes/s)"))
        #expect(AgentCommand.settings(configuration).contains("sources[0].rateLimit: at most 500 lines/s and 65536 bytes/s"))
        let linesOnly = try await AgentCommand.parse(base + ["--max-lines-per-second", "10"]).configuration()
        #expect(linesOnly.sources.first?.rateLimit == AgentConfiguration.RateLimit(linesPerSecond: 10))
        #expect(linesOnly.sources.first?.closeInactive == nil)
        let stdin = try await AgentCommand.parse(["--stdin", "--group", "g", "--stream", "s", "--proxy", "127.0.0.1:1", "--max-bytes-per-second", "9"]).configuration()
        #expect(stdin.listeners.first?.rateLimit == AgentConfiguration.RateLimit(bytesPerSecond: 9))
        #expect(try await self.configurationError(base + ["--max-lines-per-second", "0"]) == "--max-lines-per-second must be a positive number, not 0")
        #expect(try await self.configurationError(base + ["--close-inactive", "0"]) == "--close-inactive takes a positive number of seconds")
    }
}
