import InLongTransport
import InLongWire
import Logging
import NIOCore
import Synchronization

/// Where a group's batches go: every group belongs to its DataProxy cluster (the Manager's `clusterId`), and
/// each cluster gets one pool over this client's subset of its proxies. Groups of one cluster share its pool;
/// a group's batches never go to another cluster's proxies. With static proxies, every group uses them.
///
/// The pools tell the router when their connections become ready or stop being ready, and the router keeps the
/// ready set with the proxies' health (gRPC's round-robin balancer), so that a pick is one lock and no pool is
/// asked while the router's lock is held. The rules are ``RoutingTable``'s; this class locks, calls it, and makes,
/// updates and closes pools once the lock is released.
final class ProxyRouter: Sendable {
    typealias Pool = PersistentConnectionPool<DataProxyCodec>
    typealias Connection = PersistentConnection<DataProxyCodec>
    typealias Table = RoutingTable<Pool, Connection>
    typealias Route = Table.Route
    typealias MakePool = @Sendable (_ endpoints: [Endpoint], _ readinessChanged: @escaping @Sendable (Pool.ReadinessChange) -> Void) -> Pool

    private let table: Mutex<Table>
    private let policy: LoadBalancingPolicy
    private let makePool: MakePool
    private let logger: Logger
    /// A connection became ready: jobs that found none can go.
    private let connectionReady: @Sendable () -> Void
    /// A group was met without proxies of its own: discovery looks for them.
    private let groupMet: @Sendable () -> Void
    /// Pools to run, as clusters appear.
    let newPools: AsyncStream<Pool>
    private let newPool: AsyncStream<Pool>.Continuation

    init(
        subsetSize: Int,
        seed: UInt64,
        policy: LoadBalancingPolicy,
        health: Table.HealthPolicy?,
        logger: Logger,
        connectionReady: @escaping @Sendable () -> Void,
        groupMet: @escaping @Sendable () -> Void,
        makePool: @escaping MakePool
    ) {
        self.table = Mutex(Table(subsetSize: subsetSize, seed: seed, health: health))
        self.policy = policy
        self.logger = logger
        self.connectionReady = connectionReady
        self.groupMet = groupMet
        self.makePool = makePool
        (self.newPools, self.newPool) = AsyncStream.makeStream()
    }

    /// The router's one lock site.
    private func withTable<Result>(_ body: (inout Table) -> Result) -> Result {
        self.table.withLock { body(&$0) }
    }

    // MARK: Picking and outcomes

    /// The connection for a batch of `group` (see ``RoutingTable/pick(group:avoiding:now:choose:)``).
    func pick(for group: String, avoiding: Set<Endpoint>) -> Table.Pick {
        let policy = self.policy
        let (pick, newlyUnrouted) = self.withTable {
            $0.pick(group: group, avoiding: avoiding, now: .now) { policy.choose(among: $0, startingAt: $1) }
        }
        if newlyUnrouted { self.groupMet() }
        return pick
    }

    /// Submits `request` on the picked connection; `nil` when the connection no longer takes requests (it drains,
    /// or its channel just closed), which then counts as not ready until its pool says otherwise.
    func submit(_ request: DataProxyCodec.Outbound, on route: Route) -> EventLoopFuture<InLongResponse>? {
        if route.connection.isAcceptingRequests, let future = try? route.connection.submit(request) { return future }
        self.withTable { $0.notAccepting(route) }
        return nil
    }

    /// How a request ended, for the proxy's health.
    func recordOutcome(_ route: Route, succeeded: Bool) {
        guard let pause = self.withTable({ $0.recordOutcome(route, succeeded: succeeded, now: .now) }) else { return }
        self.logger.warning("avoiding a failing endpoint", metadata: ["inlong.endpoint": "\(route.endpoint)", "inlong.pause": "\(pause)"])
    }

    private func readinessChanged(poolID: Int, _ change: Pool.ReadinessChange) {
        let becameReady = self.withTable {
            $0.readinessChanged(poolID: poolID, endpoint: change.endpoint, connection: change.connection, isReady: change.isReady)
        }
        if becameReady { self.connectionReady() }
    }

    // MARK: Proxy lists

    /// Uses the static proxies for every group without a cluster of its own.
    func setConfigured(_ endpoints: [Endpoint]) {
        guard !endpoints.isEmpty else { return }
        self.update(key: .configured, group: nil, listed: endpoints)
    }

    /// `group`'s proxy list as the Manager (or its cache) gave it. Returns whether the proxies in use changed.
    @discardableResult
    func apply(_ list: ProxyList, for group: String) -> Bool {
        let key: Table.ClusterKey = list.clusterID.map { .manager($0) } ?? .unnamed(list.endpoints.sorted { ($0.host, $0.port) < ($1.host, $1.port) })
        return self.update(key: key, group: group, listed: list.endpoints)
    }

    @discardableResult
    private func update(key: Table.ClusterKey, group: String?, listed: [Endpoint]) -> Bool {
        let actions = self.withTable { $0.update(key: key, group: group, listed: listed) }
        if case let (id, endpoints)? = actions.makePool {
            let pool = self.makePool(endpoints) { [weak self] change in self?.readinessChanged(poolID: id, change) }
            switch self.withTable({ $0.poolMade(id, pool, endpoints: endpoints) }) {
            case .run:
                self.newPool.yield(pool)
            case .runWith(let subset):
                pool.updateEndpoints(subset)
                self.newPool.yield(pool)
            case .close:
                pool.close()
            }
        }
        if case let (pool, subset)? = actions.setEndpoints { pool.updateEndpoints(subset) }
        actions.closePool?.close()
        return actions.changed
    }

    /// Swaps failing subset members for spares (see ``RoutingTable/replaceFailing(unreachable:now:)``); returns
    /// whether a subset changed.
    @discardableResult
    func replaceFailingProxies(now: ContinuousClock.Instant = .now) -> Bool {
        // Not connected with a connect error: a refused or unreachable proxy never gets a request to fail. Read
        // from the pools with the router's lock released.
        var unreachable: [Int: Set<Endpoint>] = [:]
        for (id, pool) in self.withTable({ $0.pools }) {
            unreachable[id] = Set(
                pool.connections.filter { $0.connectivityState != .ready && $0.statistics().lastConnectError != nil }
                    .map { $0.configuration.endpoints[0] }
            )
        }
        let updates = self.withTable { $0.replaceFailing(unreachable: unreachable, now: now) }
        for (pool, subset) in updates { pool.updateEndpoints(subset) }
        return !updates.isEmpty
    }

    // MARK: Reads

    /// Groups batches were seen for that have no cluster of their own yet.
    var unroutedGroups: [String] { self.withTable { $0.unroutedGroups } }

    /// Whether `group` has a cluster of its own (not only the static fallback).
    func isRouted(_ group: String) -> Bool { self.withTable { $0.isRouted(group) } }

    /// Every proxy in use, over all clusters.
    var endpoints: [Endpoint] { self.withTable { $0.endpoints } }

    var pools: [Pool] { self.withTable { $0.pools.map(\.pool) } }

    /// Proxies avoided now after consecutive failures.
    var avoidedProxies: Set<Endpoint> { self.withTable { $0.avoided(now: .now) } }

    /// Closes every pool; no more pools are made.
    func close() {
        let pools = self.withTable { $0.close() }
        self.newPool.finish()
        for pool in pools { pool.close() }
    }
}
