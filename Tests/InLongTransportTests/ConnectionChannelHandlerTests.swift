import InLongTestUtils
import NIOCore
import NIOEmbedded
import Testing

@testable import InLongTransport

/// The handler on an `EmbeddedChannel`, with virtual time for heartbeats, dead peers and request timeouts.
@Suite struct ConnectionChannelHandlerTests {
    struct Fixture {
        let channel: EmbeddedChannel
        let loop: EmbeddedEventLoop
        let handler: ConnectionChannelHandler<TestCodec>
        let counters: StatisticsCounters
    }

    func makeFixture(
        heartbeat: TimeAmount? = .seconds(10),
        read: TimeAmount? = .seconds(30),
        queueTimeout: TimeAmount? = nil,
        recycleAfterTimeouts: Int? = nil
    ) throws -> Fixture {
        let counters = StatisticsCounters()
        let (channel, loop, handler) = try makeEmbeddedHandler(
            codec: TestCodec(),
            stateMachine: .init(
                maxInFlight: 4,
                maxQueued: 4,
                heartbeatInterval: heartbeat,
                readTimeout: read,
                queueTimeout: queueTimeout,
                recycleAfterTimeouts: recycleAfterTimeouts
            ),
            maxFrameLength: 1024,
            counters: counters
        )
        return Fixture(channel: channel, loop: loop, handler: handler, counters: counters)
    }

    func readFrame(_ channel: EmbeddedChannel) throws -> TestFrame? {
        guard let bytes = try channel.readOutbound(as: ByteBuffer.self) else { return nil }
        return try TestCodec().decode(bytes)
    }

    @Test func heartbeatIsSentAfterTheWriteIdleInterval() throws {
        let fixture = try self.makeFixture()
        fixture.loop.advanceTime(by: .seconds(9))
        #expect(try self.readFrame(fixture.channel) == nil)
        fixture.loop.advanceTime(by: .seconds(1))
        #expect(try self.readFrame(fixture.channel)?.kind == .heartbeat)
        // The reply counts as traffic and gives an RTT.
        fixture.loop.advanceTime(by: .milliseconds(5))
        try fixture.channel.writeInbound(TestFrame(kind: .heartbeatReply, key: 0).bytes)
        #expect(fixture.counters.snapshot().lastHeartbeatRTT == .milliseconds(5))
        fixture.loop.advanceTime(by: .seconds(10))
        #expect(try self.readFrame(fixture.channel)?.kind == .heartbeat)
        #expect(fixture.channel.isActive)
        _ = try? fixture.channel.finish()
    }

