import InLongTestUtils
import InLongTransport
import NIOCore
import NIOPosix
import Synchronization

/// An in-process TCP server on 127.0.0.1 that speaks ``TestCodec`` and misbehaves on demand.
final class TestServer: Sendable {
    enum Behavior: Sendable, Equatable {
        /// Answer every request with a response of the same key and payload; answer heartbeats.
        case echo
        /// Answer every request with an empty response of the same key; answer heartbeats.
        case acknowledge
        /// Accept, then close at once.
        case acceptThenClose
        /// Read everything, answer nothing (a half-open or hung peer).
        case silent
        /// Answer each request after a delay.
        case slow(TimeAmount)
        /// Collect `n` requests, then answer them in reverse order.
        case reverseEvery(Int)
        /// Answer with garbage bytes.
        case garbage
        /// Write half of the response frame, then reset the connection.
        case resetMidFrame
        /// Answer with each response split into 1-byte writes.
        case oneByteWrites
        /// Never read from the socket, so the client's socket buffers fill up.
        case stopReading
    }

    let channel: any Channel
    let port: Int
    private let box: StateBox

    var endpoint: Endpoint { Endpoint(host: "127.0.0.1", port: self.port) }
    var connectionCount: Int { self.box.state.withLock { $0.connections } }
    var requestCount: Int { self.box.state.withLock { $0.requests } }
    /// Connections whose server-side handler is active (a client can see "connected" before that).
    var activeConnectionCount: Int { self.box.state.withLock { $0.active } }
    /// Responses clients sent to the requests pushed to them.
    var receivedResponses: [TestFrame] { self.box.state.withLock { $0.responses } }
    /// Whether every client connection can take more writes (`false` once a client stops reading).
    var childrenWritable: [Bool] { self.box.state.withLock { $0.children }.filter(\.isActive).map(\.isWritable) }
    var behavior: Behavior {
        get { self.box.state.withLock { $0.behavior } }
        set { self.box.state.withLock { $0.behavior = newValue } }
    }

    init(behavior: Behavior = .echo, port: Int = 0) async throws {
        let box = StateBox()
        box.state.withLock { $0.behavior = behavior }
        self.box = box
        self.channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    box.state.withLock {
                        $0.connections += 1
                        $0.children.append(channel)
                    }
                    if box.state.withLock({ $0.behavior }) == .acceptThenClose {
                        channel.close(promise: nil)
                        return
                    }
                    if box.state.withLock({ $0.behavior }) == .stopReading {
                        try channel.syncOptions?.setOption(.autoRead, value: false)
                    }
                    try channel.pipeline.syncOperations.addHandler(ServerHandler(box: box))
                }
            }
            .bind(host: "127.0.0.1", port: port)
            .get()
        self.port = self.channel.localAddress!.port!
    }

    /// Pushes an unsolicited frame to every connected client.
    func push(_ frame: TestFrame) {
        for child in self.box.state.withLock({ $0.children }) {
            child.writeAndFlush(frame.bytes, promise: nil)
        }
    }

    /// Closes every client connection (the listener stays).
    func dropConnections() async {
        for child in self.box.state.withLock({ $0.children }) { try? await child.close() }
    }

    func stop() async {
        try? await self.channel.close()
        await self.dropConnections()
    }
}

private final class StateBox: Sendable {
    let state = Mutex<(behavior: TestServer.Behavior, connections: Int, requests: Int, children: [any Channel], active: Int, responses: [TestFrame])>((.echo, 0, 0, [], 0, []))
}

