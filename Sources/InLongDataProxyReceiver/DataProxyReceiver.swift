import Foundation
import InLongWire
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// A TCP server that speaks the InLong DataProxy protocol like Apache InLong's DataProxy: it accepts request
/// types 1 to 8, validates them with the server's rules and error codes, hands the records to a sink and answers
/// byte for byte as the real server does. It can serve the Manager's proxy-list endpoint next to itself, and can
/// misbehave on purpose (``Faults``) for testing clients.
///
/// Run it as a `Service`:
/// ```swift
/// let sink = InMemorySink()
/// let receiver = DataProxyReceiver(configuration: .loopback, sink: sink)
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await receiver.run() }
///     let address = try await receiver.localAddress()
///     // send to address ...
///     receiver.stop()
/// }
/// ```
public final class DataProxyReceiver: Service, Sendable {
    private typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    private struct State {
        var serverChannel: (any Channel)?
        /// Connections wrapped on accept that the accept loop has not taken yet. NIO drops those it has not
        /// handed over when the listener closes or the loop is cancelled, and a dropped, unfinished
        /// `NIOAsyncChannel` traps; kept here, they are finished when the receiver stops accepting.
        var unclaimed: [ObjectIdentifier: Connection] = [:]
        var connections: [ObjectIdentifier: any Channel] = [:]
        /// Once set, accepted connections are closed instead of wrapped.
        var stopped = false
    }

