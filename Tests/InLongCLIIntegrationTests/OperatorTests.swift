import ArgumentParser
import AsyncHTTPClient
import Foundation
import InLongAgent
import InLongDataProxy
import InLongDataProxyReceiver
import InLongWire
import InLongTestUtils
import InLongTransport
import Logging
import NIOHTTP1
import NIOCore
import Prometheus
import Testing

@testable import InLongCLI

/// What operators rely on: a Prometheus endpoint with the right values, exit codes scripts can trust, output
/// files never truncated by accident.
@Suite(.timeLimit(.minutes(3))) struct OperatorTests {
    @Test func theMetricsEndpointServesTheReceiversCountersInPrometheusFormat() async throws {
        let registry = PrometheusCollectorRegistry()
        let endpoint = MetricsEndpoint(host: "127.0.0.1", port: 0, registry: registry, logger: .init(label: "test"))
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.metricsFactory = PrometheusMetricsFactory(registry: registry)
        try await withReceiver(configuration) { receiver in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await endpoint.run() }
                defer { group.cancelAll() }
                let port = try #require(await endpoint.localPort())
                var client = DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: try await receiver.port())])
                client.metricsFactory = PrometheusMetricsFactory(registry: registry)
                try await withDataProxyClient(configuration: client) { client in
                    let summary = try await client.sendAndWait(contentsOf: (0..<1234).map { ByteBuffer(string: "m\($0)") }, group: "g", stream: "s")
                    #expect(summary.allAcked)
                }
                let metrics = try await self.get("http://127.0.0.1:\(port)/metrics")
                #expect(metrics.status == 200)
                let values = Self.parse(metrics.body)
                #expect(values["inlong_receiver_records_total"] == 1234)
                #expect(values["inlong_receiver_messages_total"].map { $0 >= 1 } == true)
                #expect(values[#"inlong_client_records_acked_total{group="g",stream="s"}"#] == 1234)
                #expect(values[#"inlong_client_records_accepted_total{group="g",stream="s"}"#] == 1234)
                #expect(values[#"inlong_client_ack_latency_seconds_count{group="g",stream="s"}"#].map { $0 >= 1 } == true)
                // Every line is a comment or `name{labels} value`, with valid names.
                for line in metrics.body.split(separator: "\n") where !line.hasPrefix("#") {
                    let name = line.prefix { $0 != "{" && $0 != " " }
                    #expect(name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }, "\(line)")
                }
                let health = try await self.get("http://127.0.0.1:\(port)/health")
                #expect(health.status == 200)
            }
        }
    }

    private func get(_ url: String) async throws -> (status: UInt, body: String) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (response.status.code, String(buffer: body))
    }

    /// Samples of the exposition text, by name with its labels as written (`name{k="v"}`).
    static func parse(_ text: String) -> [String: Double] {
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            values[String(line[..<space])] = value
        }
        return values
    }

    @Test func receiveRefusesToTruncateAnExistingOutputFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-out-\(UUID().uuidString).jsonl").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data("kept\n".utf8)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try ReceiveCommand.parse(["--out", path])
            Issue.record("an existing output file was accepted without --append or --overwrite")
        } catch {
            #expect(ReceiveCommand.exitCode(for: error).rawValue == 64)
            #expect(ReceiveCommand.message(for: error).contains("--append or --overwrite"))
        }
        #expect(throws: Never.self) { _ = try ReceiveCommand.parse(["--out", path, "--append"]) }
        #expect(throws: Never.self) { _ = try ReceiveCommand.parse(["--out", path, "--overwrite"]) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "kept\n")
    }

    @Test func listeningOnAllAddressesNeedsAnAdvertisedAddressForTheManager() {
        #expect(throws: (any Error).self) { _ = try ReceiveCommand.parse(["--listen", "0.0.0.0:46801", "--manager-port", "0", "--count-only"]) }
        #expect(throws: Never.self) {
            _ = try ReceiveCommand.parse(["--listen", "0.0.0.0:46801", "--manager-port", "0", "--advertise", "10.1.2.3", "--count-only"])
        }
    }

    @Test func usageErrorsExitWith64AndTheVersionIsPrinted() throws {
        do {
            _ = try InLongCommand.parseAsRoot(["send", "--group", "g", "--stream", "s", "--auth", "nocolon", "--proxy", "nohost"])
        } catch {
            Issue.record("parsing alone should not fail: \(error)")
        }
        #expect(InLongCommand.exitCode(for: ValidationError("x")).rawValue == 64)
        #expect(InLongCommand.configuration.version == inlongVersion)
        let unknownOption = #expect(throws: (any Error).self) { _ = try InLongCommand.parseAsRoot(["send", "--no-such-option"]) }
        #expect(unknownOption.map { InLongCommand.exitCode(for: $0).rawValue } == 64)
    }

    @Test func smallPointsOfTheFirstHour() throws {
        // A name InLong cannot carry is a usage error (64), said before anything connects.
        let badGroup = #expect(throws: (any Error).self) {
            _ = try InLongCommand.parseAsRoot(["send", "--proxy", "127.0.0.1:1", "--group", "g&x", "--stream", "s"])
        }
        #expect(badGroup.map { InLongCommand.exitCode(for: $0).rawValue } == 64)
        #expect(badGroup.map { "\($0)" }?.contains("--group 'g&x'") == true)
        // The same rule as the SDK's send: a stream the server would trim is refused too.
        let paddedStream = #expect(throws: (any Error).self) {
            _ = try InLongCommand.parseAsRoot(["send", "--proxy", "127.0.0.1:1", "--group", "g", "--stream", "s "])
        }
        #expect(paddedStream.map { InLongCommand.exitCode(for: $0).rawValue } == 64)
        // --ack-delay takes its unit, as every duration: a bare number is refused, not guessed.
        let bareDelay = #expect(throws: (any Error).self) {
            _ = try FaultOptions.parse(["--ack-delay", "200"]).faults()
        }
        #expect(bareDelay.map { "\($0)" }?.contains("--ack-delay takes a duration with its unit") == true, "\(String(describing: bareDelay))")
        // Rates of small runs are not rounded to nothing.
        #expect(megabytes(2_893, seconds: 1) == "2.9 kB/s")
        #expect(megabytes(50, seconds: 1) == "50 B/s")
        #expect(megabytes(812_400_000, seconds: 1) == "812.4 MB/s")
        // demo, like receive, replaces an existing --out file only when told to.
        let existing = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-demo-test-\(UUID().uuidString).jsonl").path
        #expect(FileManager.default.createFile(atPath: existing, contents: Data()))
        defer { try? FileManager.default.removeItem(atPath: existing) }
        let refused = #expect(throws: (any Error).self) { _ = try InLongCommand.parseAsRoot(["demo", "--out", existing]) }
        #expect(refused.map { InLongCommand.exitCode(for: $0).rawValue } == 64)
        #expect(throws: Never.self) { _ = try InLongCommand.parseAsRoot(["demo", "--out", existing, "--overwrite"]) }
        // The agent says what it watches and where its state is, on any output.
        let agentConfiguration = AgentConfiguration(
            sources: [.init(paths: ["/var/log/app/*.log"], group: "g", stream: "s")],
            stateDirectory: "/var/lib/inlong-agent",
            client: .init(proxies: [Endpoint(host: "127.0.0.1", port: 46801)])
        )
        #expect(AgentCommand.startLine(agentConfiguration) == "agent: watching /var/log/app/*.log (g/s); state in /var/lib/inlong-agent; proxies 127.0.0.1:46801")
        // Nothing lands in the working directory unless asked: the Manager's cache is off by default.
        #expect(DataProxyClient.Configuration.Manager(url: "http://127.0.0.1:1/list", groups: []).cacheFile == nil)
    }

    @Test func theSummaryIsWrittenAsJSONForScripts() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-stats-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let options = try OperatorOptions.parse(["--stats-json", path])
        try options.writeStats(["acked": 3, "failed": 0, "seconds": 1.5])
        let data = try #require(FileManager.default.contents(atPath: path))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(json["acked"] as? Int == 3)
        #expect(json["seconds"] as? Double == 1.5)
    }
}

