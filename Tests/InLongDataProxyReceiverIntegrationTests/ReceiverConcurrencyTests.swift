import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import NIOCore
import Synchronization
import Testing

/// How many of one connection's requests the receiver processes at once, and requests held by a fault when the
/// receiver stops.
@Suite(.timeLimit(.minutes(2))) struct ReceiverConcurrencyTests {
    /// A sink that counts writers inside it, and can hold them until `width` are inside at once.
    final class OverlapSink: DataProxyReceiverSink {
        private struct State {
            var inside = 0
            var most = 0
            var bodies: [String] = []
            var held: [CheckedContinuation<Void, Never>] = []
        }

        private let state = Mutex(State())
        /// Writers wait until this many are inside; 1 lets each through at once.
        private let width: Int

        init(width: Int) {
            self.width = width
        }

        func write(_ message: ReceivedMessage) async throws {
            let released = self.state.withLock { state -> [CheckedContinuation<Void, Never>]? in
                state.inside += 1
                state.most = max(state.most, state.inside)
                state.bodies += message.records.map { String(buffer: $0.body) }
                guard state.inside >= self.width else { return nil }
                defer { state.held.removeAll() }
                return state.held
            }
            if let released {
                for writer in released { writer.resume() }
            } else {
                await withCheckedContinuation { continuation in self.state.withLock { $0.held.append(continuation) } }
            }
            // A suspension point, so that overlapping writers get a chance to overlap.
            await Task.yield()
            self.state.withLock { $0.inside -= 1 }
        }

        var most: Int { self.state.withLock { $0.most } }
        var bodies: [String] { self.state.withLock { $0.bodies } }
    }

    @Test func byDefaultAConnectionsRequestsReachTheSinkOneAtATimeInOrder() async throws {
        let sink = OverlapSink(width: 1)
        try await withReceiver(sink: sink) { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            var frames = ByteBuffer()
            for uniq in 1...200 { frames.writeImmutableBuffer(try binaryFrame(["r\(uniq)"], uniq: UInt32(uniq))) }
            try await client.write(frames)
            var uniqs: [UInt32] = []
            for _ in 1...200 { uniqs.append(binaryAck(try await readAck(client))?.uniq ?? 0) }
            #expect(uniqs == Array(1...200))
            await client.close()
        }
        #expect(sink.bodies == (1...200).map { "r\($0)" })
        #expect(sink.most == 1)
    }

    @Test func moreConcurrentRequestsOverlapInTheSink() async throws {
        // Each writer waits until four are inside: only four requests of one connection at once get through.
        let sink = OverlapSink(width: 4)
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.maxConcurrentRequests = 4
        try await withReceiver(configuration, sink: sink) { receiver in
            let client = try await RawClient.connect(port: try await receiver.port())
            var frames = ByteBuffer()
            for uniq in 1...8 { frames.writeImmutableBuffer(try binaryFrame(["r\(uniq)"], uniq: UInt32(uniq))) }
            try await client.write(frames)
            var uniqs: Set<UInt32> = []
            for _ in 1...8 { uniqs.insert(binaryAck(try await readAck(client))?.uniq ?? 0) }
            #expect(uniqs == Set(1...8))
            await client.close()
        }
        #expect(sink.most == 4)
    }

    @Test func stoppingDropsRequestsHeldWhileReadingIsStopped() async throws {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.faults.stopReading = true
        let sink = InMemorySink()
        let receiver = DataProxyReceiver(configuration: configuration, sink: sink)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await receiver.run() }
            let client = try await RawClient.connect(port: try await receiver.port())
            try await client.write(try binaryFrame(["held"], uniq: 1))
            #expect(await eventually { receiver.statistics().openConnections == 1 })
            receiver.stop()
            // run() returns although a request is held, and the held request is neither stored nor answered.
            try await group.waitForAll()
            #expect(await client.read() == .closed)
            await client.close()
        }
        #expect(sink.recordCount == 0)
        #expect(receiver.statistics().openConnections == 0)
    }
}
