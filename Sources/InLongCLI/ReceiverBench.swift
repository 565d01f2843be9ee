import Foundation
import InLongDataProxyReceiver
import InLongWire
import NIOCore
import NIOPosix

/// Measures the receiver alone: a raw sender writes pre-encoded type-7 frames, many in flight, and counts acks.
/// The frames are what the SDK sends by default (about 60 KiB of records, snappy-compressed), so the figure says
/// whether the receiver can keep up with the SDK benchmarks.
struct ReceiverBench {
    var records: Int
    var size: Int
    var connections: Int
    var window: Int
    var compress: Bool
    var decode: Bool

    struct Outcome {
        var records: Int
        var frames: Int
        var failedAcks: Int
        var payloadBytes: Int
        var wireBytes: Int
        var seconds: Double
    }

    func run(template: [ByteBuffer]) async throws -> Outcome {
        let perFrame = max(1, min(5000, (60 << 10) / (self.size + 4)))
        var frames: [ByteBuffer] = []
        for index in 0..<8 {
            let records = (0..<perFrame).map { InLongRecord(data: template[(index * perFrame + $0) % template.count]) }
            let message = try InLongBinaryMessage(
                records: records,
                attributes: "groupId=bench&streamId=s",
                uniq: UInt32(index),
                dataTime: 1_700_000_000,
                compressionThreshold: self.compress ? 512 : nil
            )
            var frame = ByteBuffer()
            try message.encode(into: &frame)
            frames.append(frame)
        }
        let frameCount = (self.records + perFrame - 1) / perFrame
        let receiver = DataProxyReceiver(configuration: .loopback, sink: CountingSink(decodeRecords: self.decode))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await receiver.run() }
            defer { receiver.stop() }
            let port = try await receiver.port()
            let start = ContinuousClock.now
            var futures: [EventLoopFuture<Int>] = []
            var assigned = 0
            for connection in 0..<self.connections {
                let share = frameCount / self.connections + (connection < frameCount % self.connections ? 1 : 0)
                futures.append(try await self.pipeline(port: port, frames: frames, count: share, offset: assigned))
                assigned += share
            }
            var failed = 0
            for future in futures { failed += try await future.get() }
            let seconds = secondsSince(start)
            let statistics = receiver.statistics()
            receiver.stop()
            try await group.waitForAll()
            return Outcome(
                records: statistics.records,
                frames: statistics.messages,
                failedAcks: failed,
                payloadBytes: statistics.records * self.size,
                wireBytes: statistics.bytes,
                seconds: seconds
            )
        }
    }

    /// One connection writing `count` frames with at most `window` unacked; the future gives the failed acks.
    private func pipeline(port: Int, frames: [ByteBuffer], count: Int, offset: Int) async throws -> EventLoopFuture<Int> {
        let window = self.window
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: port)
            .get()
        return try await channel.eventLoop.submit {
            let done = channel.eventLoop.makePromise(of: Int.self)
            let sender = PipelinedSender(frames: frames, total: count, offset: offset, window: window, done: done)
            try channel.pipeline.syncOperations.addHandler(sender)
            sender.start(channel: channel)
            return done.futureResult.always { _ in channel.close(promise: nil) }
        }.get()
    }
}

private final class PipelinedSender: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let frames: [ByteBuffer]
    private let total: Int
    private let offset: Int
    private let window: Int
    private let done: EventLoopPromise<Int>
    private var sent = 0
    private var acked = 0
    private var failed = 0
    private var buffer = ByteBuffer()

    init(frames: [ByteBuffer], total: Int, offset: Int, window: Int, done: EventLoopPromise<Int>) {
        self.frames = frames
        self.total = total
        self.offset = offset
        self.window = window
        self.done = done
    }

    func start(channel: any Channel) {
        if self.total == 0 { self.done.succeed(0) }
        self.fill(channel: channel)
    }

    private func fill(channel: any Channel) {
        var wrote = false
        while self.sent < self.total, self.sent - self.acked < self.window {
            channel.write(self.frames[(self.offset + self.sent) % self.frames.count], promise: nil)
            self.sent += 1
            wrote = true
        }
        if wrote { channel.flush() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        self.buffer.writeBuffer(&bytes)
        do {
            while let length = try InLongFraming.frameLength(in: self.buffer, maxFrameSize: 1 << 20),
                length <= self.buffer.readableBytes
            {
                let frame = self.buffer.readSlice(length: length)!
                if case .binaryAck(let ack) = try InLongResponse(frame: frame), ack.result.isDelivered {} else {
                    self.failed += 1
                }
                self.acked += 1
            }
        } catch {
            self.done.fail(error)
            return
        }
        self.buffer.discardReadBytes()
        if self.acked == self.total {
            self.done.succeed(self.failed)
        } else {
            self.fill(channel: context.channel)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if self.acked < self.total { self.done.fail(ChannelError.eof) }
    }
}
