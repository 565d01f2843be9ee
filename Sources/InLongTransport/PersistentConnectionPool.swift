public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// How a ``PersistentConnectionPool`` picks the connection for a request among the ready ones.
public struct LoadBalancingPolicy: Sendable {
    /// A ready connection as the policy sees it.
    public struct Candidate: Sendable {
        public var endpoint: Endpoint
        public var inFlight: Int
        /// The peer's reported load, when it reports one (see ``PersistentConnection/reportedLoad``).
        public var load: Int?
    }

    enum Kind: Sendable {
        case roundRobin
        case leastInFlight
        case leastLoaded
        case custom(@Sendable ([Candidate]) -> Int)
    }

    let kind: Kind

    /// Each request goes to the next ready connection in turn.
    public static let roundRobin = LoadBalancingPolicy(kind: .roundRobin)
    /// Each request goes to the ready connection with the fewest requests in flight (ties: round robin).
    public static let leastInFlight = LoadBalancingPolicy(kind: .leastInFlight)
    /// Each request goes to the ready connection with the lowest cost, `(inFlight + 1) × (100 + load)`, where
    /// `load` is the peer's reported load (0 when it reports none; ties: round robin). Peers that report no
    /// load are chosen as by ``leastInFlight``; a peer reporting load 100 counts as twice as busy.
    public static let leastLoaded = LoadBalancingPolicy(kind: .leastLoaded)
    /// The closure returns the index of the chosen candidate (never called with an empty list).
    public static func custom(_ choose: @escaping @Sendable ([Candidate]) -> Int) -> LoadBalancingPolicy {
        LoadBalancingPolicy(kind: .custom(choose))
    }
}

/// A set of persistent connections, one per endpoint, with a pluggable choice of connection per request and
/// endpoint updates that keep healthy connections.
///
/// Run it as a `Service`; ``run()`` returns after a graceful shutdown or ``close()`` has drained every connection.
public final class PersistentConnectionPool<Codec: FrameCodec>: Service, Sendable {
    /// A connection became ready for requests, or stopped being ready: what the pool tells its owner, so that the
    /// owner keeps the ready set and picks without asking every connection (gRPC's round-robin balancer hears of
    /// its subchannels the same way). Told in order per connection; a draining connection still counts as ready
    /// until its channel closes (check ``PersistentConnection/isAcceptingRequests`` on the one picked).
    @usableFromInline
    package struct ReadinessChange: Sendable {
        package var endpoint: Endpoint
        package var connection: PersistentConnection<Codec>
        package var isReady: Bool
    }

    private struct State {
        var connections: [Endpoint: PersistentConnection<Codec>] = [:]
        var order: [Endpoint] = []
        /// Endpoints whose connections stay open but are never chosen.
        var disabled: Set<Endpoint> = []
        /// Endpoints avoided after consecutive failures, when the pool keeps health.
        var health: EndpointHealth?
        var next = 0
        var closed = false
    }

    private enum Event: Sendable {
        case start(PersistentConnection<Codec>)
        case close
    }

    public let codec: Codec
    private let template: PersistentConnection<Codec>.Configuration
    private let policy: LoadBalancingPolicy
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    /// One handler pool for the peers' requests on every connection, run by ``run()``.
    private let inbound: InboundHandlerPool<Codec>?
    /// The channel handlers' request path, compiled for the codec (see ``ConnectionHandlerEntryPoints``).
    private let entryPoints: ConnectionHandlerEntryPoints<Codec>
    /// Every change goes through ``withState(_:)``, the pool's one lock site.
    private let state = Mutex(State())
    private let readinessChanged: (@Sendable (ReadinessChange) -> Void)?
    private let events: AsyncStream<Event>
    private let eventSink: AsyncStream<Event>.Continuation

