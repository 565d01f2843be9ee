import InLongTransport
import InLongWire

/// The rules of ``ProxyRouter``, with no I/O, no clock and no lock: which cluster serves a group, which proxies of
/// a cluster this client uses (``ProxySubset``), which of their connections are ready (pushed by the pools, as
/// gRPC's round-robin balancer hears of its subchannels), which proxies are avoided after failures
/// (``EndpointHealth``), and the pick among them. The router feeds it events with the time and carries out what it
/// returns (making, updating and closing pools) once its lock is released.
///
/// Generic over the pool and the connection so that tests drive it with plain values.
///
/// Invariants: a group's batches go to its own cluster, or to the configured proxies while it has none, never to
/// another cluster's proxies; a pick is a connection told ready by its cluster's current pool, to a proxy of the
/// cluster's subset; an avoided proxy (by the caller or by health) is picked only when no other is ready.
struct RoutingTable<Pool, Connection: AnyObject> {
    /// A cluster as the router knows it.
    enum ClusterKey: Hashable, Sendable {
        /// The static proxies of the configuration.
        case configured
        /// A cluster the Manager named.
        case manager(Int)
        /// A list the Manager gave without a cluster id: its proxies are the cluster.
        case unnamed([Endpoint])
    }

    /// A connection ready for requests.
    struct ReadyConnection {
        var endpoint: Endpoint
        var connection: Connection
    }

    struct Cluster {
        var listed: [Endpoint]
        var subset: [Endpoint]
        /// The pool's id, and the pool once the driver made it.
        var poolID: Int
        var pool: Pool?
        var groups: Set<String>
        /// Connections told ready by the pool, in the order they became ready.
        var ready: [ReadyConnection] = []
        var health: EndpointHealth?
        /// Rotates ties between equally good connections.
        var next = 0
    }

    /// Where a pick went: the cluster's pool and the connection.
    struct Route {
        var poolID: Int
        var endpoint: Endpoint
        var connection: Connection
    }

    enum Pick {
        case picked(Route)
        /// The group has no cluster, and no proxies are configured.
        case noRoute
        /// No connection of the group's cluster is ready.
        case notReady
    }

    /// What the driver does after an update, outside the lock.
    struct UpdateActions {
        /// Make a pool with this id over these proxies, then report it with ``poolMade(_:_:)``.
        var makePool: (id: Int, endpoints: [Endpoint])?
        /// Give an existing pool these proxies.
        var setEndpoints: (pool: Pool, endpoints: [Endpoint])?
        /// Close a pool no group uses any more.
        var closePool: Pool?
        /// The proxies in use changed.
        var changed = false
    }

    struct HealthPolicy {
        var threshold: Int
        var basePause: Duration
    }

    /// How long a proxy swapped out for failing is no spare.
    static var spareCooldown: Duration { .seconds(30) }

    let subsetSize: Int
    let healthPolicy: HealthPolicy?
    private(set) var groupClusters: [String: ClusterKey] = [:]
    private(set) var clusters: [ClusterKey: Cluster] = [:]
    private var generator: SplitMix64
    private(set) var closed = false
    /// Groups met with no cluster of their own, for discovery.
    private var unrouted: Set<String> = []
    /// Proxies failing at the last look for failing subset members, and those swapped out lately.
    private var failingBefore: Set<Endpoint> = []
    private var coolingUntil: [Endpoint: ContinuousClock.Instant] = [:]
    private var nextPoolID = 0
    /// Which cluster each pool serves.
    private var poolClusters: [Int: ClusterKey] = [:]

    init(subsetSize: Int, seed: UInt64, health: HealthPolicy?) {
        self.subsetSize = max(subsetSize, 1)
        self.generator = SplitMix64(seed: seed)
        self.healthPolicy = health
    }

    // MARK: Picking

    /// The connection for a batch of `group`: of its cluster, else of the configured proxies (a fallback while a
    /// Manager has not answered for it). Proxies in `avoiding` (the one that holds a retry's original) and those
    /// health avoids are taken only when no other is ready. `choose` is the load-balancing policy: the index of
    /// the connection to take among those given (never empty), ties rotating from the number given. Returns also
    /// whether `group` was met for the first time without a cluster of its own (discovery looks for it).
    mutating func pick(
        group: String,
        avoiding: Set<Endpoint>,
        now: ContinuousClock.Instant,
        choose: ([Connection], Int) -> Int
    ) -> (pick: Pick, newlyUnrouted: Bool) {
        var newlyUnrouted = false
        let key: ClusterKey
        if let own = self.groupClusters[group], self.clusters[own] != nil {
            key = own
        } else {
            newlyUnrouted = self.unrouted.insert(group).inserted
            guard self.clusters[.configured] != nil else { return (.noRoute, newlyUnrouted) }
            key = .configured
        }
        return (self.pick(in: key, avoiding: avoiding, now: now, choose: choose), newlyUnrouted)
    }