/// `inlong send` when no proxy answers: it says why, then gives up and fails what it read.
@Suite(.timeLimit(.minutes(3))) struct UnreachableProxyTests {
    @Test func aRefusingProxyIsNamedThenSendingGivesUp() async throws {
        let refusing = ClosedPort()
        defer { withExtendedLifetime(refusing) {} }
        var configuration = DataProxyClient.Configuration(proxies: [refusing.endpoint])
        configuration.connection.backoff = ExponentialBackoff(initial: .milliseconds(50), maximum: .milliseconds(200))
        let outcome = try await sendLines(
            configuration: configuration,
            group: "g",
            stream: "s",
            unreachableNotice: .milliseconds(500),
            unreachableTimeout: .seconds(2)
        ) { emit, _ in
            try await emit((0..<100).map { ByteBuffer(string: "r\($0)") })
        }
        #expect(outcome.unreachable)
        #expect(outcome.lines == 100)
        #expect(outcome.failed == 100)
        #expect(outcome.statistics.proxyErrors[refusing.endpoint] == "cannot connect to \(refusing.endpoint): connection refused")
        #expect(outcome.summary.hasPrefix("no proxy reachable"))
        // Nothing was written: the summary says so, and that no proxy can have stored the records.
        #expect(outcome.summary.contains("accepted 100 records (290 bytes), written 0 "), "\(outcome.summary)")
        #expect(outcome.summary.contains("failed 100 (notSent 100, possiblySent 0;"), "\(outcome.summary)")
    }
}

