import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import NIOCore
import Testing

/// The client's HTTP transport against the receiver's HTTP API over loopback: the same batching, reports and
/// retries as TCP; every record arrives byte for byte and ends exactly once.
@Suite struct DataProxyClientHTTPTests {
    static var receiverConfiguration: DataProxyReceiver.Configuration {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.httpPort = 0
        return configuration
    }

    static func httpConfiguration(ports: [Int]) -> DataProxyClient.Configuration {
        var configuration = clientConfiguration(ports: ports)
        configuration.transport = .http
        configuration.batching.maxRecords = 100
        return configuration
    }

    @Test func recordsArriveByteForByte() async throws {
        try await withReceiver(Self.receiverConfiguration) { receiver in
            let port = try await receiver.httpLocalAddress().port!
            try await withDataProxyClient(configuration: Self.httpConfiguration(ports: [port])) { client in
                let reports = ReportCollector(client)
                // Bytes the form must escape, spaces, UTF-8, and a record of every byte but the separator.
                var sent = (0..<2_000).map { "r\($0) a+b&c=d%e é" }
                sent.append(String(decoding: (UInt8(0)...UInt8(127)).filter { $0 != UInt8(ascii: "\n") }, as: UTF8.self))
                for body in sent { try await client.send(body, group: "g", stream: "s") }
                #expect(await client.flush(timeout: .seconds(120)))
                await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [receiver.memorySink])
                #expect(reports.acked == sent.count)
                #expect(receiver.memorySink.records.map { String(buffer: $0.body) }.sorted() == sent.sorted())
                // Over HTTP only: the TCP port saw nothing.
                #expect(receiver.statistics().acceptedConnections == 0)
                reports.stop()
            }
        }
    }

    /// With a Manager and no proxies configured, the client asks for the group's HTTP nodes and posts to the HTTP
    /// port the Manager lists, never to the TCP port it lists for TCP clients.
    @Test func theManagersHTTPNodesAreUsed() async throws {
        var receiverConfiguration = Self.receiverConfiguration
        receiverConfiguration.manager = .init()
        try await withReceiver(receiverConfiguration) { receiver in
            let httpPort = try await receiver.httpLocalAddress().port!
            #expect(receiver.manager!.httpNodes == [.init(ip: "127.0.0.1", port: httpPort)])
            var manager = DataProxyClient.Configuration.Manager(url: try await receiver.manager!.baseURL(), groups: ["g"])
            manager.cacheFile = nil
            var configuration = Self.httpConfiguration(ports: [])
            configuration.proxies = []
            configuration.manager = manager
            let sent = (0..<1_000).map { "r\($0) a+b&c=d%e é" }
            try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                // "late" is met first by the dispatcher, not named at start: discovered on first use.
                for (index, body) in sent.enumerated() { try await client.send(body, group: index % 2 == 0 ? "g" : "late", stream: "s") }
                #expect(await client.flush(timeout: .seconds(120)))
                // Every record ended once, acked. (The counters are read once they caught up with the reports: a
                // completion counted on another thread may trail the flush.)
                #expect(await eventually { reports.acked == sent.count })
                #expect(reports.failed == 0 && reports.duplicateIDs == 0)
                #expect(reports.seenIDs == Set(0..<UInt64(sent.count)))
                #expect(await eventually { client.statistics().acked == sent.count })
                #expect(client.proxies == [Endpoint(host: "127.0.0.1", port: httpPort)])
                reports.stop()
            }
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) }.sorted() == sent.sorted())
            #expect(receiver.statistics().acceptedConnections == 0)
            #expect(receiver.manager!.requestCount >= 2)
        }
    }

    @Test func failingProxiesAreLeftForAnotherExactlyOnce() async throws {
        let refused = ClosedPort()
        var failingConfiguration = Self.receiverConfiguration
        failingConfiguration.faults.httpStatus = 500
        try await withReceiver(failingConfiguration) { failing in
            try await withReceiver(Self.receiverConfiguration) { good in
                let ports = [refused.endpoint.port, try await failing.httpLocalAddress().port!, try await good.httpLocalAddress().port!]
                var configuration = Self.httpConfiguration(ports: ports)
                configuration.batching.maxRecords = 20
                try await withDataProxyClient(configuration: configuration) { client in
                    let reports = ReportCollector(client)
                    let sent = try await sendAll(client, count: 1_000)
                    #expect(await client.flush(timeout: .seconds(120)))
                    await expectEveryRecordAccounted(sent: sent, client: client, reports: reports, sinks: [good.memorySink])
                    #expect(reports.acked == sent.count)
                    #expect(good.memorySink.records.map { String(buffer: $0.body) }.sorted() == sent.sorted())
                    #expect(failing.memorySink.recordCount == 0)
                    // The failing proxies were tried (and left): retries happened, and the statistics name them.
                    #expect(client.statistics().retries > 0)
                    reports.stop()
                }
            }
        }
    }

    @Test func recordsFailOnceAtTheirDeadlineWhenNoProxyAnswers() async throws {
        let refused = ClosedPort()
        var configuration = Self.httpConfiguration(ports: [refused.endpoint.port])
        configuration.retry.deliveryTimeout = .seconds(2)
        try await withDataProxyClient(configuration: configuration) { client in
            let reports = ReportCollector(client)
            let sent = try await sendAll(client, count: 50)
            #expect(await client.flush(timeout: .seconds(120)))
            #expect(await eventually(timeout: .seconds(120)) { reports.failed == sent.count })
            #expect(reports.acked == 0)
            #expect(reports.duplicateIDs == 0)
            #expect(reports.failures.allSatisfy { $0.code == .deliveryTimeout })
            // Refused before a byte was written: the records were not sent (an attempt still connecting at the
            // deadline has written nothing either: it is submitted only once its request head is written).
            #expect(reports.failures.allSatisfy { $0.persistence == .notSent }, "\(reports.failures.first.map { "\($0)" } ?? "")")
            reports.stop()
        }
    }

    @Test func aRefusedProxyIsNamedAndTheCloseEndsItsRecordsOnce() async throws {
        let refused = ClosedPort()
        var configuration = Self.httpConfiguration(ports: [refused.endpoint.port])
        // Only the close ends the records, however long the first request takes on a loaded machine (two CPU hogs
        // beside the whole suite once kept it from ending within a minute).
        configuration.retry.deliveryTimeout = .seconds(600)
        try await withDataProxyClient(configuration: configuration) { client in
            let reports = ReportCollector(client)
            let sent = try await sendAll(client, count: 50)
            // The statistics say why, in the TCP path's words, once a request was tried.
            #expect(await eventually(timeout: .seconds(240)) { client.statistics().proxyErrors[refused.endpoint] != nil })
            #expect(client.statistics().proxyErrors[refused.endpoint]?.hasPrefix("cannot connect to \(refused.endpoint)") == true)
            #expect(client.statistics().readyProxies == 0)
            client.close(deadline: .zero)
            #expect(await eventually(timeout: .seconds(120)) { reports.failed == sent.count })
            #expect(reports.acked == 0)
            #expect(reports.duplicateIDs == 0)
            #expect(reports.failures.allSatisfy { $0.code == .shutDown })
            reports.stop()
        }
    }

    @Test func refusalsKeepTheServersCode() async throws {
        var receiverConfiguration = Self.receiverConfiguration
        receiverConfiguration.knownGroups = ["other"]
        try await withReceiver(receiverConfiguration) { receiver in
            let port = try await receiver.httpLocalAddress().port!
            try await withDataProxyClient(configuration: Self.httpConfiguration(ports: [port])) { client in
                do {
                    _ = try await client.sendAndWait(ByteBuffer(string: "x"), group: "g", stream: "s")
                    Issue.record("a refused record was reported acked")
                } catch let error as DataProxyError {
                    #expect(error.code == .serverRejected)
                    #expect(error.serverResultCode == .topicIsBlank)
                    #expect(error.isRetriable == false)
                }
                // A record the API cannot carry fails its batch alone, with a typed error.
                do {
                    _ = try await client.sendAndWait(ByteBuffer(string: "two\nlines"), group: "other", stream: "s")
                    Issue.record("a record holding the separator was reported acked")
                } catch let error as DataProxyError {
                    #expect(error.code == .invalidArgument)
                }
                #expect(receiver.memorySink.recordCount == 0)
            }
        }
    }

    @Test func theHTTPTransportNeedsProxiesOrAManager() async throws {
        var configuration = DataProxyClient.Configuration(proxies: [])
        configuration.transport = .http
        let client = DataProxyClient(configuration: configuration)
        let error = await #expect(throws: DataProxyError.self) { try await client.run() }
        #expect(error?.detail == "the HTTP transport needs at least one proxy, or a Manager")
    }
}
