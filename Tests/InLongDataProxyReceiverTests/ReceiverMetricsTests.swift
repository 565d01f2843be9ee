import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import MetricsTestKit
import NIOCore
import Testing

/// The counters reach swift-metrics with the labels and dimensions operators alert on.
@Suite struct ReceiverMetricsTests {
    @Test func countersReachTheMetricsFactory() async throws {
        let metrics = TestMetrics()
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.metricsFactory = metrics
        configuration.knownGroups = ["test_group"]
        try await withReceiver(configuration) { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            let first = try binaryFrame(["a", "b"], uniq: 1)
            let second = try binaryFrame(["c"], uniq: 2, compress: true)
            try await client.write(first)
            #expect(binaryAck(try await readAck(client))?.result.isDelivered == true)
            try await client.write(second)
            #expect(binaryAck(try await readAck(client))?.result.isDelivered == true)
            try await client.write(try binaryFrame(["x"], attributes: "groupId=other&streamId=s", uniq: 3))
            #expect(binaryAck(try await readAck(client))?.result.errorCode == .topicIsBlank)
            var heartbeat = ByteBuffer()
            try InLongBinaryHeartbeat(dataTime: 1, bodyVersion: 1).encode(into: &heartbeat)
            try await client.write(heartbeat)
            if case .frame = await client.read() {} else { Issue.record("no heartbeat reply") }

            let garbage = try await RawClient.connect(port: try await receiver.port())
            try await garbage.write(ByteBuffer(bytes: [0, 0, 0, 5, 0x7F, 1, 2, 3, 4]))
            #expect(await garbage.read() == .closed)
            #expect(await eventually { (try? metrics.expectCounter("inlong.receiver.protocol_errors").totalValue) == 1 })

            #expect(try metrics.expectCounter("inlong.receiver.records").totalValue == 3)
            #expect(try metrics.expectCounter("inlong.receiver.messages").totalValue == 2)
            // Decompressed record blocks: a 4-byte length before each 1-byte record.
            #expect(try metrics.expectCounter("inlong.receiver.payload.bytes").totalValue == 15)
            #expect(try metrics.expectCounter("inlong.receiver.heartbeats").totalValue == 1)
            #expect(try metrics.expectCounter("inlong.receiver.frames").totalValue == 5)
            let frameBytes = first.readableBytes + second.readableBytes + heartbeat.readableBytes
            #expect(try metrics.expectCounter("inlong.receiver.bytes").totalValue >= Int64(frameBytes))
            #expect(try metrics.expectCounter("inlong.receiver.errors", [("code", "115")]).totalValue == 1)
            #expect(try metrics.expectGauge("inlong.receiver.connections").values.max() == 2)
            await client.close()
            #expect(await eventually { (try? metrics.expectGauge("inlong.receiver.connections").lastValue) == 0 })
            #expect(receiver.statistics().records == 3)
        }
    }
}
