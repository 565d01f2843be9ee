import Foundation
@testable import InLongAgent
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import NIOCore
import Testing

/// The paths on which the agent lost lines or stopped for good: a dead-letter file that cannot be written, one
/// group's cluster down while another's is up.
@Suite struct AgentIntegrityTests {
    /// Refused for good, and the dead-letter file cannot be written (a directory stands at its path): the lines stay
    /// pending and the offset does not pass them; once the file can be written they are set aside and it moves on.
    @Test func aFailedDeadLetterWriteKeepsTheLinesPending() async throws {
        let workspace = try AgentWorkspace()
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.faults.errorCode = .missRequiredBody
        try await withReceiver(receiverConfiguration) { receiver in
            let configuration = workspace.configuration(port: try await receiver.port())
            try FileManager.default.createDirectory(atPath: configuration.deadLetterPath, withIntermediateDirectories: true)
            try workspace.append(numbered("refused", 0..<20), to: "app.log")
            try await withAgent(configuration) { agent in
                #expect(await eventually { agent.statistics().deadLetterFailures >= 40 })
                let statistics = agent.statistics()
                #expect(statistics.deadLettered == 0)
                #expect(statistics.bytesAcked == 0)
                #expect(await eventually { (try? String(contentsOfFile: configuration.checkpointPath, encoding: .utf8))?.contains("\"offset\":0") == true })
                try FileManager.default.removeItem(atPath: configuration.deadLetterPath)
                #expect(await eventually { agent.statistics().deadLettered == 20 && agent.statistics().lagBytes == 0 })
            }
            let deadLetters = try String(contentsOfFile: configuration.deadLetterPath, encoding: .utf8).split(separator: "\n")
            #expect(deadLetters.count == 20)
            let size = try #require(FileManager.default.attributesOfItem(atPath: workspace.path("app.log"))[.size] as? Int)
            #expect(try String(contentsOfFile: configuration.checkpointPath, encoding: .utf8).contains("\"offset\":\(size)"))
        }
    }

    /// Group gB's cluster is down (its only proxy refuses) and it has far more to send than its share of the
    /// budgets; group gA's cluster is up. Every gA line arrives while gB waits, gB is reported stalled with its
    /// proxy, and gB's lines all arrive once its cluster is back.
    @Test func aDeadClusterHoldsOnlyItsShareAndTheOtherGroupGoesOn() async throws {
        let workspace = try AgentWorkspace()
        let dead = ClosedPort()
        let manager = DataProxyManagerServer(configuration: .init(), nodes: [])
        try await withReceiver { receiver in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await manager.run() }
                defer { group.cancelAll() }
                _ = try await manager.localAddress()
                let port = try await receiver.port()
                manager.setNodes([.init(ip: "127.0.0.1", port: port)])
                manager.setAnswer(.init(clusterID: 2, nodes: [.init(ip: "127.0.0.1", port: dead.endpoint.port)]), for: "gB")

                var managerConfiguration = DataProxyClient.Configuration.Manager(url: try await manager.baseURL(), groups: [])
                managerConfiguration.cacheFile = workspace.root + "/proxy-cache.json"
                managerConfiguration.refreshInterval = .milliseconds(200)
                var configuration = workspace.configuration(port: port)
                configuration.client.proxies = []
                configuration.client.manager = managerConfiguration
                configuration.client.retry.deliveryTimeout = .milliseconds(500)
                // Small bounds that gB's lines exceed many times over: shared out, gB holds only its half.
                configuration.maxUnackedBytes = 256 << 10
                configuration.maxUnackedBytesPerFile = 1 << 30
                configuration.readSize = 16 << 10
                configuration.client.buffer.maxBytes = 2 << 20
                configuration.stallAfter = .milliseconds(300)
                configuration.sources = [
                    .init(paths: [workspace.logs + "/a*.log"], group: "gA", stream: "s"),
                    .init(paths: [workspace.logs + "/b*.log"], group: "gB", stream: "s"),
                ]
                let filler = String(repeating: "x", count: 180)
                for file in 0..<4 {
                    try workspace.append(numbered("b\(file)-\(filler)", 0..<2_000), to: "b\(file).log")
                }
                try workspace.append(numbered("a", 0..<3_000), to: "a.log")
                try await withAgent(configuration) { agent in
                    #expect(await eventually { storedLines(receiver).filter { $0.hasPrefix("a-") }.count == 3_000 })
                    #expect(await eventually { agent.statistics().stalledGroups.map(\.group) == ["gB"] })
                    let stalled = try #require(agent.statistics().stalledGroups.first)
                    #expect(stalled.linesWaiting > 0)
                    #expect(stalled.proxyProblem?.contains("\(dead.endpoint.port)") == true)
                    #expect(!storedLines(receiver).contains { $0.hasPrefix("b") })
                    // gB's cluster comes back: its lines all arrive, and it is no longer stalled.
                    manager.setAnswer(nil, for: "gB")
                    #expect(await eventually { Set(storedLines(receiver).filter { $0.hasPrefix("b") }).count == 8_000 })
                    #expect(await eventually { agent.statistics().stalledGroups.isEmpty })
                }
            }
        }
    }
}