    private mutating func pick(
        in key: ClusterKey,
        avoiding: Set<Endpoint>,
        now: ContinuousClock.Instant,
        choose: ([Connection], Int) -> Int
    ) -> Pick {
        guard var cluster = self.clusters[key], !cluster.ready.isEmpty else { return .notReady }
        var avoided = avoiding
        if let health = cluster.health { avoided.formUnion(health.avoided(now: now)) }
        var ready: [ReadyConnection] = []
        ready.reserveCapacity(cluster.ready.count)
        var skipped = false
        for entry in cluster.ready where cluster.subset.contains(entry.endpoint) {
            if !avoided.isEmpty, avoided.contains(entry.endpoint) {
                skipped = true
            } else {
                ready.append(entry)
            }
        }
        if ready.isEmpty, skipped { ready = cluster.ready.filter { cluster.subset.contains($0.endpoint) } }
        guard !ready.isEmpty else { return .notReady }
        let index = choose(ready.map(\.connection), cluster.next)
        let chosen = ready[min(max(index, 0), ready.count - 1)]
        cluster.next &+= 1
        self.clusters[key] = cluster
        return .picked(Route(poolID: cluster.poolID, endpoint: chosen.endpoint, connection: chosen.connection))
    }

    /// The picked connection did not take the request (it drains, or its channel just closed): it is not ready
    /// until its pool says so again.
    mutating func notAccepting(_ route: Route) {
        self.readinessChanged(poolID: route.poolID, endpoint: route.endpoint, connection: route.connection, isReady: false)
    }

    // MARK: Events from the pools

    /// A pool's connection became ready or stopped being ready; returns whether one became ready (jobs that found
    /// none can go now). Events of a pool no cluster uses any more are dropped.
    @discardableResult
    mutating func readinessChanged(poolID: Int, endpoint: Endpoint, connection: Connection, isReady: Bool) -> Bool {
        guard let key = self.poolClusters[poolID] else { return false }
        let known = self.clusters[key]!.ready.firstIndex { $0.connection === connection }
        switch (isReady, known) {
        case (true, nil):
            self.clusters[key]!.ready.append(ReadyConnection(endpoint: endpoint, connection: connection))
            return true
        case (false, let index?):
            self.clusters[key]!.ready.remove(at: index)
            return false
        default:
            return false
        }
    }

    /// How a request on a picked connection ended, for health: a success clears the proxy, failures in a row
    /// make it avoided for a while. Returns the pause when the proxy is avoided now.
    mutating func recordOutcome(_ route: Route, succeeded: Bool, now: ContinuousClock.Instant) -> Duration? {
        guard let key = self.poolClusters[route.poolID],
            var health = self.clusters[key]!.health
        else { return nil }
        defer { self.clusters[key]!.health = health }
        if succeeded {
            health.succeeded(route.endpoint)
            return nil
        }
        return health.failed(route.endpoint, now: now, usable: self.clusters[key]!.subset)
    }

    // MARK: Proxy lists

    /// `group`'s proxy list (`group` nil: the configured proxies, for every group without a cluster).
    mutating func update(key: ClusterKey, group: String?, listed: [Endpoint]) -> UpdateActions {
        var actions = UpdateActions()
        guard !self.closed else { return actions }
        if let group, let old = self.groupClusters[group], old != key {
            self.clusters[old]?.groups.remove(group)
            if self.clusters[old]?.groups.isEmpty == true, old != .configured, let gone = self.clusters.removeValue(forKey: old) {
                self.poolClusters[gone.poolID] = nil
                actions.closePool = gone.pool
                actions.changed = true
            }
        }
        if let group {
            self.groupClusters[group] = key
            self.unrouted.remove(group)
        }
        if var cluster = self.clusters[key] {
            if let group { cluster.groups.insert(group) }
            if cluster.listed != listed {
                cluster.listed = listed
                let subset = ProxySubset.update(current: cluster.subset, listed: listed, size: self.subsetSize, using: &self.generator)
                if Set(subset) != Set(cluster.subset) {
                    cluster.subset = subset
                    cluster.health?.retain(subset)
                    if let pool = cluster.pool { actions.setEndpoints = (pool, subset) }
                    actions.changed = true
                }
            }
            self.clusters[key] = cluster
            return actions
        }
        let subset = ProxySubset.update(current: [], listed: listed, size: self.subsetSize, using: &self.generator)
        let id = self.nextPoolID
        self.nextPoolID += 1
        self.poolClusters[id] = key
        self.clusters[key] = Cluster(
            listed: listed,
            subset: subset,
            poolID: id,
            groups: group.map { [$0] } ?? [],
            health: self.healthPolicy.map { EndpointHealth(threshold: $0.threshold, basePause: $0.basePause) }
        )
        actions.makePool = (id, subset)
        actions.changed = true
        return actions
    }

