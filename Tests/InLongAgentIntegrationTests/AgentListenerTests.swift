import Foundation
import InLongAgent
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import NIOCore
import NIOPosix
import Testing

/// Syslog and lines over TCP and UDP into the agent's pipeline: every message arrives once, byte for byte.
@Suite(.timeLimit(.minutes(3))) struct AgentListenerTests {
    private func configuration(receiverPort: Int, listener: AgentConfiguration.Listener, workspace: borrowing AgentWorkspace) -> AgentConfiguration {
        var configuration = workspace.configuration(port: receiverPort)
        configuration.sources = []
        configuration.listeners = [listener]
        // A late ack on a loaded machine must not resend (the test counts every message once).
        configuration.client.connection.requestTimeout = .seconds(120)
        return configuration
    }

    private func listenerPort(_ agent: Agent) async throws -> Int {
        var port: Int?
        _ = await eventually {
            port = agent.listenerStatistics().first?.port
            return port != nil
        }
        return try #require(port)
    }

    private func send(_ bytes: [UInt8], toTCP port: Int) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
        try await channel.close()
    }

    /// RFC 5424 messages, octet-counted, some holding newlines, and newline-ended ones between them.
    @Test func syslogOverTCPArrivesWholeAndOnce() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var listener = AgentConfiguration.Listener(port: 0, group: "g", stream: "syslog")
            listener.attributes = ["source": "syslog"]
            let configuration = self.configuration(receiverPort: try await receiver.port(), listener: listener, workspace: workspace)
            var expected: [String] = []
            var frames: [[UInt8]] = []
            for index in 0..<3000 {
                if index % 3 == 2 {
                    let message = "<13>Dec  6 05:40:00 host app[\(index)]: plain \(index)"
                    frames.append(Array((message + "\n").utf8))
                    expected.append(message)
                } else {
                    let message = "<165>1 2026-12-06T05:40:00.000Z host app \(index) ID47 [id@1 n=\"\(index)\"] line one\nline two of \(index)"
                    frames.append(Array("\(message.utf8.count) \(message)".utf8))
                    expected.append(message)
                }
            }
            try await withAgent(configuration) { agent in
                let port = try await self.listenerPort(agent)
                // Two connections, one after the other (the first ends with a frame that is octet-counted).
                try await self.send(frames[..<1500].flatMap { $0 }, toTCP: port)
                try await self.send(frames[1500...].flatMap { $0 }, toTCP: port)
                let arrived = await eventually { receiver.statistics().records >= expected.count }
                #expect(arrived)
                #expect(agent.listenerStatistics().first?.received == expected.count)
            }
            let bodies = receiver.memorySink.records.map { String(buffer: $0.body) }
            #expect(bodies.count == expected.count)
            #expect(Set(bodies) == Set(expected))
            #expect(receiver.memorySink.messages.allSatisfy { $0.attributes.contains("source=syslog") })
        }
    }

    /// `syslogAttributes`: each message carries its header fields as its own attributes; a message that is not
    /// syslog goes without them. The bodies stay as received.
    @Test func syslogHeaderFieldsArriveAsEachMessagesAttributes() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var listener = AgentConfiguration.Listener(port: 0, group: "g", stream: "syslog")
            listener.syslogAttributes = true
            let configuration = self.configuration(receiverPort: try await receiver.port(), listener: listener, workspace: workspace)
            var expected: [String: String] = [:]
            var frames: [UInt8] = []
            for index in 0..<300 {
                let message: String
                switch index % 3 {
                case 0:
                    message = "<165>1 2026-12-06T05:40:00.000Z host\(index) app - ID\(index) - five \(index)"
                    expected[message] = "facility=local4&severity=notice&hostname=host\(index)&appName=app&msgId=ID\(index)&timestamp=2026-12-06T05:40:00.000Z"
                case 1:
                    message = "<38>Dec  6 04:40:00 web sshd[\(index)]: three \(index)"
                    expected[message] = "facility=auth&severity=info&hostname=web&appName=sshd&procId=\(index)&timestamp=Dec  6 04:40:00"
                default:
                    message = "not syslog \(index)"
                    expected[message] = ""
                }
                frames += Array((message + "\n").utf8)
            }
            try await withAgent(configuration) { agent in
                try await self.send(frames, toTCP: try await self.listenerPort(agent))
                #expect(await eventually(timeout: .seconds(120)) { receiver.statistics().records >= expected.count })
            }
            let records = receiver.memorySink.records
            #expect(records.count == expected.count)
            var arrived: [String: String] = [:]
            for record in records { arrived[String(buffer: record.body)] = record.attributes ?? "" }
            #expect(arrived == expected)
        }
    }

    /// A listener whose instance cannot keep up stops reading its connection (the sender waits) and loses nothing.
    @Test func aFullQueueStopsReadingAndLosesNothing() async throws {
        let workspace = try AgentWorkspace()
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.faults.ackDelay = .milliseconds(20)
        try await withReceiver(receiverConfiguration) { receiver in
            var listener = AgentConfiguration.Listener(port: 0, group: "g", stream: "lines")
            listener.format = .lines
            listener.maxMessageLength = 1024
            listener.maxBufferedBytes = 16 << 10
            var configuration = self.configuration(receiverPort: try await receiver.port(), listener: listener, workspace: workspace)
            configuration.maxUnackedBytesPerFile = 16 << 10
            configuration.readSize = 4 << 10
            let lines = (0..<20_000).map { "\($0) " + String(repeating: "x", count: 40) }
            try await withAgent(configuration) { agent in
                let port = try await self.listenerPort(agent)
                try await self.send(Array(lines.map { $0 + "\n" }.joined().utf8), toTCP: port)
                let arrived = await eventually(timeout: .seconds(150)) { receiver.statistics().records >= lines.count }
                #expect(arrived)
                #expect((agent.listenerStatistics().first?.pauses ?? 0) > 0)
            }
            let bodies = receiver.memorySink.records.map { String(buffer: $0.body) }
            #expect(bodies.count == lines.count)
            #expect(Set(bodies) == Set(lines))
        }
    }

    /// Stopping while most received lines are still queued and the rest in flight (slow acks): the stop waits for
    /// the queue to drain (woken by the drain, not a timer) and for the acks, and every line received is stored,
    /// byte for byte, or dead-lettered: none lost.
    @Test(arguments: [false, true])
    func aStopWithLinesInFlightLosesNone(shortDeadline: Bool) async throws {
        let workspace = try AgentWorkspace()
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        // With the short deadline, acks come after it: what is in flight then ends as failed.
        receiverConfiguration.faults.ackDelay = shortDeadline ? .seconds(5) : .milliseconds(100)
        try await withReceiver(receiverConfiguration) { receiver in
            var listener = AgentConfiguration.Listener(port: 0, group: "g", stream: "lines")
            listener.format = .lines
            listener.maxBufferedBytes = 1 << 20
            var configuration = self.configuration(receiverPort: try await receiver.port(), listener: listener, workspace: workspace)
            configuration.maxUnackedBytesPerFile = 8 << 10
            configuration.readSize = 4 << 10
            configuration.shutdownTimeout = shortDeadline ? .seconds(1) : .seconds(120)
            let lines = (0..<5000).map { "\($0) " + String(repeating: "y", count: 40) }
            let agent = Agent(configuration: configuration)
            let run = Task { try await agent.run() }
            let port = try await self.listenerPort(agent)
            try await self.send(Array(lines.map { $0 + "\n" }.joined().utf8), toTCP: port)
            // Every line is in the agent (queued or sent) before it is told to stop.
            #expect(await eventually(timeout: .seconds(120)) { agent.listenerStatistics().first?.received == lines.count })
            agent.stop()
            try await run.value
            let statistics = agent.statistics()
            let stored = storedLines(receiver)
            let deadLettered = (try? String(contentsOfFile: configuration.deadLetterPath, encoding: .utf8)) ?? ""
            let setAside = deadLettered.split(separator: "\n").compactMap { line -> String? in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
                return object["line"] as? String
            }
            #expect(statistics.linesAcked + statistics.deadLettered == lines.count)
            #expect(setAside.count == statistics.deadLettered)
            // Every line stored or set aside, byte for byte (counted, not printed: 5,000 lines).
            let missing = Set(lines).subtracting(stored).subtracting(setAside)
            #expect(missing.isEmpty, "\(missing.count) lines lost, e.g. \(missing.first ?? "")")
            #expect(Set(stored).union(setAside).count == lines.count)
            if shortDeadline {
                #expect(statistics.deadLettered > 0)
            } else {
                #expect(statistics.deadLettered == 0)
                #expect(stored.count == lines.count && Set(stored) == Set(lines))
            }
        }
    }

    @Test func linesOverUDPAreADatagramEach() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            var listener = AgentConfiguration.Listener(port: 0, group: "g", stream: "udp")
            listener.transport = .udp
            let configuration = self.configuration(receiverPort: try await receiver.port(), listener: listener, workspace: workspace)
            try await withAgent(configuration) { agent in
                let port = try await self.listenerPort(agent)
                let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
                let target = try SocketAddress(ipAddress: "127.0.0.1", port: port)
                for index in 0..<50 {
                    try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(string: "<13>datagram \(index)\n"))).get()
                }
                try await channel.close()
                #expect(await eventually { receiver.statistics().records >= 50 })
            }
            let bodies = Set(receiver.memorySink.records.map { String(buffer: $0.body) })
            #expect(bodies == Set((0..<50).map { "<13>datagram \($0)" }))
        }
    }

    @Test func aPortThatCannotBeBoundStopsTheAgentNamingIt() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            let busy = try await receiver.port()
            let listener = AgentConfiguration.Listener(port: busy, group: "g", stream: "s")
            let agent = Agent(configuration: self.configuration(receiverPort: busy, listener: listener, workspace: workspace))
            await #expect {
                try await agent.run()
            } throws: { error in
                "\(error)" == "cannot listen on 127.0.0.1:\(busy)/tcp: address already in use"
            }
        }
    }
}
