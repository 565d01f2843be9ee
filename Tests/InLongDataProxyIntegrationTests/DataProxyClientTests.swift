import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import NIOCore
import Testing

@Suite struct DataProxyClientTests {
    @Test(arguments: [true, false])
    func recordsArriveIntactAndInOrderPerStream(compression: Bool) async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.batching.compressionThreshold = compression ? 512 : nil
            let streams = ["s1", "s2", "s3"]
            var sent: [String: [String]] = [:]
            try await withDataProxyClient(configuration: configuration) { client in
                for index in 0..<6000 {
                    let stream = streams[index % streams.count]
                    let body = "record-\(index)-" + String(repeating: "x", count: index % 200)
                    sent[stream, default: []].append(body)
                    try await client.send(body, group: "g", stream: stream)
                }
                #expect(await client.flush())
                let statistics = client.statistics()
                #expect(statistics.acked == 6000)
                #expect(statistics.failed == 0)
            }
            let sink = receiver.memorySink
            for stream in streams {
                let received = sink.messages.filter { $0.stream == stream }.flatMap(\.records).map { String(buffer: $0.body) }
                #expect(received.count == sent[stream]?.count)
                #expect(received == sent[stream], "records of \(stream) differ from what was sent")
            }
            let compressedFrames = sink.messages.filter { $0.payloadBytes > 0 }.count
            #expect(compressedFrames > 0)
        }
    }

    /// Trace mode sets the bit and writes what it promises: the client's `node1ip` and send time `rtime1`.
    @Test func traceModeWritesTheClientsHop() async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.batching.extendedField = .trace
            let before = Int64(Date().timeIntervalSince1970 * 1_000)
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("traced", group: "g", stream: "s")
                #expect(await client.flush())
            }
            let message = try #require(receiver.memorySink.messages.first)
            let pairs = Dictionary(
                message.attributes.split(separator: "&").map { $0.split(separator: "=", maxSplits: 1).map(String.init) }.filter { $0.count == 2 }.map { ($0[0], $0[1]) },
                uniquingKeysWith: { first, _ in first }
            )
            let node = try #require(pairs["node1ip"])
            #expect(node.split(separator: ".").count == 4)
            let sentAt = try #require(pairs["rtime1"].flatMap { Int64($0) })
            #expect(sentAt >= before && sentAt <= Int64(Date().timeIntervalSince1970 * 1_000))
        }
    }

    @Test func manyGroupsAndStreamsAtOnce() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for producer in 0..<8 {
                        group.addTask {
                            let records = (0..<500).map { DataProxyRecord("p\(producer)-\($0)") }
                            try await client.send(contentsOf: records, group: "group\(producer % 4)", stream: "stream\(producer)")
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(await client.flush())
            }
            let sink = receiver.memorySink
            #expect(sink.recordCount == 4000)
            for producer in 0..<8 {
                let records = sink.messages.filter { $0.group == "group\(producer % 4)" && $0.stream == "stream\(producer)" }
                    .flatMap(\.records).map { String(buffer: $0.body) }
                #expect(records == (0..<500).map { "p\(producer)-\($0)" })
            }
        }
    }

    @Test func perRecordDataTimeAndAttributes() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("plain", group: "g", stream: "s")
                let ack = try await client.sendAndWait(
                    ByteBuffer(string: "rich"),
                    group: "g",
                    stream: "s",
                    dataTime: 1_700_000_000_123,
                    attributes: [("host", "web-1")]
                )
                #expect(ack.proxyIP == "127.0.0.1")
                #expect(ack.attempts == 1)
                #expect(await client.flush())
            }
            let records = receiver.memorySink.records
            let rich = try #require(records.first { String(buffer: $0.body) == "rich" })
            #expect(rich.attributes == "dt=1700000000123&host=web-1")
            #expect(rich.dataTime == 1_700_000_000_123)
            let plain = try #require(records.first { String(buffer: $0.body) == "plain" })
            #expect(plain.attributes == nil)
        }
    }

    @Test func invalidAndOversizedRecordsAreRefusedAtSend() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                await #expect(throws: DataProxyError.self) {
                    try await client.send(String(repeating: "x", count: 70_000), group: "g", stream: "s")
                }
                do {
                    try await client.send(String(repeating: "x", count: 70_000), group: "g", stream: "s")
                } catch let error as DataProxyError {
                    #expect(error.code == .messageTooLarge)
                }
                do {
                    try await client.send("", group: "g", stream: "s")
                    Issue.record("an empty record was accepted")
                } catch let error as DataProxyError {
                    #expect(error.code == .invalidArgument)
                }
                do {
                    try await client.send("x", group: "g&h", stream: "s")
                    Issue.record("a group with '&' was accepted")
                } catch let error as DataProxyError {
                    #expect(error.code == .invalidArgument)
                }
                #expect(client.statistics().tooLarge == 2)
                #expect(client.statistics().accepted == 0)
            }
        }
    }

    /// The client remembers the first group and stream it found valid, so as not to check them per record: names
    /// that differ from that pair are still checked, whichever part differs.
    @Test func namesAfterAValidPairAreStillChecked() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("x", group: "g", stream: "s")
                try await client.send("x", group: "g", stream: "s")
                for (group, stream) in [("g", "s&t"), ("g", "s=t"), ("g", " s"), ("g", "s\u{A0}"), ("", "s"), ("g&h", "s"), ("g=", "s")] {
                    do {
                        try await client.send("x", group: group, stream: stream)
                        Issue.record("group '\(group)' and stream '\(stream)' were accepted")
                    } catch let error as DataProxyError {
                        #expect(error.code == .invalidArgument)
                    }
                }
                try await client.send("x", group: "g", stream: "t")
                try await client.send("x", group: "h", stream: "s")
                #expect(client.statistics().accepted == 4)
                #expect(await client.flush(timeout: .seconds(120)))
            }
            let arrived = receiver.memorySink.messages.map { "\($0.group)/\($0.stream)" }
            #expect(receiver.memorySink.recordCount == 4)
            #expect(Set(arrived) == ["g/s", "g/t", "h/s"])
        }
    }

    @Test func discoveryThroughTheManagerWithAuth() async throws {
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        var manager = DataProxyManagerServer.Configuration()
        manager.credentials = .init(secretID: "id", secretKey: "secret")
        receiverConfiguration.manager = manager
        try await withReceiver(receiverConfiguration) { receiver in
            var managerConfiguration = DataProxyClient.Configuration.Manager(url: try await receiver.manager!.baseURL(), groups: ["g"])
            managerConfiguration.credentials = ("id", "secret")
            managerConfiguration.cacheFile = nil
            var configuration = clientConfiguration(ports: [])
            configuration.proxies = []
            configuration.manager = managerConfiguration
            try await withDataProxyClient(configuration: configuration) { client in
                for index in 0..<100 { try await client.send("m\(index)", group: "g", stream: "s") }
                #expect(await client.flush())
                #expect(client.proxies == [Endpoint(host: "127.0.0.1", port: try await receiver.port())])
            }
            #expect(receiver.memorySink.recordCount == 100)
            #expect(receiver.manager!.requestCount >= 1)
        }
    }

    @Test func managerDownAtStartUsesTheCacheFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cacheFile = directory.appendingPathComponent("proxies.json").path
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.manager = .init()
        try await withReceiver(receiverConfiguration) { receiver in
            let url = try await receiver.manager!.baseURL()
            var managerConfiguration = DataProxyClient.Configuration.Manager(url: url, groups: ["g"])
            managerConfiguration.cacheFile = cacheFile
            managerConfiguration.attempts = 1
            var configuration = clientConfiguration(ports: [])
            configuration.manager = managerConfiguration
            // A first run fills the cache.
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("first", group: "g", stream: "s")
                #expect(await client.flush())
            }
            #expect(FileManager.default.fileExists(atPath: cacheFile))
            // The Manager now fails; a new client starts from the cache.
            receiver.manager!.setFault(.unavailable)
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("second", group: "g", stream: "s")
                #expect(await client.flush())
                #expect(client.statistics().acked == 1)
            }
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["first", "second"])
        }
    }

    @Test(arguments: [DataProxyManagerServer.Fault.emptyNodeList, .malformedBody, .failure("group not ready")])
    func badManagerAnswersKeepTheCurrentProxies(fault: DataProxyManagerServer.Fault) async throws {
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        receiverConfiguration.manager = .init()
        try await withReceiver(receiverConfiguration) { receiver in
            var managerConfiguration = DataProxyClient.Configuration.Manager(url: try await receiver.manager!.baseURL(), groups: ["g"])
            managerConfiguration.cacheFile = nil
            managerConfiguration.refreshInterval = .milliseconds(50)
            managerConfiguration.attempts = 1
            var configuration = clientConfiguration(ports: [])
            configuration.manager = managerConfiguration
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("before", group: "g", stream: "s")
                #expect(await client.flush())
                receiver.manager!.setFault(fault)
                let requests = receiver.manager!.requestCount
                #expect(await eventually { receiver.manager!.requestCount >= requests + 2 })
                try await client.send("after", group: "g", stream: "s")
                #expect(await client.flush())
                #expect(client.proxies.count == 1)
            }
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["before", "after"])
        }
    }

    @Test func messageAttributesReachTheServerAndNeverShareABatch() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                for round in 0..<3 {
                    try await client.send(contentsOf: (0..<10).map { ByteBuffer(string: "a\(round)-\($0)") }, group: "g", stream: "s", attributes: [("source", "a")])
                    try await client.send(contentsOf: (0..<10).map { DataProxyRecord("b\(round)-\($0)") }, group: "g", stream: "s", attributes: [("source", "b"), ("host", "h1")])
                    try await client.send("plain\(round)", group: "g", stream: "s")
                    try await client.send("c\(round)", group: "g", stream: "s", messageAttributes: [("source", "c")])
                }
                #expect(await client.flush())
                #expect(client.statistics().acked == 66)
            }
            let messages = receiver.memorySink.messages
            let bodies = { (message: ReceivedMessage) in message.records.map { String(buffer: $0.body) } }
            let a = messages.filter { $0.attributes.hasSuffix("&source=a") }
            let b = messages.filter { $0.attributes.hasSuffix("&source=b&host=h1") }
            let c = messages.filter { $0.attributes.hasSuffix("&source=c") }
            let plain = messages.filter { !$0.attributes.contains("source=") }
            #expect(a.flatMap(bodies).count == 30)
            #expect(a.flatMap(bodies).allSatisfy { $0.hasPrefix("a") })
            #expect(b.flatMap(bodies).count == 30)
            #expect(b.flatMap(bodies).allSatisfy { $0.hasPrefix("b") })
            #expect(c.flatMap(bodies) == ["c0", "c1", "c2"])
            #expect(plain.flatMap(bodies) == ["plain0", "plain1", "plain2"])
            #expect(messages.allSatisfy { $0.group == "g" && $0.stream == "s" })
        }
    }

    @Test func reservedOrMalformedMessageAttributesAreRefused() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                for attributes in [[("dt", "1")], [("groupId", "other")], [("k", "a&b")], [("", "v")]] {
                    do {
                        try await client.send(contentsOf: [ByteBuffer(string: "x")], group: "g", stream: "s", attributes: attributes)
                        Issue.record("message attributes \(attributes) were accepted")
                    } catch let error as DataProxyError {
                        #expect(error.code == .invalidArgument)
                    }
                }
                do {
                    try await client.send("x", group: "g", stream: "s", messageAttributes: [("streamId", "t")])
                    Issue.record("a reserved message attribute was accepted")
                } catch let error as DataProxyError {
                    #expect(error.code == .invalidArgument)
                    #expect(error.detail.contains("reserved"))
                }
                #expect(client.statistics().accepted == 0)
            }
        }
    }
}
