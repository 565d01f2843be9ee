import InLongTransport
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A listener's socket: a TCP server whose connections are split into messages, or a UDP socket whose datagrams
/// are messages; either way into the listener's ``ListenerQueue``.
final class ListenerServer: Sendable {
    let configuration: AgentConfiguration.Listener
    let queue: ListenerQueue
    let channel: any Channel
    private let connections: OpenConnections

    private init(configuration: AgentConfiguration.Listener, queue: ListenerQueue, channel: any Channel, connections: OpenConnections) {
        self.configuration = configuration
        self.queue = queue
        self.channel = channel
        self.connections = connections
    }

    /// Binds the listener; a port that cannot be bound is an ``AgentListenerError`` naming the address and cause.
    static func bind(_ configuration: AgentConfiguration.Listener, group: any EventLoopGroup, logger: Logger) async throws -> ListenerServer {
        let queue = ListenerQueue(maxBytes: configuration.maxBufferedBytes)
        let connections = OpenConnections()
        do {
            let channel: any Channel
            switch configuration.transport {
            case .tcp:
                channel = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        connections.add(channel)
                        return channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                ListenerConnectionHandler(configuration: configuration, queue: queue, logger: logger)
                            )
                        }
                    }
                    .bind(host: configuration.host, port: configuration.port)
                    .get()
            case .stdin:
                channel = try await Self.readStandardInput(configuration, queue: queue, group: group, logger: logger)
            case .udp:
                channel = try await DatagramBootstrap(group: group)
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                ListenerDatagramHandler(maxMessageLength: configuration.maxMessageLength, queue: queue)
                            )
                        }
                    }
                    .bind(host: configuration.host, port: configuration.port)
                    .get()
            }
            return ListenerServer(configuration: configuration, queue: queue, channel: channel, connections: connections)
        } catch {
            throw AgentListenerError(address: configuration.address, cause: error)
        }
    }

    /// Standard input as one connection of lines or syslog frames: read until its end (then the queue closes, and
    /// its instance ends once it sent what was queued), paused while the queue is full.
    private static func readStandardInput(
        _ configuration: AgentConfiguration.Listener,
        queue: ListenerQueue,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> any Channel {
        var status = stat()
        guard fstat(STDIN_FILENO, &status) == 0 else { throw AgentStandardInputError.cannotRead(errno) }
        // Readiness cannot be polled on a regular file: it is a file source's job (with offsets, too).
        guard status.st_mode & S_IFMT != S_IFREG else { throw AgentStandardInputError.regularFile }
        let descriptor = dup(STDIN_FILENO)
        guard descriptor >= 0 else { throw AgentStandardInputError.cannotRead(errno) }
        let channel = try await NIOPipeBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ListenerConnectionHandler(configuration: configuration, queue: queue, logger: logger)
                    )
                }
            }
            .takingOwnershipOfDescriptor(input: descriptor)
            .get()
        // The end of the input: what was read is queued (the handler's last frame included); nothing more comes.
        channel.closeFuture.whenComplete { _ in queue.close() }
        return channel
    }

    /// Stops taking messages: the socket and every connection close; what was queued is still read.
    func close() async {
        try? await self.channel.close()
        for connection in self.connections.all { try? await connection.close() }
        self.queue.close()
    }

    /// The `source` label of its metrics: its name, or its format and address with the port bound.
    var metricsName: String {
        self.configuration.name ?? "\(self.configuration.format.rawValue) \(self.statistics.address)"
    }

    var statistics: ListenerStatistics {
        ListenerStatistics(
            address: self.configuration.transport == .stdin
                ? "stdin" : "\(self.configuration.host):\(self.channel.localAddress?.port ?? self.configuration.port)/\(self.configuration.transport.rawValue)",
            port: self.channel.localAddress?.port ?? self.configuration.port,
            received: self.queue.received.load(ordering: .relaxed),
            dropped: self.queue.dropped.load(ordering: .relaxed),
            pauses: self.queue.pauses.load(ordering: .relaxed),
            cutMessages: self.queue.cut.load(ordering: .relaxed)
        )
    }
}

