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
            #expect(await eventually { (try? metrics.expectCounter("inlong_receiver_protocol_errors_total").totalValue) == 1 })

            #expect(try metrics.expectCounter("inlong_receiver_records_total").totalValue == 3)
            #expect(try metrics.expectCounter("inlong_receiver_messages_total").totalValue == 2)
            // Decompressed record blocks: a 4-byte length before each 1-byte record.
            #expect(try metrics.expectCounter("inlong_receiver_payload_bytes_total").totalValue == 15)
            #expect(try metrics.expectCounter("inlong_receiver_heartbeats_total").totalValue == 1)
            #expect(try metrics.expectCounter("inlong_receiver_frames_total").totalValue == 5)
            let frameBytes = first.readableBytes + second.readableBytes + heartbeat.readableBytes
            #expect(try metrics.expectCounter("inlong_receiver_bytes_total").totalValue >= Int64(frameBytes))
            #expect(try metrics.expectCounter("inlong_receiver_errors_total", [("code", "115")]).totalValue == 1)
            #expect(try metrics.expectGauge("inlong_receiver_connections").values.max() == 2)
            await client.close()
            #expect(await eventually { (try? metrics.expectGauge("inlong_receiver_connections").lastValue) == 0 })
            #expect(receiver.statistics().records == 3)
        }
    }
}