    /// - Parameters:
    ///   - codec: The protocol, shared by every connection.
    ///   - endpoints: The initial endpoints, one connection each. Must not be empty.
    ///   - configuration: The settings of every connection; its `endpoints` are ignored.
    ///   - policy: How requests choose a connection. Defaults to ``LoadBalancingPolicy/leastInFlight``.
    ///   - health: When to avoid an endpoint whose requests keep failing (the application reports outcomes with
    ///     ``recordOutcome(_:succeeded:)``), or `nil` to never avoid one. Defaults to `nil`.
    ///   - eventLoopGroup: Where the sockets live. Defaults to the shared singleton group.
    ///   - logger: Background logger. Defaults to one that logs nothing.
    ///   - inboundRequestHandler: Handles the frames peers send on their own, on any connection, by one pool of
    ///     handlers sized by the configuration's ``PersistentConnection/Configuration/inboundHandlerPool``.
    @inlinable
    public convenience init(
        codec: Codec,
        endpoints: [Endpoint],
        configuration: PersistentConnection<Codec>.Configuration,
        policy: LoadBalancingPolicy = .leastInFlight,
        health: HealthPolicy? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger.disabled,
        inboundRequestHandler: PersistentConnection<Codec>.InboundRequestHandler? = nil
    ) {
        self.init(
            codec: codec,
            endpoints: endpoints,
            configuration: configuration,
            policy: policy,
            health: health,
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            inboundRequestHandler: inboundRequestHandler,
            readinessChanged: nil
        )
    }

    /// As the public initializer, with `readinessChanged` told whenever a connection becomes ready or stops being
    /// ready (from ``run()``'s tasks, never under the pool's lock).
    @inlinable
    package convenience init(
        codec: Codec,
        endpoints: [Endpoint],
        configuration: PersistentConnection<Codec>.Configuration,
        policy: LoadBalancingPolicy = .leastInFlight,
        health: HealthPolicy? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger.disabled,
        inboundRequestHandler: PersistentConnection<Codec>.InboundRequestHandler? = nil,
        readinessChanged: (@Sendable (ReadinessChange) -> Void)?
    ) {
        // Inlined into the application's module, which names the codec: the handler's entry points are made there.
        self.init(
            codec: codec,
            endpoints: endpoints,
            configuration: configuration,
            policy: policy,
            health: health,
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            inboundRequestHandler: inboundRequestHandler,
            readinessChanged: readinessChanged,
            entryPoints: ConnectionHandlerEntryPoints()
        )
    }

    @usableFromInline
    init(
        codec: Codec,
        endpoints: [Endpoint],
        configuration: PersistentConnection<Codec>.Configuration,
        policy: LoadBalancingPolicy,
        health: HealthPolicy?,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        inboundRequestHandler: PersistentConnection<Codec>.InboundRequestHandler?,
        readinessChanged: (@Sendable (ReadinessChange) -> Void)?,
        entryPoints: ConnectionHandlerEntryPoints<Codec>
    ) {
        self.entryPoints = entryPoints
        precondition(!endpoints.isEmpty, "a pool needs at least one endpoint")
        self.readinessChanged = readinessChanged
        self.codec = codec
        self.template = configuration
        self.policy = policy
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.inbound = inboundRequestHandler.map {
            InboundHandlerPool(configuration: configuration.inboundHandlerPool, handler: $0)
        }
        (self.events, self.eventSink) = AsyncStream.makeStream()
        if let health {
            self.withState { $0.health = EndpointHealth(threshold: health.threshold, basePause: health.basePause, maxPause: health.maxPause) }
        }
        _ = self.updateEndpoints(endpoints)
    }

    /// When the pool avoids an endpoint: after `threshold` consecutive failed outcomes, for `basePause`, doubled
    /// (up to `maxPause`) each time it fails again once back. The last usable endpoint is never avoided.
    public struct HealthPolicy: Sendable, Hashable {
        public var threshold: Int
        public var basePause: Duration
        public var maxPause: Duration

        /// `maxPause` defaults to 30 times `basePause`.
        public init(threshold: Int, basePause: Duration = .seconds(1), maxPause: Duration? = nil) {
            self.threshold = threshold
            self.basePause = basePause
            self.maxPause = maxPause ?? basePause * 30
        }
    }

    /// Reports how a request on `endpoint` ended, for the pool's health: a success clears the endpoint, failures
    /// in a row make it avoided for a while (logged).
    public func recordOutcome(_ endpoint: Endpoint, succeeded: Bool) {
        let pause = self.withState { state -> Duration? in
            guard state.health != nil else { return nil }
            if succeeded {
                state.health!.succeeded(endpoint)
                return nil
            }
            let usable = state.order.filter { !state.disabled.contains($0) }
            return state.health!.failed(endpoint, now: .now, usable: usable)
        }
        if let pause {
            self.logger.warning("avoiding a failing endpoint", metadata: ["inlong.endpoint": "\(endpoint)", "inlong.pause": "\(pause)"])
        }
    }

    /// Endpoints avoided now after consecutive failures.
    public var avoidedEndpoints: Set<Endpoint> {
        self.withState { $0.health?.avoided(now: .now) ?? [] }
    }