/// `inlong receive`'s fault injection flags, for people testing their own clients.
@Suite struct FaultOptionsTests {
    @Test func everyFaultHasAFlag() throws {
        let faults = try FaultOptions.parse([
            "--ack-delay", "5ms", "--drop-acks", "--error-code", "1", "--error-rate", "0.5", "--close-after", "3", "--stop-reading",
        ]).faults()
        #expect(faults.ackDelay == .milliseconds(5))
        #expect(faults.dropAcks)
        #expect(faults.errorCode == .sinkServiceUnready)
        #expect(faults.errorRate == 0.5)
        #expect(faults.closeAfterFrames == 3)
        #expect(faults.stopReading)
        #expect(throws: ValidationError.self) { _ = try FaultOptions.parse(["--error-rate", "2"]).faults() }
        #expect(throws: ValidationError.self) { _ = try FaultOptions.parse(["--close-after", "0"]).faults() }
    }
}

/// `inlong send` when the Manager cannot be reached: the Manager's address and the cause are told after its first
/// failed attempt, not after the last.
@Suite(.timeLimit(.minutes(3))) struct UnreachableManagerTests {
    @Test func theManagerIsNamedAtItsFirstFailedAttempt() async throws {
        let closed = ClosedPort()
        defer { withExtendedLifetime(closed) {} }
        let url = "http://127.0.0.1:\(closed.endpoint.port)/inlong/manager/openapi/dataproxy/getIpList"
        var manager = DataProxyClient.Configuration.Manager(url: url, groups: ["g"])
        manager.cacheFile = nil
        manager.requestTimeout = .milliseconds(200)
        // Far more attempts than the test waits for: the reason must come from the first.
        manager.attempts = 10_000
        let outcome = try await sendLines(
            configuration: DataProxyClient.Configuration(manager: manager),
            group: "g",
            stream: "s",
            unreachableNotice: .milliseconds(100),
            unreachableTimeout: .seconds(3)
        ) { emit, _ in
            try await emit((0..<10).map { ByteBuffer(string: "r\($0)") })
        }
        #expect(outcome.unreachable)
        #expect(outcome.failed == 10)
        let reason = try #require(outcome.statistics.discoveryError)
        #expect(reason.contains(url))
        #expect(reason.contains("refused") || reason.contains("onnect"), "\(reason)")
    }
}