    /// The peer's own heartbeat is answered at once, with the codec's response, and not handed on as unsolicited.
    @Test func aPeerHeartbeatIsAnswered() throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: nil)
        try fixture.channel.writeInbound(TestFrame(kind: .heartbeat, key: 41).bytes)
        fixture.loop.run()
        #expect(try self.readFrame(fixture.channel) == TestFrame(kind: .heartbeatReply, key: 41))
        // Other frames the peer sends on its own are not answered.
        try fixture.channel.writeInbound(TestFrame(kind: .push, key: 42).bytes)
        fixture.loop.run()
        #expect(try self.readFrame(fixture.channel) == nil)
        _ = try? fixture.channel.finish()
    }

    @Test func silentPeerIsDeclaredDeadAfterTheReadTimeout() throws {
        let fixture = try self.makeFixture()
        let promise = fixture.loop.makePromise(of: TestFrame.self)
        fixture.handler.submitRequest(.request(1), promise: promise, timeout: .minutes(5))
        fixture.loop.run()
        #expect(try self.readFrame(fixture.channel)?.key == 1)
        fixture.loop.advanceTime(by: .seconds(29))
        #expect(fixture.channel.isActive)
        fixture.loop.advanceTime(by: .seconds(1))
        #expect(!fixture.channel.isActive)
        #expect(throws: TransportError(.heartbeatTimeout, mayHaveBeenDelivered: true, endpoint: Endpoint(host: "127.0.0.1", port: 1))) {
            try promise.futureResult.wait()
        }
    }

    @Test func inboundBytesPostponeTheDeadPeerVerdict() throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: .seconds(30))
        for _ in 0..<5 {
            fixture.loop.advanceTime(by: .seconds(20))
            try fixture.channel.writeInbound(TestFrame(kind: .push, key: 9).bytes)
        }
        #expect(fixture.channel.isActive)
        fixture.loop.advanceTime(by: .seconds(30))
        #expect(!fixture.channel.isActive)
    }

    /// A task cancelled just before its request was submitted has its cancellation run first, where it finds
    /// nothing; the one it submits behind the request cancels it.
    @Test func aCancellationThatOvertookItsRequestIsRepeatedBehindIt() async throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: nil)
        let key = UInt32(9)
        let bytes = TestFrame.request(9).bytes
        // The handler is fed, and the continuation resumed, on this thread before the task suspends.
        var caught: (any Error)?
        do {
            _ = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<TestFrame, any Error>) in
                let completion = ConnectionOperation<TestFrame>.Completion.awaitingResponse(continuation, ticket: 1)
                fixture.handler.take([
                    .cancel(key: key, ticket: 1),
                    .request(key: key, bytes: bytes, completion: completion, timeout: .seconds(60)),
                    .cancel(key: key, ticket: 1),
                ])
            }
        } catch {
            caught = error
        }
        let error = try #require(caught as? TransportError)
        #expect(error.code == .cancelled)
        #expect(fixture.counters.snapshot().inFlight == 0)
    }

    @Test func requestTimesOutAndTheLateResponseIsIgnored() throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: nil)
        let promise = fixture.loop.makePromise(of: TestFrame.self)
        fixture.handler.submitRequest(.request(42), promise: promise, timeout: .seconds(5))
        fixture.loop.run()
        #expect(try self.readFrame(fixture.channel)?.key == 42)
        fixture.loop.advanceTime(by: .seconds(5))
        #expect {
            try promise.futureResult.wait()
        } throws: { error in
            let error = error as! TransportError
            return error.code == .requestTimeout && error.mayHaveBeenDelivered
        }
        try fixture.channel.writeInbound(TestFrame.response(42).bytes)
        #expect(fixture.counters.snapshot().requestsTimedOut == 1)
        #expect(fixture.counters.snapshot().requestsSucceeded == 0)
        #expect(fixture.counters.snapshot().inFlight == 0)
        #expect(fixture.channel.isActive)
        _ = try? fixture.channel.finish()
    }

    /// A request held back by a full socket (not writable) for longer than its timeout is not failed: its timeout
    /// starts once its frame is written.
    @Test func aRequestWaitingForTheSocketTimesOutOnlyAfterItIsWritten() throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: nil)
        fixture.channel.isWritable = false
        fixture.channel.pipeline.fireChannelWritabilityChanged()
        let promise = fixture.loop.makePromise(of: TestFrame.self)
        let outcome = Outcome(promise.futureResult)
        fixture.handler.submitRequest(.request(7), promise: promise, timeout: .seconds(5))
        fixture.loop.advanceTime(by: .seconds(20))
        #expect(outcome.error == nil)
        fixture.channel.isWritable = true
        fixture.channel.pipeline.fireChannelWritabilityChanged()
        fixture.loop.run()
        #expect(try self.readFrame(fixture.channel)?.key == 7)
        fixture.loop.advanceTime(by: .seconds(4))
        #expect(outcome.error == nil)
        fixture.loop.advanceTime(by: .seconds(1))
        #expect(outcome.error.map { $0.code == .requestTimeout && $0.mayHaveBeenDelivered } == true)
        _ = try? fixture.channel.finish()
    }

    @Test func aRequestNeverWrittenFailsUndeliveredAfterTheQueueTimeout() throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: nil, queueTimeout: .seconds(30))
        fixture.channel.isWritable = false
        fixture.channel.pipeline.fireChannelWritabilityChanged()
        let promise = fixture.loop.makePromise(of: TestFrame.self)
        let outcome = Outcome(promise.futureResult)
        fixture.handler.submitRequest(.request(7), promise: promise, timeout: .seconds(5))
        fixture.loop.advanceTime(by: .seconds(29))
        #expect(outcome.error == nil)
        fixture.loop.advanceTime(by: .seconds(1))
        #expect(outcome.error.map { $0.code == .requestTimeout && !$0.mayHaveBeenDelivered } == true)
        #expect(fixture.counters.snapshot().inFlight == 0)
        #expect(fixture.channel.isActive)
        _ = try? fixture.channel.finish()
    }

    /// Three requests in a row time out: the connection is closed as unresponsive, and the request still in
    /// flight fails with that reason, as possibly delivered.
    @Test func consecutiveTimeoutsCloseTheChannelAsUnresponsive() throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: nil, recycleAfterTimeouts: 3)
        let long = fixture.loop.makePromise(of: TestFrame.self)
        let longOutcome = Outcome(long.futureResult)
        fixture.handler.submitRequest(.request(100), promise: long, timeout: .minutes(5))
        for key in 1...3 {
            let promise = fixture.loop.makePromise(of: TestFrame.self)
            let outcome = Outcome(promise.futureResult)
            fixture.handler.submitRequest(.request(UInt32(key)), promise: promise, timeout: .seconds(1))
            fixture.loop.run()
            #expect(fixture.channel.isActive)
            fixture.loop.advanceTime(by: .seconds(1))
            #expect(outcome.error?.code == .requestTimeout)
        }
        #expect(!fixture.channel.isActive)
        #expect(longOutcome.error.map { $0.code == .unresponsive && $0.mayHaveBeenDelivered } == true)
    }

    @Test func aResponseBetweenTimeoutsKeepsTheChannel() throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: nil, recycleAfterTimeouts: 2)
        for key in 1...4 {
            fixture.handler.submitRequest(.request(UInt32(key)), promise: fixture.loop.makePromise(), timeout: .seconds(1))
            fixture.loop.run()
            fixture.loop.advanceTime(by: .seconds(1))
            // A late response after each timeout: the peer is slow, not gone.
            try fixture.channel.writeInbound(TestFrame.response(UInt32(key)).bytes)
        }
        #expect(fixture.channel.isActive)
        #expect(fixture.counters.snapshot().requestsTimedOut == 4)
        _ = try? fixture.channel.finish()
    }

    @Test func responsesCompleteRequestsAndFramesWrittenInOneTickShareAFlush() throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: nil)
        let promises = (0..<3).map { _ in fixture.loop.makePromise(of: TestFrame.self) }
        for (key, promise) in promises.enumerated() {
            fixture.handler.submitRequest(.request(UInt32(key), "p\(key)"), promise: promise, timeout: nil)
        }
        fixture.loop.run()
        // One buffer carries all three frames.
        var written = try #require(try fixture.channel.readOutbound(as: ByteBuffer.self))
        #expect(try fixture.channel.readOutbound(as: ByteBuffer.self) == nil)
        var keys: [UInt32] = []
        while written.readableBytes > 0 {
            let length = Int(written.getInteger(at: written.readerIndex, as: UInt32.self)!) + 4
            keys.append(try TestCodec().decode(written.readSlice(length: length)!).key)
        }
        #expect(keys == [0, 1, 2])
        // Out of order, split over two reads.
        var inbound = TestFrame.response(2, "r2").bytes
        inbound.writeImmutableBuffer(TestFrame.response(0, "r0").bytes)
        let half = inbound.readSlice(length: 7)!
        try fixture.channel.writeInbound(half)
        try fixture.channel.writeInbound(inbound)
        try fixture.channel.writeInbound(TestFrame.response(1, "r1").bytes)
        #expect(try promises.map { try $0.futureResult.wait().payload } == ["r0", "r1", "r2"])
        #expect(try fixture.channel.finish().isClean)
    }

    @Test func oversizedFrameIsAProtocolViolation() throws {
        let fixture = try self.makeFixture(heartbeat: nil, read: nil)
        let promise = fixture.loop.makePromise(of: TestFrame.self)
        fixture.handler.submitRequest(.request(1), promise: promise, timeout: nil)
        fixture.loop.run()
        try fixture.channel.writeInbound(ByteBuffer(bytes: [0, 0, 0x10, 0, 0]))
        #expect(!fixture.channel.isActive)
        #expect {
            try promise.futureResult.wait()
        } throws: { error in
            (error as! TransportError).code == .protocolViolation
        }
    }
}

/// The outcome of a future on the embedded loop, read without waiting.
final class Outcome<Value: Sendable>: @unchecked Sendable {
    private(set) var value: Value?
    private(set) var error: TransportError?

    init(_ future: EventLoopFuture<Value>) {
        future.whenComplete { result in
            switch result {
            case .success(let value): self.value = value
            case .failure(let error): self.error = error as? TransportError
            }
        }
    }
}
