import Foundation
import Testing

@testable import InLongAgent

/// `listeners:` in the agent's configuration file.
@Suite struct ListenerConfigurationTests {
    private func load(_ yaml: String) throws(AgentConfigurationError) -> AgentConfiguration {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("agent-listeners-\(UUID().uuidString).yaml").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(yaml.utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try AgentConfigurationFile.load(path: path, environment: [:])
    }

    @Test func listenersAreReadWithTheirDefaults() throws {
        let configuration = try self.load("""
            proxies: ["127.0.0.1:46801"]
            stateDirectory: /tmp/agent-listeners-state
            listeners:
              - {port: 5514, group: g, stream: syslog, attributes: {dc: east}, syslogAttributes: true}
              - {host: 0.0.0.0, port: 5140, transport: udp, format: lines, group: g, stream: udp, maxMessageLength: 2048}
            """)
        #expect(configuration.sources.isEmpty)
        let tcp = try #require(configuration.listeners.first)
        #expect(tcp.host == "127.0.0.1" && tcp.port == 5514 && tcp.transport == .tcp && tcp.format == .syslog)
        #expect(tcp.attributes == ["dc": "east"] && tcp.maxMessageLength == 64 << 10 && tcp.maxBufferedBytes == 4 << 20)
        #expect(tcp.syslogAttributes)
        let udp = try #require(configuration.listeners.last)
        #expect(!udp.syslogAttributes)
        #expect(udp.host == "0.0.0.0" && udp.transport == .udp && udp.format == .lines && udp.maxMessageLength == 2048)
    }

    @Test func standardInputNeedsNoPort() throws {
        let configuration = try self.load("""
            proxies: ["127.0.0.1:46801"]
            stateDirectory: /tmp/agent-listeners-state
            listeners:
              - {transport: stdin, format: lines, group: g, stream: piped}
            """)
        let stdin = try #require(configuration.listeners.first)
        #expect(stdin.transport == .stdin && stdin.format == .lines && stdin.address == "stdin" && stdin.metricsName == "lines stdin")
    }

    @Test func badListenersAreClearErrors() {
        let cases = [
            ("listeners: [{port: 70000, group: g, stream: s}]", "the port must be 0 to 65535"),
            ("listeners: [{port: 1, group: g, stream: s, transport: sctp}]", "listeners"),
            ("listeners: [{port: 1, group: g, stream: s, maxMessageLength: 0}]", "maxMessageLength must be positive"),
            ("listeners: [{port: 1, group: g, stream: s, maxBufferedBytes: 10, maxMessageLength: 100}]", "maxBufferedBytes must hold"),
            ("listeners: [{port: 1, group: g, stream: s, typo: 1}]", "unknown key 'listeners[0].typo'"),
            ("listeners: [{port: 1, group: g, stream: s, format: lines, syslogAttributes: true}]", "listeners[0].syslogAttributes needs format syslog"),
            ("listeners: [{group: g, stream: s}]", "listeners[0].port: give the port to listen on"),
            (
                "listeners: [{transport: stdin, group: g, stream: a}, {transport: stdin, group: g, stream: b}]",
                "listeners[1]: standard input can be read by one listener only"
            ),
        ]
        for (yaml, expected) in cases {
            #expect(throws: AgentConfigurationError.self, "\(yaml)") { try self.load("proxies: [\"127.0.0.1:1\"]\nstateDirectory: s\n" + yaml) }
            do {
                _ = try self.load("proxies: [\"127.0.0.1:1\"]\nstateDirectory: s\n" + yaml)
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
        }
    }
}
