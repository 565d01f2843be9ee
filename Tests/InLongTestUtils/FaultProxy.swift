import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on `127.0.0.1` between a client and an upstream server that misbehaves on demand: the faults a
/// network, a load balancer or an overloaded DataProxy inflict. The mode can change while it runs; it applies to
/// connections accepted from then on.
public final class FaultProxy: Sendable {
    public enum Mode: Sendable, Equatable {
        /// Forward both ways.
        case pass
        /// Accept, then close at once (a proxy at its connection limit, a load balancer with no backend).
        case refuse
        /// Accept and never read: the client's socket buffers fill up.
        case stall
        /// Read everything and forward nothing, answer nothing.
        case blackhole
        /// Forward both ways, each chunk `delay` late (order kept): a long link.
        case delay(Duration)
        /// Forward both ways at most `bytesPerSecond` each way, reading no further ahead than 64 KiB, so that the
        /// sender's socket fills up as on a slow link.
        case throttle(bytesPerSecond: Int)
        /// Forward both ways, and abort (RST) each connection `period` after it was accepted.
        case reset(every: Duration)
    }

    private struct State {
        var mode: Mode
        var accepted = 0
        var children: [any Channel] = []
    }

    private final class Box: Sendable {
        let state: Mutex<State>
        init(_ mode: Mode) { self.state = Mutex(State(mode: mode)) }
    }

    private let channel: any Channel
    private let box: Box
    public let port: Int

    /// Connections accepted so far, whatever the mode.
    public var acceptedConnections: Int { self.box.state.withLock { $0.accepted } }

    public var mode: Mode {
        get { self.box.state.withLock { $0.mode } }
        set { self.box.state.withLock { $0.mode = newValue } }
    }

    public init(upstreamPort: Int, mode: Mode = .pass) async throws {
        let box = Box(mode)
        self.box = box
        self.channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { child in
                let mode = box.state.withLock { state in
                    state.accepted += 1
                    state.children.append(child)
                    return state.mode
                }
                switch mode {
                case .refuse:
                    return child.close()
                case .stall:
                    return child.eventLoop.makeSucceededVoidFuture()
                case .blackhole:
                    return child.eventLoop.makeCompletedFuture {
                        try child.pipeline.syncOperations.addHandler(DiscardHandler())
                        try child.syncOptions?.setOption(.autoRead, value: true)
                    }
                case .pass, .delay, .throttle, .reset:
                    var shaping = GlueHandler.Shaping()
                    if case .delay(let delay) = mode { shaping.delay = TimeAmount(delay) }
                    if case .throttle(let rate) = mode { shaping.bytesPerSecond = max(rate, 1) }
                    if case .reset(let period) = mode {
                        // A zero linger makes the close an RST, as a crashing proxy or a middlebox sends.
                        child.eventLoop.scheduleTask(in: TimeAmount(period)) {
                            guard let socket = child as? any SocketOptionProvider else { return child.close(promise: nil) }
                            socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in child.close(promise: nil) }
                        }
                    }
                    let finalShaping = shaping
                    return ClientBootstrap(group: child.eventLoop)
                        .channelOption(.autoRead, value: false)
                        .connect(host: "127.0.0.1", port: upstreamPort)
                        .flatMap { upstream in
                            let (a, b) = GlueHandler.pair(shaping: finalShaping)
                            return child.eventLoop.makeCompletedFuture {
                                try child.pipeline.syncOperations.addHandler(a)
                                try upstream.pipeline.syncOperations.addHandler(b)
                                // Reading starts once both ends are joined, so no byte arrives with nowhere to go.
                                try child.syncOptions?.setOption(.autoRead, value: true)
                                try upstream.syncOptions?.setOption(.autoRead, value: true)
                            }
                        }
                        .flatMapError { _ in child.close() }
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        self.port = self.channel.localAddress!.port!
    }

    /// Closes every connection accepted so far (the listener stays).
    public func dropConnections() async {
        let children = self.box.state.withLock { state in
            defer { state.children.removeAll() }
            return state.children
        }
        for child in children { try? await child.close() }
    }

    /// Stops listening and closes every connection.
    public func stop() async {
        try? await self.channel.close()
        await self.dropConnections()
    }
}

/// Reads and drops everything.
private final class DiscardHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// One of two handlers joining two channels on one event loop: what one reads the other writes, reads pause
/// while the other side is not writable, and a close on either side closes both.
private final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    /// How what one side reads is passed to the other.
    struct Shaping {
        var delay: TimeAmount?
        var bytesPerSecond: Int?
    }

    /// Bytes read ahead of the throttle at most.
    static let throttleWindow = 64 << 10

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var readPending = false
    private let shaping: Shaping
    /// With a throttle: when the bytes read so far have all left, and how many are still to leave.
    private var throttledUntil = NIODeadline.uptimeNanoseconds(0)
    private var throttledBytes = 0

    private init(shaping: Shaping) {
        self.shaping = shaping
    }

    static func pair(shaping: Shaping = Shaping()) -> (GlueHandler, GlueHandler) {
        let first = GlueHandler(shaping: shaping)
        let second = GlueHandler(shaping: shaping)
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let rate = self.shaping.bytesPerSecond {
            // Each chunk leaves once the bytes before it and itself have had their time at the rate.
            let bytes = self.unwrapInboundIn(data).readableBytes
            let now = NIODeadline.now()
            self.throttledUntil = max(self.throttledUntil, now) + .nanoseconds(Int64(bytes) * 1_000_000_000 / Int64(rate))
            self.throttledBytes += bytes
            context.eventLoop.assumeIsolated().scheduleTask(deadline: self.throttledUntil) {
                self.partner?.context?.writeAndFlush(data, promise: nil)
                self.throttledBytes -= bytes
                if self.readPending, self.throttledBytes < Self.throttleWindow {
                    self.readPending = false
                    self.context?.read()
                }
            }
        } else if let delay = self.shaping.delay {
            context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                self.partner?.context?.writeAndFlush(data, promise: nil)
            }
        } else {
            self.partner?.context?.write(data, promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.shaping.bytesPerSecond == nil, self.shaping.delay == nil { self.partner?.context?.flush() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.partner?.context?.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let partner = self.partner, partner.readPending,
            partner.shaping.bytesPerSecond == nil || partner.throttledBytes < Self.throttleWindow
        {
            partner.readPending = false
            partner.context?.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.shaping.bytesPerSecond != nil, self.throttledBytes >= Self.throttleWindow {
            self.readPending = true
        } else if self.partner?.context?.channel.isWritable ?? false {
            context.read()
        } else {
            self.readPending = true
        }
    }
}