    /// The driver made pool `id`: the proxies to give it when the subset changed meanwhile, or `.close` when no
    /// cluster wants it any more.
    mutating func poolMade(_ id: Int, _ pool: Pool, endpoints: [Endpoint]) -> PoolMade {
        guard !self.closed, let key = self.poolClusters[id] else { return .close }
        self.clusters[key]!.pool = pool
        let subset = self.clusters[key]!.subset
        return subset == endpoints ? .run : .runWith(subset)
    }

    enum PoolMade: Equatable {
        case run
        /// Run it, with these proxies instead.
        case runWith([Endpoint])
        case close
    }

    /// Swaps failing subset members (still listed) for listed spares, given each cluster's members that cannot be
    /// reached now (`unreachable`, by pool id). A member is failing when avoided by health or unreachable; it is
    /// swapped once it failed at two looks in a row (a proxy that misses one reconnect keeps its slot), and one
    /// swapped out is no spare for ``spareCooldown`` (so that subsets do not cycle among proxies that are all down).
    /// Returns the pools to give new proxies.
    mutating func replaceFailing(unreachable: [Int: Set<Endpoint>], now: ContinuousClock.Instant) -> [(pool: Pool, endpoints: [Endpoint])] {
        guard !self.closed else { return [] }
        var failingNow: [ClusterKey: Set<Endpoint>] = [:]
        for (key, cluster) in self.clusters {
            failingNow[key] = (cluster.health?.avoided(now: now) ?? []).union(unreachable[cluster.poolID] ?? [])
        }
        defer { self.failingBefore = failingNow.values.reduce(into: Set()) { $0.formUnion($1) } }
        self.coolingUntil = self.coolingUntil.filter { $0.value > now }
        var updates: [(pool: Pool, endpoints: [Endpoint])] = []
        for (key, var cluster) in self.clusters {
            guard let failing = failingNow[key]?.intersection(self.failingBefore), !failing.isDisjoint(with: cluster.subset) else { continue }
            let subset = ProxySubset.replacing(
                failing: failing,
                unavailable: failingNow[key, default: []].union(self.coolingUntil.keys),
                in: cluster.subset,
                listed: cluster.listed,
                using: &self.generator
            )
            guard subset != cluster.subset else { continue }
            for gone in Set(cluster.subset).subtracting(subset) { self.coolingUntil[gone] = now + Self.spareCooldown }
            cluster.subset = subset
            cluster.health?.retain(subset)
            self.clusters[key] = cluster
            if let pool = cluster.pool { updates.append((pool, subset)) }
        }
        return updates
    }

    /// No more pools: the ones to close.
    mutating func close() -> [Pool] {
        self.closed = true
        return self.clusters.values.compactMap(\.pool)
    }

    // MARK: Reads

    /// Groups batches were seen for that have no cluster of their own yet.
    var unroutedGroups: [String] { Array(self.unrouted) }

    /// Whether `group` has a cluster of its own (not only the configured fallback).
    func isRouted(_ group: String) -> Bool {
        self.groupClusters[group].map { self.clusters[$0] != nil } ?? false
    }

    /// Every proxy in use, over all clusters.
    var endpoints: [Endpoint] {
        var all: [Endpoint] = []
        for cluster in self.clusters.values { all += cluster.subset.filter { !all.contains($0) } }
        return all
    }

    /// Every pool made, with its id.
    var pools: [(id: Int, pool: Pool)] {
        self.clusters.values.compactMap { cluster in cluster.pool.map { (cluster.poolID, $0) } }
    }

    /// Proxies avoided now after consecutive failures.
    func avoided(now: ContinuousClock.Instant) -> Set<Endpoint> {
        self.clusters.values.reduce(into: Set()) { $0.formUnion($1.health?.avoided(now: now) ?? []) }
    }
}

extension RoutingTable: Sendable where Pool: Sendable, Connection: Sendable {}
extension RoutingTable.Route: Sendable where Pool: Sendable, Connection: Sendable {}
extension RoutingTable.ReadyConnection: Sendable where Pool: Sendable, Connection: Sendable {}
extension RoutingTable.Cluster: Sendable where Pool: Sendable, Connection: Sendable {}
extension RoutingTable.Pick: Sendable where Pool: Sendable, Connection: Sendable {}