/// The read-ahead budget binds: four files, a budget of three reads, acks that come late. Every instance holds
/// acked reads it has not settled while it waits for budget; waiting for budget alone they all waited for ever.
@Suite struct AgentBudgetTests {
    @Test func fourFilesBehindSlowAcksWithABudgetOfThreeReadsAllArrive() async throws {
        let workspace = try AgentWorkspace()
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.faults.ackDelay = .milliseconds(50)
        try await withReceiver(receiverConfiguration) { receiver in
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.readSize = 16 << 10
            configuration.maxUnackedBytes = 3 * (16 << 10)
            let filler = String(repeating: "y", count: 190)
            for file in 0..<4 {
                try workspace.append(numbered("f\(file)-\(filler)", 0..<1_000), to: "f\(file).log")
            }
            try await withAgent(configuration) { agent in
                // The lag follows the acks once the instance committed them.
                #expect(await eventually { agent.statistics().linesAcked == 4_000 && agent.statistics().lagBytes == 0 })
            }
            #expect(Set(storedLines(receiver)).count == 4_000)
        }
    }

    /// Files that wait for a slot count in the lag, and what is read and not acked does too.
    @Test func theLagCountsFilesWaitingForASlot() async throws {
        let workspace = try AgentWorkspace()
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            var configuration = workspace.configuration(port: try await receiver.port())
            configuration.maxOpenFiles = 1
            configuration.shutdownTimeout = .milliseconds(100)
            try workspace.append(numbered("one", 0..<100), to: "one.log")
            try workspace.append(numbered("two", 0..<100), to: "two.log")
            let total = Int64(["one", "two"].map { numbered($0, 0..<100).joined(separator: "\n").utf8.count + 1 }.reduce(0, +))
            try await withAgent(configuration) { agent in
                #expect(await eventually {
                    let statistics = agent.statistics()
                    return statistics.linesRead == 100 && statistics.filesWaiting == 1 && statistics.lagBytes == total
                        && statistics.unreadBytes == total / 2
                })
            }
        }
    }
}

/// When a group is reported stalled and when moving again.
@Suite struct StallWatchTests {
    @Test func aGroupStallsAfterTheThresholdWithoutEndsAndMovesWhenOneEnds() {
        var watch = StallWatch(after: .seconds(5))
        let start = ContinuousClock.now
        #expect(watch.observe(group: "g", ended: 0, waiting: 10, now: start) == nil)
        #expect(watch.observe(group: "g", ended: 0, waiting: 10, now: start + .seconds(4)) == nil)
        #expect(watch.observe(group: "g", ended: 0, waiting: 10, now: start + .seconds(5)) == .stalled(group: "g", since: start))
        // Said once.
        #expect(watch.observe(group: "g", ended: 0, waiting: 10, now: start + .seconds(9)) == nil)
        #expect(watch.stalled == ["g": start])
        #expect(watch.observe(group: "g", ended: 3, waiting: 7, now: start + .seconds(10)) == .moving(group: "g"))
        #expect(watch.stalled.isEmpty)
    }

    @Test func nothingWaitingIsNeverAStall() {
        var watch = StallWatch(after: .seconds(1))
        let start = ContinuousClock.now
        for second in 0..<10 {
            #expect(watch.observe(group: "g", ended: 5, waiting: 0, now: start + .seconds(second)) == nil)
        }
    }

    @Test func slowButSteadyAcksAreNoStall() {
        var watch = StallWatch(after: .seconds(1))
        let start = ContinuousClock.now
        for step in 0..<100 {
            #expect(watch.observe(group: "g", ended: step, waiting: 1_000, now: start + .milliseconds(step * 900)) == nil)
        }
    }
}