    public let configuration: Configuration
    /// Where received records go.
    public let sink: any DataProxyReceiverSink
    /// The Manager endpoint, when ``Configuration/manager`` is set.
    public let manager: DataProxyManagerServer?
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State())
    private let address = ListeningAddress()
    private let faults: Mutex<Faults>
    private let errorBudget = Mutex(0.0)
    private let counters: ReceiverObservation

    public init(
        configuration: Configuration,
        sink: any DataProxyReceiverSink,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "inlong.receiver", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.configuration = configuration
        self.sink = sink
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.faults = Mutex(configuration.faults)
        self.counters = ReceiverObservation(delegate: ReceiverObservation.delegate(for: configuration))
        self.manager = configuration.manager.map {
            DataProxyManagerServer(configuration: $0, nodes: [], eventLoopGroup: eventLoopGroup, logger: logger)
        }
    }

    /// The address the receiver listens on, once it does. Throws if it could not bind.
    public func localAddress() async throws -> SocketAddress {
        try await self.address.value()
    }

    /// The receiver's port, once it listens.
    public func port() async throws -> Int { try await self.localAddress().port ?? 0 }

    /// A snapshot of the counters.
    public func statistics() -> ReceiverStatistics { self.counters.snapshot() }

    /// The faults injected now.
    public var currentFaults: Faults { self.faults.withLock { $0 } }

    /// Changes the injected faults; takes effect from the next frame of every connection.
    public func updateFaults(_ update: (inout Faults) -> Void) {
        self.faults.withLock { update(&$0) }
    }

    /// Closes every open connection without a reply, as a crashing proxy would; the receiver keeps listening.
    public func dropConnections() {
        let channels = self.state.withLock { Array($0.connections.values) }
        for channel in channels { channel.close(promise: nil) }
    }

    /// Stops listening and closes every connection; ``run()`` then returns.
    public func stop() {
        let (server, channels) = self.state.withLock { state in
            state.stopped = true
            return (state.serverChannel, Array(state.connections.values))
        }
        // A receiver stopped before it listened never will.
        self.address.settle(.failure(ReceiverError.stopped))
        server?.close(promise: nil)
        for channel in channels { channel.close(promise: nil) }
    }

    public func run() async throws {
        let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
        do {
            server = try await self.bind()
        } catch {
            let error = ReceiverError.cannotListen(on: "\(self.configuration.host):\(self.configuration.port)", because: error)
            self.address.settle(.failure(error))
            throw error
        }
        let address = server.channel.localAddress!
        let stopped = self.state.withLock { state in
            state.serverChannel = server.channel
            return state.stopped
        }
        self.address.settle(.success(address))
        if stopped { server.channel.close(promise: nil) }
        self.logger.debug("receiver listening", metadata: ["inlong.address": "\(address)"])

        // Cancelled, Hummingbird's accept loop lets NIO drop the accepted connections it still buffers, which
        // traps; so the Manager endpoint is shut down gracefully, not cancelled.
        let managerGroup = self.manager.map { ServiceGroup(services: [$0], logger: self.logger) }
        try await withThrowingTaskGroup { group in
            if let manager = self.manager, let managerGroup {
                manager.setNodes([.init(ip: self.proxyIP(address), port: address.port ?? 0)])
                group.addTask { try await managerGroup.run() }
            }
            group.addTask {
                try await withGracefulShutdownHandler {
                    try await self.acceptLoop(server, address: address)
                } onGracefulShutdown: {
                    self.stop()
                }
            }
            var failure: (any Error)?
            do {
                try await group.next()
            } catch {
                failure = error
            }
            self.stop()
            await managerGroup?.triggerGracefulShutdown()
            while !group.isEmpty { _ = try? await group.next() }
            if let failure { throw failure }
        }
        try? await self.sink.flush()
    }

    private func bind() async throws -> NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never> {
        let configuration = self.configuration
        let highWatermark = max(configuration.maxBufferedFrames, 2)
        return try await ServerBootstrap(group: self.eventLoopGroup)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    do {
                        let operations = channel.pipeline.syncOperations
                        try operations.addHandler(
                            ByteToMessageHandler(InLongFrameDecoder(maxFrameSize: configuration.maxFrameSize))
                        )
                        if let timeout = configuration.readIdleTimeout {
                            try operations.addHandler(IdleStateHandler(readTimeout: TimeAmount(timeout)))
                            try operations.addHandler(ReadIdleCloseHandler())
                        }
                        return try self.adopt(channel) {
                            try Connection(
                                wrappingChannelSynchronously: channel,
                                configuration: .init(
                                    backPressureStrategy: .init(
                                        lowWatermark: highWatermark / 2,
                                        highWatermark: highWatermark
                                    )
                                )
                            )
                        }
                    } catch {
                        // NIO neither registers nor closes a child whose initializer failed.
                        channel.close(promise: nil)
                        throw error
                    }
                }
            }
    }

    /// Wraps an accepted channel and keeps it until the accept loop takes it. Refuses once the receiver stopped,
    /// as the loop may have finished what it kept already.
    private func adopt(_ channel: any Channel, wrap: () throws -> Connection) throws -> Connection {
        try self.state.withLock { state in
            guard !state.stopped else { throw ReceiverError.stopped }
            let connection = try wrap()
            state.unclaimed[ObjectIdentifier(channel)] = connection
            return connection
        }
    }

    private func acceptLoop(
        _ server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>,
        address: SocketAddress
    ) async throws {
        let processorTemplate = RequestProcessor(
            proxyIP: self.proxyIP(address),
            localPort: address.port ?? 0,
            knownGroups: self.configuration.knownGroups,
            decodesRecords: self.sink.needsRecords,
            load: nil,
            maxUncompressedLength: self.configuration.maxUncompressedLength
        )
        enum Verdict { case serve, reject, close, ownedElsewhere }
        try await withThrowingDiscardingTaskGroup { group in
            defer {
                // Whatever ended the loop (stop, cancellation, a listener error), connections NIO accepted but
                // did not hand over are finished here; none is adopted after this.
                for connection in self.stopAccepting() {
                    group.addTask { try? await connection.executeThenClose { _, _ in } }
                }
            }
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    let id = ObjectIdentifier(connection.channel)
                    let verdict = self.state.withLock { state -> Verdict in
                        guard state.unclaimed.removeValue(forKey: id) != nil else { return .ownedElsewhere }
                        guard !state.stopped else { return .close }
                        guard state.connections.count < self.configuration.maxConnections else { return .reject }
                        state.connections[id] = connection.channel
                        return .serve
                    }
                    switch verdict {
                    case .serve:
                        group.addTask { await self.serve(connection, processor: processorTemplate) }
                    case .reject:
                        self.counters.connectionRejected()
                        fallthrough
                    case .close:
                        // executeThenClose finishes the channel's writer, which must not be dropped unfinished.
                        group.addTask { try? await connection.executeThenClose { _, _ in } }
                    case .ownedElsewhere:
                        continue
                    }
                }
            }
        }
    }

    /// Stops the receiver and hands over the connections accepted but never taken by the accept loop.
    private func stopAccepting() -> [Connection] {
        self.stop()
        return self.state.withLock { state in
            defer { state.unclaimed.removeAll() }
            return Array(state.unclaimed.values)
        }
    }

    private func proxyIP(_ address: SocketAddress) -> String {
        self.configuration.advertisedIP ?? address.ipAddress ?? self.configuration.host
    }

    // MARK: One connection

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, processor template: RequestProcessor) async {
        let channel = connection.channel
        self.counters.connectionOpened()
        defer {
            self.counters.connectionClosed()
            _ = self.state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
        }
        let client = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        let logger = {
            var logger = self.logger
            logger[metadataKey: "inlong.client"] = "\(client)"
            return logger
        }()
        do {
            try await connection.executeThenClose { inbound, outbound in
                try await withThrowingDiscardingTaskGroup { delayedAcks in
                    // A closed connection can send no more acks: do not wait out their delays.
                    defer { delayedAcks.cancelAll() }
                    var delivered = 0
                    for try await frame in inbound {
                        try await self.waitWhileReadingIsStopped()
                        self.counters.frameRead(bytes: frame.readableBytes)
                        let faults = self.currentFaults
                        var processor = template
                        processor.load = faults.load
                        switch processor.process(frame, receivedAt: currentTimeMillis(), clientAddress: client) {
                        case .reply(let reply, let code):
                            if let code {
                                self.counters.error(code)
                            } else {
                                self.counters.heartbeat()
                            }
                            try await outbound.write(reply)
                        case .noReply(let code):
                            if let code { self.counters.error(code) }
                        case .close(let error):
                            self.counters.protocolError()
                            logger.debug("closing connection on a malformed frame", metadata: ["inlong.error": "\(error)"])
                            return
                        case .deliver(let message, let ack):
                            let reply: ByteBuffer?
                            if let code = faults.errorCode, self.injectError(rate: faults.errorRate) {
                                self.counters.error(code)
                                reply = ack.failure(code, message: "injected error", proxyIP: processor.proxyIP)
                            } else {
                                do {
                                    try await self.sink.write(message)
                                    self.counters.delivered(message)
                                    reply = ack.success(proxyIP: processor.proxyIP)
                                } catch {
                                    self.counters.error(.putEventToChannelFailure)
                                    logger.debug("sink refused a message", metadata: ["inlong.error": "\(error)"])
                                    reply = ack.failure(
                                        .putEventToChannelFailure,
                                        message: "Put event to channel failure",
                                        proxyIP: processor.proxyIP
                                    )
                                }
                            }
                            delivered += 1
                            if let reply, !faults.dropAcks {
                                if let delay = faults.ackDelay {
                                    delayedAcks.addTask {
                                        try await Task.sleep(for: delay)
                                        try await outbound.write(reply)
                                    }
                                } else {
                                    try await outbound.write(reply)
                                }
                            }
                            if let limit = faults.closeAfterFrames, delivered >= limit {
                                logger.debug("closing connection after \(delivered) frames (injected fault)")
                                return
                            }
                        }
                    }
                }
            }
        } catch let error as InLongWireError {
            self.counters.protocolError()
            logger.debug("closing connection on a malformed frame", metadata: ["inlong.error": "\(error)"])
        } catch {
            logger.trace("connection ended", metadata: ["inlong.error": "\(error)"])
        }
    }

    private func waitWhileReadingIsStopped() async throws {
        while self.faults.withLock({ $0.stopReading }) {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Spreads injected errors evenly: with rate r, the n-th request fails when ⌊n·r⌋ grows.
    private func injectError(rate: Double) -> Bool {
        self.errorBudget.withLock { budget in
            budget += min(max(rate, 0), 1)
            guard budget >= 1 - 1e-9 else { return false }
            budget -= 1
            return true
        }
    }
}

/// Errors of the receiver itself.
public struct ReceiverError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Base: Hashable, Sendable {
        case stopped
        case cannotListen(address: String, cause: String)
    }

    private let base: Base

    /// The receiver was stopped before it listened.
    public static let stopped = ReceiverError(base: .stopped)

    /// The receiver (or its Manager endpoint) cannot listen on `address`: in use, not an address of this host, ...
    public static func cannotListen(on address: String, because error: any Error) -> ReceiverError {
        let cause = (error as? IOError).map { String(cString: strerror($0.errnoCode)).lowercased() } ?? "\(error)"
        return ReceiverError(base: .cannotListen(address: address, cause: cause))
    }

    public var description: String {
        switch self.base {
        case .stopped: "the receiver was stopped"
        case .cannotListen(let address, let cause): "cannot listen on \(address): \(cause)"
        }
    }
}

func currentTimeMillis() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
}

/// Closes a connection whose read-idle timer fired, as the DataProxy does after `maxReadIdleTime`.
private final class ReadIdleCloseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? IdleStateHandler.IdleStateEvent, event == .read {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
