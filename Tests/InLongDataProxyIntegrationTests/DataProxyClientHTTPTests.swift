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
            // Refused before a byte was written: the records were not sent.
            #expect(reports.failures.allSatisfy { $0.persistence == .notSent }, "\(reports.failures.first.map { "\($0)" } ?? "")")
            reports.stop()
        }
    }

    @Test func aRefusedProxyIsNamedAndTheCloseEndsItsRecordsOnce() async throws {
        let refused = ClosedPort()
        try await withDataProxyClient(configuration: Self.httpConfiguration(ports: [refused.endpoint.port])) { client in
            let reports = ReportCollector(client)
            let sent = try await sendAll(client, count: 50)
            // The statistics say why, in the TCP path's words, once a request was tried.
            #expect(await eventually { client.statistics().proxyErrors[refused.endpoint] != nil })
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

    @Test func theHTTPTransportNeedsStaticProxies() async throws {
        var configuration = DataProxyClient.Configuration(manager: .init(url: "http://127.0.0.1:1/x", groups: ["g"]))
        configuration.transport = .http
        let client = DataProxyClient(configuration: configuration)
        await #expect(throws: DataProxyError.self) { try await client.run() }
    }
}
