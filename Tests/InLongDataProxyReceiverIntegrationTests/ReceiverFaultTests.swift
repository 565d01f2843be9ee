import AsyncHTTPClient
import Foundation
import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import NIOCore
import NIOHTTP1
import Testing

/// Fault injection, limits, sinks and the Manager endpoint.
@Suite struct ReceiverFaultTests {
    @Test func injectedErrorsAreSpreadByRate() async throws {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.faults.errorCode = .sinkServiceUnready
        configuration.faults.errorRate = 0.5
        try await withReceiver(configuration) { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            var codes: [DataProxyResultCode] = []
            for uniq in 1...6 {
                try await client.write(try binaryFrame(["r\(uniq)"], uniq: UInt32(uniq)))
                codes.append(binaryAck(try await readAck(client))?.result.errorCode ?? .unknownError)
            }
            #expect(codes == [.success, .sinkServiceUnready, .success, .sinkServiceUnready, .success, .sinkServiceUnready])
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["r1", "r3", "r5"])

            // Cleared at run time.
            receiver.updateFaults { $0.errorCode = nil }
            try await client.write(try binaryFrame(["r7"], uniq: 7))
            #expect(binaryAck(try await readAck(client))?.result.isDelivered == true)
            await client.close()
        }
    }

    @Test func droppedAcksStoreButDoNotAnswer() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.dropAcks = true }
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(try binaryFrame(["kept"], uniq: 1))
            #expect(await eventually { receiver.memorySink.recordCount == 1 })
            #expect(await client.read(timeout: .milliseconds(200)) == .timedOut)
            receiver.updateFaults { $0.dropAcks = false }
            try await client.write(try binaryFrame(["answered"], uniq: 2))
            #expect(binaryAck(try await readAck(client))?.uniq == 2)
            await client.close()
        }
    }

    @Test func delayedAcksStillArrive() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.ackDelay = .milliseconds(50) }
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(try binaryFrame(["late"], uniq: 9))
            #expect(binaryAck(try await readAck(client))?.uniq == 9)
            await client.close()
        }
    }

    @Test func closeAfterFrames() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.closeAfterFrames = 2 }
            let client = try await RawClient.connect(port: try await receiver.port())
            var frames = ByteBuffer()
            for uniq in 1...4 { frames.writeImmutableBuffer(try binaryFrame(["f\(uniq)"], uniq: UInt32(uniq))) }
            try await client.write(frames)
            #expect(binaryAck(try await readAck(client))?.uniq == 1)
            #expect(binaryAck(try await readAck(client))?.uniq == 2)
            #expect(await client.read() == .closed)
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["f1", "f2"])
        }
    }

    @Test func stoppedReadingResumes() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.stopReading = true }
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(try binaryFrame(["held"], uniq: 1))
            #expect(await client.read(timeout: .milliseconds(200)) == .timedOut)
            #expect(receiver.memorySink.recordCount == 0)
            receiver.updateFaults { $0.stopReading = false }
            #expect(binaryAck(try await readAck(client))?.uniq == 1)
            #expect(receiver.memorySink.recordCount == 1)
            await client.close()
        }
    }

    @Test func configuredLoadIsReported() async throws {
        try await withReceiver { receiver in
            receiver.updateFaults { $0.load = 35 }
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(Fixtures.vector("d1_hb8_request_cpp").buffer)
            guard case .binaryHeartbeat(let reply) = try await readAck(client) else {
                Issue.record("expected a heartbeat reply")
                return
            }
            #expect(reply.load == 35)
            #expect(reply.reportedLoad == 35)
            await client.close()
        }
    }

    @Test func sinkFailureIsTheRetriableChannelError() async throws {
        struct Full: Error {}
        try await withReceiver { receiver in
            receiver.memorySink.failWrites(with: Full())
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(try binaryFrame(["x"], uniq: 3))
            let ack = binaryAck(try await readAck(client))
            #expect(ack?.result.errorCode == .putEventToChannelFailure)
            #expect(ack?.result.errorCode.disposition == .retriable)
            await client.close()
        }
    }

    @Test func connectionsBeyondTheLimitAreClosed() async throws {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.maxConnections = 1
        try await withReceiver(configuration) { receiver in
            let port = try await receiver.port()
            let first = try await RawClient.connect(port: port)
            try await first.write(try binaryFrame(["a"], uniq: 1))
            _ = try await readAck(first)
            let second = try await RawClient.connect(port: port)
            #expect(await second.read() == .closed)
            #expect(receiver.statistics().rejectedConnections == 1)
            // The first one still works.
            try await first.write(try binaryFrame(["b"], uniq: 2))
            #expect(binaryAck(try await readAck(first))?.uniq == 2)
            await first.close()
        }
    }

    @Test func idleConnectionsAreClosed() async throws {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.readIdleTimeout = .milliseconds(100)
        try await withReceiver(configuration) { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            #expect(await client.read() == .closed)
        }
    }

    @Test func droppedConnectionsAndStatistics() async throws {
        try await withReceiver { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(try binaryFrame(["a", "b", "c"], uniq: 1, compress: true))
            _ = try await readAck(client)
            try await client.write(Fixtures.vector("f3_hb1_request_go").buffer)
            _ = try await readAck(client)
            let statistics = receiver.statistics()
            #expect(statistics.frames == 2)
            #expect(statistics.messages == 1)
            #expect(statistics.records == 3)
            #expect(statistics.heartbeats == 1)
            #expect(statistics.payloadBytes == 3 * 5)
            #expect(statistics.openConnections == 1)
            receiver.dropConnections()
            #expect(await client.read() == .closed)
            #expect(await eventually { receiver.statistics().openConnections == 0 })
        }
    }

    @Test func countingSinkCountsWithoutDecoding() async throws {
        let sink = CountingSink()
        try await withReceiver(sink: sink) { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(try binaryFrame(["one", "two"], uniq: 1, compress: true))
            #expect(binaryAck(try await readAck(client))?.result.isDelivered == true)
            #expect(sink.recordCount == 2)
            #expect(sink.byteCount == 2 * 4 + 6)
            await client.close()
        }
    }

    @Test func jsonLinesSinkWritesOneLinePerRecord() async throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        let sink = try JSONLinesSink(url: url)
        try await withReceiver(sink: sink) { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            var binary = ByteBuffer(string: "x")
            binary.writeInteger(UInt8(0xFF))
            let message = try InLongBinaryMessage(
                records: [InLongRecord("say \"hi\"\n"), InLongRecord(data: binary, attributes: "dt=1700000000999")],
                attributes: "groupId=g&streamId=s",
                uniq: 1,
                dataTime: 1_700_000_000,
                extendedField: [.stringIdentifiers, .perRecordAttributes]
            )
            var frame = ByteBuffer()
            try message.encode(into: &frame)
            try await client.write(frame)
            _ = try await readAck(client)
            await client.close()
        }
        try sink.close()
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        #expect(first?["body"] as? String == "say \"hi\"\n")
        #expect(first?["encoding"] as? String == "utf8")
        #expect(first?["group"] as? String == "g")
        #expect(first?["dataTime"] as? Int == 1_700_000_000_000)
        let second = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any]
        #expect(second?["encoding"] as? String == "base64")
        #expect(second?["body"] as? String == Data([UInt8(ascii: "x"), 0xFF]).base64EncodedString())
        #expect(second?["recordAttributes"] as? String == "dt=1700000000999")
        #expect(second?["dataTime"] as? Int == 1_700_000_000_999)
    }

    @Test func withFsyncEveryAckedRecordIsInTheFile() async throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        let sink = try JSONLinesSink(url: url, fsync: true)
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.fsync = true
        let clients = 8
        let framesEach = 20
        try await withReceiver(configuration, sink: sink) { receiver in
            let port = try await receiver.port()
            try await withThrowingDiscardingTaskGroup { group in
                for client in 0..<clients {
                    group.addTask {
                        let connection = try await RawClient.connect(port: port)
                        for frame in 0..<framesEach {
                            try await connection.write(try binaryFrame(["c\(client)-f\(frame)-a", "c\(client)-f\(frame)-b"], uniq: UInt32(frame + 1)))
                            #expect(binaryAck(try await readAck(connection))?.result.isDelivered == true)
                        }
                        await connection.close()
                    }
                }
            }
            // Acked means synced: the file holds every record now, before any close.
            #expect(sink.syncCount >= 1)
            let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == clients * framesEach * 2)
        }
        try sink.close()
    }

    @Test func fsyncWithASinkThatDoesNotSyncRefusesToStart() async throws {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.fsync = true
        let receiver = DataProxyReceiver(configuration: configuration, sink: InMemorySink())
        await #expect(throws: ReceiverError.sinkNotDurable) { try await receiver.run() }
        await #expect(throws: ReceiverError.sinkNotDurable) { try await receiver.localAddress() }
    }

    // MARK: Manager endpoint

    @Test func managerAnswersWithTheReceiverAddress() async throws {
        var configuration = DataProxyReceiver.Configuration.loopback
        var manager = DataProxyManagerServer.Configuration()
        manager.credentials = .init(secretID: "id", secretKey: "key")
        manager.knownGroups = ["test_group"]
        configuration.manager = manager
        try await withReceiver(configuration) { receiver in
            let base = try await receiver.manager!.baseURL()
            let port = try await receiver.port()
            let authorization = "Basic " + Data("id:key".utf8).base64EncodedString()

            let (status, body) = try await post("\(base)/test_group", authorization: authorization)
            #expect(status == 200)
            let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            #expect(json?["success"] as? Bool == true)
            let data = json?["data"] as? [String: Any]
            #expect(data?["clusterId"] as? Int == 1)
            #expect(data?["load"] as? Int == 20)
            #expect(data?["maxPacketLength"] is NSNull)
            let nodes = data?["nodeList"] as? [[String: Any]]
            #expect(nodes?.count == 1)
            #expect(nodes?.first?["ip"] as? String == "127.0.0.1")
            #expect(nodes?.first?["port"] as? Int == port)
            // The receiver says whether its acks are durable (without --fsync: not).
            #expect(data?["durableAcks"] as? Bool == false)

            #expect(try await post("\(base)/test_group", authorization: nil).0 == 401)
            #expect(try await post("\(base)/test_group", authorization: "Basic eDp5").0 == 401)

            let unknown = try await post("\(base)/other", authorization: authorization)
            #expect(unknown.1.contains(#""success":false"#))

            receiver.manager!.setFault(.emptyNodeList)
            #expect(try await post("\(base)/test_group", authorization: authorization).1.contains(#""nodeList":null"#))
            receiver.manager!.setFault(.malformedBody)
            #expect((try? JSONSerialization.jsonObject(with: Data(try await post("\(base)/test_group", authorization: authorization).1.utf8))) == nil)
            receiver.manager!.setFault(.unavailable)
            #expect(try await post("\(base)/test_group", authorization: authorization).0 == 503)
            #expect(receiver.manager!.requestCount == 7)
        }
    }

    @Test func managerSaysTheReceiversAcksAreDurableWithFsync() async throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("inlong-manager-fsync-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.fsync = true
        configuration.manager = DataProxyManagerServer.Configuration()
        try await withReceiver(configuration, sink: try JSONLinesSink(url: url, fsync: true)) { receiver in
            let base = try await receiver.manager!.baseURL()
            let (status, body) = try await post("\(base)/g", authorization: nil)
            #expect(status == 200)
            let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            #expect((json?["data"] as? [String: Any])?["durableAcks"] as? Bool == true)
        }
    }

    private func post(_ url: String, authorization: String?) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        request.body = .bytes(ByteBuffer(string: "protocolType=TCP&ip=127.0.0.1"))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body))
    }
}