/// What `inlong send` tells, and when it gives up, from the client's statistics and the time alone.
@Suite struct ReachabilityWatchTests {
    private let start = ContinuousClock.now
    private func at(_ seconds: Double) -> ContinuousClock.Instant { self.start + .milliseconds(Int64(seconds * 1000)) }
    private let proxy = Endpoint(host: "127.0.0.1", port: 46801)

    @Test func anUnreachableProxyIsNamedAtTheNoticeThenGivenUp() {
        var watch = ReachabilityWatch(notice: .seconds(5), timeout: .seconds(20))
        var statistics = DataProxyClientStatistics()
        #expect(watch.observe(statistics, now: self.at(0)) == .none)
        #expect(watch.observe(statistics, now: self.at(5)) == .tell("cannot reach a proxy: no proxy connected yet"))
        statistics.proxyErrors[self.proxy] = "connection refused"
        #expect(watch.observe(statistics, now: self.at(6)) == .tell("127.0.0.1:46801: connection refused"))
        #expect(watch.observe(statistics, now: self.at(7)) == .none)
        #expect(
            watch.observe(statistics, now: self.at(20))
                == .giveUp("giving up after 20.0 seconds with no proxy reachable or answering: 127.0.0.1:46801: connection refused")
        )
    }

    /// `/health` of `inlong send`: unhealthy with the reason once it was told, healthy again once a proxy answers.
    @Test func theProblemToldIsWhatHealthSaysUntilAProxyIsReachableAgain() {
        var watch = ReachabilityWatch(notice: .seconds(5), timeout: nil)
        var statistics = DataProxyClientStatistics()
        statistics.readyProxies = 1
        _ = watch.observe(statistics, now: self.at(0))
        #expect(watch.problem == nil)
        statistics.readyProxies = 0
        statistics.proxyErrors[self.proxy] = "connection refused"
        _ = watch.observe(statistics, now: self.at(1))
        #expect(watch.problem == nil)  // a proxy was reached before: not news until the notice
        #expect(watch.observe(statistics, now: self.at(6.5)) == .tell("127.0.0.1:46801: connection refused"))
        #expect(watch.problem == "127.0.0.1:46801: connection refused")
        _ = watch.observe(statistics, now: self.at(8))
        #expect(watch.problem == "127.0.0.1:46801: connection refused")
        statistics.readyProxies = 1
        #expect(watch.observe(statistics, now: self.at(9)) == .tell("a proxy is reachable again"))
        #expect(watch.problem == nil)
    }

    /// kcat's bar: a refused connect is said at the first look, not at the notice, when no proxy was ever reached.
    @Test func aKnownCauseIsToldAtOnceBeforeAnyProxyWasReached() {
        var watch = ReachabilityWatch(notice: .seconds(5), timeout: .seconds(20))
        var statistics = DataProxyClientStatistics()
        #expect(watch.observe(statistics, now: self.at(0)) == .none)
        statistics.proxyErrors[self.proxy] = "cannot connect to 127.0.0.1:46801: connection refused"
        #expect(watch.observe(statistics, now: self.at(0.25)) == .tell("cannot connect to 127.0.0.1:46801: connection refused"))
        #expect(watch.observe(statistics, now: self.at(0.5)) == .none)
        // Once a proxy was reached, a later outage waits for the notice: a restart of a proxy is not news.
        statistics.readyProxies = 1
        #expect(watch.observe(statistics, now: self.at(1)) == .tell("a proxy is reachable again"))
        statistics.readyProxies = 0
        #expect(watch.observe(statistics, now: self.at(2)) == .none)
        #expect(watch.observe(statistics, now: self.at(7)) == .tell("cannot connect to 127.0.0.1:46801: connection refused"))
    }

    @Test func aProxyThatNeverAnswersIsNamedAndGivenUp() {
        var watch = ReachabilityWatch(notice: .seconds(5), timeout: .seconds(20))
        var statistics = DataProxyClientStatistics()
        statistics.readyProxies = 1
        statistics.reachableProxies = [self.proxy]
        statistics.inFlightBatches = 1
        statistics.heldRecords = 7
        #expect(watch.observe(statistics, now: self.at(0)) == .none)
        #expect(watch.observe(statistics, now: self.at(4.9)) == .none)
        #expect(watch.observe(statistics, now: self.at(5)) == .none, "the stall counts from its first sighting")
        #expect(watch.observe(statistics, now: self.at(9.9)) == .tell("no answer from 127.0.0.1:46801: 7 records wait"))
        #expect(
            watch.observe(statistics, now: self.at(24.9))
                == .giveUp("giving up after 20.0 seconds with no proxy reachable or answering: no answer from 127.0.0.1:46801: 7 records wait")
        )
    }

    @Test func progressIsNeverAStall() {
        var watch = ReachabilityWatch(notice: .seconds(5), timeout: .seconds(20))
        var statistics = DataProxyClientStatistics()
        statistics.readyProxies = 1
        statistics.inFlightBatches = 3
        for second in 0..<60 {
            statistics.acked += 100
            #expect(watch.observe(statistics, now: self.at(Double(second))) == .none)
        }
        // Idle (nothing in flight) is not a stall either.
        statistics.inFlightBatches = 0
        for second in 60..<120 { #expect(watch.observe(statistics, now: self.at(Double(second))) == .none) }
    }

    @Test func aProxyThatRefusesIsAnsweringNotSilent() {
        var watch = ReachabilityWatch(notice: .seconds(5), timeout: .seconds(20))
        var statistics = DataProxyClientStatistics()
        statistics.readyProxies = 1
        statistics.inFlightBatches = 2
        // Retriable refusals: nothing is acked or failed, the records wait for their retries, the proxy answers.
        for second in 0..<60 {
            statistics.answeredRequests += 1
            #expect(watch.observe(statistics, now: self.at(Double(second))) == .none)
        }
    }

    @Test func recoveryIsTold() {
        var watch = ReachabilityWatch(notice: .seconds(1), timeout: nil)
        var statistics = DataProxyClientStatistics()
        _ = watch.observe(statistics, now: self.at(0))
        #expect(watch.observe(statistics, now: self.at(100)) == .tell("cannot reach a proxy: no proxy connected yet"))
        statistics.readyProxies = 1
        #expect(watch.observe(statistics, now: self.at(101)) == .tell("a proxy is reachable again"))
        #expect(watch.observe(statistics, now: self.at(102)) == .none)
    }
}

/// `inlong send` to a proxy that takes records and never acks them: named within the notice, then given up.
@Suite(.timeLimit(.minutes(3))) struct SilentProxyTests {
    @Test func aProxyThatNeverAcksIsGivenUp() async throws {
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.faults.dropAcks = true
        try await withReceiver(receiverConfiguration) { receiver in
            let outcome = try await sendLines(
                configuration: DataProxyClient.Configuration(proxies: [Endpoint(host: "127.0.0.1", port: try await receiver.port())]),
                group: "g",
                stream: "s",
                unreachableNotice: .milliseconds(300),
                unreachableTimeout: .seconds(2)
            ) { emit, _ in
                try await emit((0..<50).map { ByteBuffer(string: "r\($0)") })
            }
            #expect(outcome.unreachable)
            #expect(outcome.lines == 50)
            #expect(outcome.failed == 50)
            #expect(outcome.statistics.acked == 0)
        }
    }
}
