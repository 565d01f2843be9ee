import InLongWire
public import NIOCore
import NIOPosix
import Synchronization

/// A bare TCP client that sends raw bytes to a receiver and reads whole frames back, for byte-exact tests.
public final class RawClient: Sendable {
    /// What the next read saw.
    public enum Read: Sendable, Equatable {
        case frame(ByteBuffer)
        /// The peer closed the connection.
        case closed
        /// Nothing arrived within the wait.
        case timedOut
    }

    fileprivate struct State {
        var reads: [Read] = []
        var waiter: (id: Int, continuation: CheckedContinuation<Read, Never>)?
        var nextID = 0
    }

    /// What the connection delivered, shared with its handler.
    fileprivate final class Inbox: Sendable {
        let state = Mutex(State())
    }

    private let channel: any Channel
    private let inbox: Inbox

    private init(channel: any Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    /// Connects to `127.0.0.1:port`. The handlers are in place before the connection is, so a peer that closes
    /// at once is seen.
    public static func connect(port: Int) async throws -> RawClient {
        let inbox = Inbox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(InLongFrameDecoder(maxFrameSize: 16 << 20)),
                        Collector(inbox: inbox)
                    )
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawClient(channel: channel, inbox: inbox)
    }
}

extension RawClient.Inbox {
    fileprivate func deliver(_ read: RawClient.Read) {
        let waiter = self.state.withLock { state -> CheckedContinuation<RawClient.Read, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                if read == .closed { state.reads.append(.closed) }
                return waiter.continuation
            }
            state.reads.append(read)
            return nil
        }
        waiter?.resume(returning: read)
    }
}

extension RawClient {
    /// Writes bytes as they are.
    public func write(_ bytes: ByteBuffer) async throws {
        try await self.channel.writeAndFlush(bytes)
    }

    /// Writes bytes as they are.
    public func write(_ bytes: [UInt8]) async throws {
        try await self.write(ByteBuffer(bytes: bytes))
    }

    /// The next frame, or `.closed`/`.timedOut`.
    public func read(timeout: Duration = .seconds(10)) async -> Read {
        let id = self.inbox.state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        let timer = Task {
            try await Task.sleep(for: timeout)
            let waiter = self.inbox.state.withLock { state -> CheckedContinuation<RawClient.Read, Never>? in
                guard let waiter = state.waiter, waiter.id == id else { return nil }
                state.waiter = nil
                return waiter.continuation
            }
            waiter?.resume(returning: .timedOut)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let ready = self.inbox.state.withLock { state -> Read? in
                if !state.reads.isEmpty {
                    let first = state.reads.removeFirst()
                    // A close stays visible to every later read.
                    if first == .closed { state.reads.insert(.closed, at: 0) }
                    return first
                }
                state.waiter = (id, continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Closes the connection.
    public func close() async {
        try? await self.channel.close()
    }
}

private final class Collector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let inbox: RawClient.Inbox
    private var closed = false

    init(inbox: RawClient.Inbox) { self.inbox = inbox }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.inbox.deliver(.frame(self.unwrapInboundIn(data)))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !self.closed {
            self.closed = true
            self.inbox.deliver(.closed)
        }
    }
}