/// What a listener took in.
public struct ListenerStatistics: Sendable, Hashable {
    /// `host:port/transport`, with the port bound.
    public var address: String
    public var port: Int
    /// Messages queued for sending.
    public var received: Int
    /// UDP datagrams dropped because the queue was full or they were too long.
    public var dropped: Int
    /// Times a TCP connection stopped being read because the queue was full (its sender waited).
    public var pauses: Int
    /// Messages cut at the maximum length (the rest went on as another message).
    public var cutMessages: Int
}

/// A listener that cannot listen.
public struct AgentListenerError: Error, CustomStringConvertible {
    public var address: String
    public var cause: any Error

    public var description: String { "cannot listen on \(self.address): \(TransportError.plainCause(self.cause))" }
}

/// Standard input cannot be a listener's.
public enum AgentStandardInputError: Error, CustomStringConvertible {
    /// A regular file: read it with a file source instead.
    case regularFile
    case cannotRead(Int32)

    public var description: String {
        switch self {
        case .regularFile: "standard input is a regular file: read it with a file source (--path) instead"
        case .cannotRead(let code): "cannot read standard input: \(String(cString: strerror(code)))"
        }
    }
}

/// One TCP connection: frames split as the listener's format says, queued; while the queue is full the connection
/// keeps what did not fit (in order) and is not read, until the queue resumes it.
private final class ListenerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var splitter: SyslogFrameSplitter
    private var messages: [ByteBuffer] = []
    /// Messages the queue had no room for, in order: queued first when it resumes the connection. Bounded: once
    /// paused, the connection is read at most a few more times (what the event loop read before it saw the pause).
    private var kept: [ByteBuffer] = []
    private var paused = false
    private var cut = 0
    private let queue: ListenerQueue
    private let logger: Logger

    init(configuration: AgentConfiguration.Listener, queue: ListenerQueue, logger: Logger) {
        self.splitter = SyslogFrameSplitter(maxMessageLength: configuration.maxMessageLength, octetCounting: configuration.format == .syslog)
        self.queue = queue
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.messages.removeAll(keepingCapacity: true)
        do {
            try self.splitter.consume(self.unwrapInboundIn(data), appendingTo: &self.messages)
        } catch {
            self.logger.warning("closing a connection that cannot be followed", metadata: ["inlong.error": "\(error)"])
            context.close(promise: nil)
        }
        self.countCut()
        self.kept += self.messages
        if !self.paused { self.queueKept(context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ListenerResume else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        self.paused = false
        self.queueKept(context)
        if !self.paused { context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in } }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let last = self.splitter.finish() { self.kept.append(last) }
        self.countCut()
        // The connection's last messages: queued whatever the bound, never lost.
        if !self.kept.isEmpty { _ = self.queue.push(self.kept, from: context.channel, last: true) }
        self.kept = []
        context.fireChannelInactive()
    }

    private func countCut() {
        if self.splitter.cutMessages > self.cut {
            self.queue.cut.add(self.splitter.cutMessages - self.cut, ordering: .relaxed)
            self.cut = self.splitter.cutMessages
        }
    }

    private func queueKept(_ context: ChannelHandlerContext) {
        guard !self.kept.isEmpty else { return }
        let (queued, pause) = self.queue.push(self.kept, from: context.channel)
        self.kept.removeFirst(queued)
        if pause {
            self.paused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }
}

/// UDP: a datagram is a message (without a trailing newline).
private final class ListenerDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let maxMessageLength: Int
    private let queue: ListenerQueue

    init(maxMessageLength: Int, queue: ListenerQueue) {
        self.maxMessageLength = maxMessageLength
        self.queue = queue
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = SyslogFrameSplitter.trimmed(self.unwrapInboundIn(data).data)
        guard message.readableBytes > 0 else { return }
        guard message.readableBytes <= self.maxMessageLength else {
            self.queue.dropped.add(1, ordering: .relaxed)
            return
        }
        self.queue.push(datagram: message)
    }
}

/// A TCP listener's open connections, to close them at the stop.
private final class OpenConnections: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in _ = self.channels.withLock { $0.removeValue(forKey: id) } }
    }

    var all: [any Channel] { self.channels.withLock { Array($0.values) } }
}