    /// The endpoints in use.
    public var endpoints: [Endpoint] { self.withState { $0.order } }

    /// The connection to each endpoint.
    public var connections: [PersistentConnection<Codec>] {
        self.withState { state in state.order.compactMap { state.connections[$0] } }
    }

    /// Stops choosing the connection to `endpoint` (it stays open and finishes what it has: for maintenance or
    /// an operator's decision), or lets it be chosen again.
    public func setEnabled(_ enabled: Bool, for endpoint: Endpoint) {
        self.withState { state in
            if enabled {
                state.disabled.remove(endpoint)
            } else {
                state.disabled.insert(endpoint)
            }
        }
    }

    /// Replaces the endpoint set: new endpoints get a connection, removed ones are drained and closed, the others
    /// keep theirs. An empty set is ignored (the last endpoint is never dropped). Returns whether anything changed.
    @discardableResult
    public func updateEndpoints(_ endpoints: [Endpoint]) -> Bool {
        var unique: [Endpoint] = []
        for endpoint in endpoints where !unique.contains(endpoint) { unique.append(endpoint) }
        guard !unique.isEmpty else {
            self.logger.warning("ignoring an empty endpoint list; keeping the current endpoints")
            return false
        }
        let (added, removed) = self.withState { state -> ([PersistentConnection<Codec>], [PersistentConnection<Codec>]) in
            guard !state.closed else { return ([], []) }
            var added: [PersistentConnection<Codec>] = []
            var removed: [PersistentConnection<Codec>] = []
            for endpoint in unique where state.connections[endpoint] == nil {
                var configuration = self.template
                configuration.endpoints = [endpoint]
                let connection = PersistentConnection(
                    codec: self.codec,
                    configuration: configuration,
                    eventLoopGroup: self.eventLoopGroup,
                    logger: self.logger,
                    inbound: self.inbound,
                    ownsInbound: false,
                    entryPoints: self.entryPoints
                )
                state.connections[endpoint] = connection
                added.append(connection)
            }
            for endpoint in state.order where !unique.contains(endpoint) {
                if let connection = state.connections.removeValue(forKey: endpoint) { removed.append(connection) }
            }
            state.order = unique
            state.health?.retain(unique)
            return (added, removed)
        }
        for connection in added { self.eventSink.yield(.start(connection)) }
        for connection in removed { connection.close() }
        return !added.isEmpty || !removed.isEmpty
    }

    /// Picks a ready connection with the policy, among those not to `avoided` endpoints (and not avoided by the
    /// pool's health) when there are any.
    public func chooseConnection(avoiding avoided: Set<Endpoint> = []) throws -> PersistentConnection<Codec> {
        // The pool's lock only for its own state; each connection's state is read after it is released.
        let (candidates, avoided, start) = try self.withState { state -> ([PersistentConnection<Codec>], Set<Endpoint>, Int) in
            guard !state.closed else { throw TransportError(.shutDown) }
            var candidates: [PersistentConnection<Codec>] = []
            candidates.reserveCapacity(state.order.count)
            for id in state.order where !state.disabled.contains(id) {
                if let connection = state.connections[id] { candidates.append(connection) }
            }
            var all = avoided
            if let health = state.health { all.formUnion(health.avoided(now: .now)) }
            defer { state.next &+= 1 }
            return (candidates, all, state.next)
        }
        // One pass (this runs per request); the avoided ones only when nothing else is ready.
        var ready: [PersistentConnection<Codec>] = []
        ready.reserveCapacity(candidates.count)
        var skipped = false
        for connection in candidates where connection.isAcceptingRequests {
            if !avoided.isEmpty, avoided.contains(connection.configuration.endpoints[0]) {
                skipped = true
            } else {
                ready.append(connection)
            }
        }
        if ready.isEmpty, skipped { ready = candidates.filter(\.isAcceptingRequests) }
        guard !ready.isEmpty else { throw TransportError(.notConnected) }
        return ready[self.policy.choose(among: ready, startingAt: start)]
    }

    /// Sends a request on a connection the policy picks; see ``PersistentConnection/request(_:timeout:)``.
    public func request(_ request: Codec.Outbound, timeout: Duration? = nil) async throws -> Codec.Inbound {
        try await self.chooseConnection().request(request, timeout: timeout)
    }

