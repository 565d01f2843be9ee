public import NIOCore
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
                case .pass:
                    return ClientBootstrap(group: child.eventLoop)
                        .channelOption(.autoRead, value: false)
                        .connect(host: "127.0.0.1", port: upstreamPort)
                        .flatMap { upstream in
                            let (a, b) = GlueHandler.pair()
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
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var readPending = false

    static func pair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler()
        let second = GlueHandler()
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
        self.partner?.context?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.context?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.partner?.context?.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let partner = self.partner, partner.readPending {
            partner.readPending = false
            partner.context?.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.partner?.context?.channel.isWritable ?? false {
            context.read()
        } else {
            self.readPending = true
        }
    }
}