private final class ServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let box: StateBox
    var buffer = ByteBuffer()
    var held: [TestFrame] = []
    let codec = TestCodec()

    init(box: StateBox) { self.box = box }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.box.state.withLock { $0.active += 1 } }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.box.state.withLock { $0.active += 1 }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.box.state.withLock { $0.active -= 1 }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        self.buffer.writeBuffer(&incoming)
        while true {
            let boundary: FrameBoundary
            do {
                boundary = try self.codec.frameBoundary(in: self.buffer)
            } catch {
                // Not this test's peer (a client of another test reconnecting to a port reused since): hang up.
                context.close(promise: nil)
                return
            }
            guard case .frame(let length) = boundary, self.buffer.readableBytes >= length else { break }
            guard let frame = try? self.codec.decode(self.buffer.readSlice(length: length)!) else {
                context.close(promise: nil)
                return
            }
            self.handle(frame, context: context)
        }
        self.buffer.discardReadBytes()
    }

    private func handle(_ frame: TestFrame, context: ChannelHandlerContext) {
        let behavior = self.box.state.withLock { state in
            if frame.kind == .request { state.requests += 1 }
            return state.behavior
        }
        if frame.kind == .heartbeat {
            if behavior != .silent { context.writeAndFlush(self.wrapOutboundOut(TestFrame(kind: .heartbeatReply, key: 0).bytes), promise: nil) }
            return
        }
        if frame.kind == .response {
            self.box.state.withLock { $0.responses.append(frame) }
            return
        }
        guard frame.kind == .request else { return }
        let response = TestFrame.response(frame.key, frame.payload)
        switch behavior {
        case .echo:
            context.writeAndFlush(self.wrapOutboundOut(response.bytes), promise: nil)
        case .acknowledge:
            context.writeAndFlush(self.wrapOutboundOut(TestFrame.response(frame.key).bytes), promise: nil)
        case .acceptThenClose, .silent, .stopReading:
            break
        case .slow(let delay):
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: delay) {
                loopBound.value.writeAndFlush(NIOAny(response.bytes), promise: nil)
            }
        case .reverseEvery(let n):
            self.held.append(response)
            if self.held.count == n {
                for held in self.held.reversed() { context.write(self.wrapOutboundOut(held.bytes), promise: nil) }
                context.flush()
                self.held.removeAll()
            }
        case .garbage:
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: [0xff, 0xff, 0xff, 0xff, 1, 2, 3])), promise: nil)
        case .resetMidFrame:
            var bytes = response.bytes
            let half = bytes.readSlice(length: bytes.readableBytes / 2)!
            context.writeAndFlush(self.wrapOutboundOut(half), promise: nil)
            // SO_LINGER 0 turns the close into a TCP reset.
            let channel = context.channel
            if let provider = channel as? any SocketOptionProvider {
                provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
        case .oneByteWrites:
            for byte in response.bytes.readableBytesView {
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: [byte])), promise: nil)
            }
        }
    }
}

/// A bare client channel that writes what it is given and collects response frames, for tests that watch the
/// socket itself (its writability) rather than a ``PersistentConnection``.
final class RawClient: Sendable {
    let channel: any Channel
    private let collected: Collector<TestFrame>

    var responses: [TestFrame] { self.collected.all }

    private init(channel: any Channel, collected: Collector<TestFrame>) {
        self.channel = channel
        self.collected = collected
    }

    static func connect(to endpoint: Endpoint) async throws -> RawClient {
        let collected = Collector<TestFrame>()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FrameCollector(collected: collected))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .get()
        return RawClient(channel: channel, collected: collected)
    }

    private final class FrameCollector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let collected: Collector<TestFrame>
        var buffer = ByteBuffer()
        let codec = TestCodec()

        init(collected: Collector<TestFrame>) { self.collected = collected }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var incoming = self.unwrapInboundIn(data)
            self.buffer.writeBuffer(&incoming)
            while case .frame(let length)? = try? self.codec.frameBoundary(in: self.buffer), self.buffer.readableBytes >= length {
                guard let frame = try? self.codec.decode(self.buffer.readSlice(length: length)!) else {
                    context.close(promise: nil)
                    return
                }
                self.collected.append(frame)
            }
            self.buffer.discardReadBytes()
        }
    }
}