    /// Submits a request without suspending on a connection the policy picks, avoiding the `avoided` endpoints
    /// (and those the pool's health avoids) while another is ready; see ``PersistentConnection/submit(_:timeout:)``.
    /// Returns the endpoint that took the request (to report its outcome with ``recordOutcome(_:succeeded:)``)
    /// and the future response.
    public func submit(
        _ request: Codec.Outbound,
        timeout: Duration? = nil,
        avoiding avoided: Set<Endpoint> = []
    ) throws -> (endpoint: Endpoint, response: EventLoopFuture<Codec.Inbound>) {
        let connection = try self.chooseConnection(avoiding: avoided)
        return (connection.configuration.endpoints[0], try connection.submit(request, timeout: timeout))
    }

    /// Writes a frame on a connection the policy picks; see ``PersistentConnection/send(_:)``.
    public func send(_ frame: Codec.Outbound) async throws {
        try await self.chooseConnection().send(frame)
    }

    /// The sum of every connection's counters.
    public func statistics() -> PersistentConnectionStatistics {
        var total = PersistentConnectionStatistics()
        for connection in self.connections { total.add(connection.statistics()) }
        return total
    }

    /// Drains and closes every connection; ``run()`` then returns.
    public func close() {
        self.eventSink.yield(.close)
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await self.runUntilClosed()
        } onGracefulShutdown: {
            self.close()
        }
    }

    /// ``run()`` without a graceful-shutdown handler, for an owner that closes the pool itself (a client that
    /// sends what it holds at a graceful shutdown before it closes its pools).
    package func runUntilClosed() async {
        await withDiscardingTaskGroup { outer in
            if let inbound = self.inbound { outer.addTask { await inbound.run() } }
            await withDiscardingTaskGroup { group in
                for await event in self.events {
                    switch event {
                    case .start(let connection):
                        // The pool closes its connections: they do not stop on their own at a graceful shutdown.
                        group.addTask { await connection.runUntilClosed() }
                        if let readinessChanged = self.readinessChanged {
                            group.addTask { await Self.watchReadiness(of: connection, tell: readinessChanged) }
                        }
                    case .close:
                        let all = self.withState { state in
                            state.closed = true
                            return Array(state.connections.values)
                        }
                        for connection in all { connection.close() }
                        self.eventSink.finish()
                    }
                }
            }
            // Every connection has ended: the inbound handlers under way finish, then their workers.
            self.inbound?.stop()
        }
    }

    /// Tells the owner each time `connection` becomes ready or stops being ready, until it shuts down.
    private static func watchReadiness(of connection: PersistentConnection<Codec>, tell: @Sendable (ReadinessChange) -> Void) async {
        let endpoint = connection.configuration.endpoints[0]
        var ready = false
        for await connectivity in connection.connectivityStates() where (connectivity == .ready) != ready {
            ready.toggle()
            tell(ReadinessChange(endpoint: endpoint, connection: connection, isReady: ready))
        }
        // Shut down, or the pool's run was cancelled: it takes no more requests either way.
        if ready { tell(ReadinessChange(endpoint: endpoint, connection: connection, isReady: false)) }
    }

    /// The pool's one lock site: every read and change of its state.
    private func withState<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
        try self.state.withLock { try body(&$0) }
    }
}

extension LoadBalancingPolicy {
    /// The index of the connection the policy takes among `ready` (not empty), ties rotating from `start`.
    package func choose<Codec>(among ready: [PersistentConnection<Codec>], startingAt start: Int) -> Int {
        switch self.kind {
        case .roundRobin:
            return start % ready.count
        case .leastInFlight:
            return Self.cheapest(ready.count, startingAt: start) { ready[$0].inFlightCount }
        case .leastLoaded:
            return Self.cheapest(ready.count, startingAt: start) { index in
                (ready[index].inFlightCount + 1) * (100 + min(ready[index].reportedLoad ?? 0, 1_000_000))
            }
        case .custom(let choose):
            let candidates = ready.map {
                Candidate(endpoint: $0.configuration.endpoints[0], inFlight: $0.inFlightCount, load: $0.reportedLoad)
            }
            return min(max(choose(candidates), 0), ready.count - 1)
        }
    }

    /// The index of lowest `cost` among `count`, looking from `start` round the list so that ties rotate.
    private static func cheapest(_ count: Int, startingAt start: Int, cost: (Int) -> Int) -> Int {
        var best = start % count
        var bestCost = cost(best)
        for offset in 1..<max(count, 1) {
            let index = (start + offset) % count
            let candidate = cost(index)
            if candidate < bestCost { (best, bestCost) = (index, candidate) }
        }
        return best
    }
}
