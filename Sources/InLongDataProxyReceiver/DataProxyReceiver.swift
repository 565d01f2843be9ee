import CoreMetrics
import Foundation
public import InLongTransport
import InLongWire
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle

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
    public let configuration: Configuration
    /// Where received records go.
    public let sink: any DataProxyReceiverSink
    /// The Manager endpoint, when ``Configuration/manager`` is set.
    public let manager: DataProxyManagerServer?
    /// DataProxy's HTTP source, when ``Configuration/httpPort`` is set.
    let httpServer: DataProxyHTTPServer?
    private let logger: Logger
    private let core: ReceiverCore
    private let server: ReceiverCore.Server
    private let address = ListeningAddress()

    public init(
        configuration: Configuration,
        sink: any DataProxyReceiverSink,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger.disabled
    ) {
        self.configuration = configuration
        self.sink = sink
        self.logger = logger
        let core = ReceiverCore(configuration: configuration, sink: sink, logger: logger)
        self.core = core
        var server = ReceiverCore.Server.Configuration(host: configuration.host, port: configuration.port)
        server.maxConnections = configuration.maxConnections
        server.maxConcurrentRequests = configuration.maxConcurrentRequests
        server.handlerPool = HandlerPoolConfiguration(width: 64, queueLimit: configuration.maxQueuedRequests)
        server.readTimeout = configuration.readIdleTimeout
        server.maxFrameLength = configuration.maxFrameSize
        // The receiver publishes its own metrics (`inlong_receiver_*`).
        server.metricsFactory = NOOPMetricsHandler.instance
        self.server = ReceiverCore.Server(
            codec: DataProxyServerCodec(maxFrameSize: configuration.maxFrameSize),
            configuration: server,
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            connectionRejected: { core.counters.connectionRejected() },
            connectionOpened: { core.connectionOpened($0) }
        )
        let manager = configuration.manager.map { manager in
            var manager = manager
            manager.durableAcks = manager.durableAcks ?? configuration.fsync
            return DataProxyManagerServer(configuration: manager, nodes: [], eventLoopGroup: eventLoopGroup, logger: logger)
        }
        self.manager = manager
        // The Manager endpoint lists the HTTP port as the receiver's HTTP node once it listens.
        let (advertisedIP, host) = (configuration.advertisedIP, configuration.host)
        self.httpServer = configuration.httpPort.map {
            DataProxyHTTPServer(
                core: core,
                host: configuration.host,
                port: $0,
                tlsConfiguration: configuration.httpTLSConfiguration,
                eventLoopGroup: eventLoopGroup,
                listening: { address in
                    manager?.setHTTPNodes([.init(ip: advertisedIP ?? address.ipAddress ?? host, port: address.port ?? 0)])
                }
            )
        }
    }

    /// The address the receiver listens on, once it does. Throws if it could not bind.
    public func localAddress() async throws -> SocketAddress {
        try await self.address.value()
    }

    /// The receiver's port, once it listens.
    public func port() async throws -> Int { try await self.localAddress().port ?? 0 }

    /// The address of the HTTP source (``Configuration/httpPort``), once it listens. Throws if there is none or
    /// it could not bind.
    public func httpLocalAddress() async throws -> SocketAddress {
        guard let httpServer else { throw ReceiverError.stopped }
        return try await httpServer.address.value()
    }

    /// A snapshot of the counters.
    public func statistics() -> ReceiverStatistics { self.core.counters.snapshot() }

    /// The faults injected now.
    public var currentFaults: Faults { self.core.faults.current }

    /// Changes the injected faults; takes effect from the next frame of every connection.
    public func updateFaults(_ update: (inout Faults) -> Void) {
        self.core.faults.update(update)
    }

    /// Closes every open connection without a reply, as a crashing proxy would; the receiver keeps listening.
    public func dropConnections() {
        self.server.closeConnections()
    }

    /// Stops listening; every connection answers the requests under way, then closes, and ``run()`` returns.
    public func stop() {
        // A receiver stopped before it listened never will.
        self.address.settle(.failure(ReceiverError.stopped))
        self.httpServer?.address.settle(.failure(ReceiverError.stopped))
        self.core.faults.stop()
        self.server.stop()
    }

    public func run() async throws {
        guard !self.configuration.fsync || self.sink.acksAreDurable else {
            self.address.settle(.failure(ReceiverError.sinkNotDurable))
            throw ReceiverError.sinkNotDurable
        }
        Gauge(label: "inlong_receiver_durable_acks", factory: self.configuration.metricsFactory ?? MetricsSystem.factory)
            .record(self.sink.acksAreDurable ? 1 : 0)
        // Cancelled, Hummingbird's accept loop lets NIO drop the accepted connections it still buffers, which
        // traps; so the Manager endpoint is shut down gracefully, not cancelled.
        let sideServices = [self.manager as (any Service)?, self.httpServer].compactMap { $0 }
        let managerGroup = sideServices.isEmpty ? nil : ServiceGroup(services: sideServices, logger: self.logger)
        let result = await withDiscardingTaskGroup(returning: Result<Void, any Error>.self) { acks in
            acks.addTask { await self.core.sendDelayedAcks() }
            defer { acks.cancelAll() }
            do {
                try await self.serve(managerGroup: managerGroup)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try? await self.sink.flush()
        try result.get()
    }

    private func serve(managerGroup: ServiceGroup?) async throws {
        try await withThrowingTaskGroup { group in
            group.addTask {
                do {
                    try await self.server.run()
                } catch {
                    let error = ReceiverError.cannotListen(on: "\(self.configuration.host):\(self.configuration.port)", because: error)
                    self.address.settle(.failure(error))
                    throw error
                }
            }
            if let address = try? await self.server.localAddress() {
                self.address.settle(.success(address))
                self.logger.debug("receiver listening", metadata: ["inlong.address": "\(address)"])
                if let managerGroup {
                    if let manager = self.manager {
                        let ip = self.configuration.advertisedIP ?? address.ipAddress ?? self.configuration.host
                        manager.setNodes([.init(ip: ip, port: address.port ?? 0)])
                    }
                    group.addTask { try await managerGroup.run() }
                }
            }
            // The server ends on stop, graceful shutdown or cancellation; the Manager endpoint only if it fails.
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
    }
}

/// Errors of the receiver itself.
public struct ReceiverError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Base: Hashable, Sendable {
        case stopped
        case cannotListen(address: String, cause: String)
        case sinkNotDurable
    }

    private let base: Base

    /// The receiver was stopped before it listened.
    public static let stopped = ReceiverError(base: .stopped)

    /// The receiver (or its Manager endpoint) cannot listen on `address`: in use, not an address of this host, ...
    public static func cannotListen(on address: String, because error: any Error) -> ReceiverError {
        let cause = (error as? IOError).map { String(cString: strerror($0.errnoCode)).lowercased() } ?? "\(error)"
        return ReceiverError(base: .cannotListen(address: address, cause: cause))
    }

    /// ``DataProxyReceiver/Configuration/fsync`` asks for acks after fsync, and the sink does not sync.
    public static let sinkNotDurable = ReceiverError(base: .sinkNotDurable)

    public var description: String {
        switch self.base {
        case .sinkNotDurable: "fsync is on, but the sink does not make its writes durable before they are acked"
        case .stopped: "the receiver was stopped"
        case .cannotListen(let address, let cause): "cannot listen on \(address): \(cause)"
        }
    }
}

func currentTimeMillis() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
}
