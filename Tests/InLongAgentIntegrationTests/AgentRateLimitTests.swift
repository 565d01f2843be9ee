import Foundation
import InLongAgent
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import NIOCore
import NIOPosix
import Testing

/// Rate limits per source: a file source over its rate reads more slowly and loses nothing; a listener over its
/// rate pauses its TCP senders and loses nothing.
@Suite(.timeLimit(.minutes(4))) struct AgentRateLimitTests {
    /// Never faster than the limit allows: at any look, the bytes read are at most the burst, what flowed in since
    /// before the agent started, and one line. (Only an upper bound is checked, from the counts and the bucket's
    /// arithmetic: a loaded machine reads slower, never faster.)
    @Test func aFileSourceIsReadNoFasterThanItsLimitAndEveryLineArrivesOnce() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.client.connection.requestTimeout = .seconds(120)
            var limit = AgentConfiguration.RateLimit(bytesPerSecond: 40_000)
            limit.burstBytes = 4_000
            configuration.sources[0].rateLimit = limit
            let lines = (0..<3000).map { String(format: "limited line %05d", $0) }
            try workspace.append(lines, to: "app.log")
            let total = lines.map { $0.utf8.count + 1 }.reduce(0, +)
            let start = ContinuousClock.now
            try await withAgent(configuration) { agent in
                var looks = 0
                while agent.statistics().linesAcked < lines.count {
                    let read = agent.statistics().bytesRead
                    let elapsed = ContinuousClock.now - start
                    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
                    // The burst, what flowed in, and the line that reached them (19 bytes; one more for slack).
                    #expect(Double(read) <= 4_000 + 40_000 * seconds + 2 * 19, "\(read) bytes read after \(elapsed)")
                    looks += 1
                    try await Task.sleep(for: .milliseconds(100))
                    if ContinuousClock.now - start > .seconds(120) { break }
                }
                #expect(looks > 1)
                #expect(agent.statistics().linesAcked == lines.count)
                let source = try #require(agent.statistics().sources.first)
                #expect(source.rateLimitWaits > 0)
                #expect(source.bytesRead == total)
            }
            #expect(storedLines(receiver).sorted() == lines)
        }
    }

    /// A lines limit on a file source of two files read together: at any look, the lines read are at most the burst
    /// and what flowed in since before the agent started, and one more for slack (a read reserves at most the whole
    /// lines the bucket holds, so the two files share them; one read of a file would otherwise take all its 750
    /// lines at once).
    @Test func aFileSourceKeepsItsLinesLimitToOneLine() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.client.connection.requestTimeout = .seconds(120)
            var limit = AgentConfiguration.RateLimit(linesPerSecond: 500)
            limit.burstLines = 50
            configuration.sources[0].rateLimit = limit
            let lines = (0..<1500).map { String(format: "counted line %05d", $0) }
            try workspace.append(Array(lines[..<750]), to: "a.log")
            try workspace.append(Array(lines[750...]), to: "b.log")
            let start = ContinuousClock.now
            try await withAgent(configuration) { agent in
                var looks = 0
                while agent.statistics().linesAcked < lines.count {
                    let read = agent.statistics().linesRead
                    let elapsed = ContinuousClock.now - start
                    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
                    #expect(Double(read) <= 50 + 500 * seconds + 1, "\(read) lines read after \(elapsed)")
                    looks += 1
                    try await Task.sleep(for: .milliseconds(50))
                    if ContinuousClock.now - start > .seconds(120) { break }
                }
                #expect(looks > 1)
                #expect(agent.statistics().linesAcked == lines.count)
                #expect(try #require(agent.statistics().sources.first).rateLimitWaits > 0)
            }
            #expect(storedLines(receiver).sorted() == lines)
        }
    }

    /// A lines listener over its rate: its queue fills, the TCP connection is paused (the sender waits), and every
    /// line arrives once.
    @Test func aListenerOverItsLimitPausesItsSenderAndLosesNothing() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.sources = []
            configuration.client.connection.requestTimeout = .seconds(120)
            var listener = AgentConfiguration.Listener(port: 0, group: "g", stream: "lines")
            listener.format = .lines
            listener.maxMessageLength = 1024
            listener.maxBufferedBytes = 4096
            var limit = AgentConfiguration.RateLimit(linesPerSecond: 2000)
            limit.burstLines = 100
            listener.rateLimit = limit
            configuration.listeners = [listener]
            let lines = (0..<3000).map { String(format: "tcp line %05d", $0) }
            try await withAgent(configuration) { agent in
                var port: Int?
                _ = await eventually {
                    port = agent.listenerStatistics().first?.port
                    return port != nil
                }
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: try #require(port)).get()
                try await channel.writeAndFlush(ByteBuffer(string: lines.map { $0 + "\n" }.joined())).get()
                try await channel.close()
                #expect(await eventually(timeout: .seconds(120)) { agent.statistics().linesAcked == lines.count })
                let listenerStatistics = try #require(agent.listenerStatistics().first)
                #expect(listenerStatistics.pauses > 0)
                #expect(listenerStatistics.dropped == 0)
                #expect(try #require(agent.statistics().sources.first).rateLimitWaits > 0)
            }
            #expect(storedLines(receiver).sorted() == lines)
        }
    }
}
