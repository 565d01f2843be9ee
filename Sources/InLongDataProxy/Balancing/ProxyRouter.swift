import InLongTransport
import InLongWire
import Logging
import NIOCore
import Synchronization

/// Where a group's batches go: every group belongs to its DataProxy cluster (the Manager's `clusterId`), and
/// each cluster gets one pool over this client's subset of its proxies. Groups of one cluster share its pool;
/// a group's batches never go to another cluster's proxies. With static proxies, every group uses them.
final class ProxyRouter: Sendable {
    /// A cluster as the router knows it.
    enum ClusterKey: Hashable, Sendable {
        /// The static proxies of the configuration.
        case configured
        /// A cluster the Manager named.
        case manager(Int)
        /// A list the Manager gave without a cluster id: its proxies are the cluster.
        case unnamed([Endpoint])
    }

    typealias Pool = PersistentConnectionPool<DataProxyCodec>

    private struct Cluster {
        var listed: [Endpoint]
        var subset: [Endpoint]
        var pool: Pool
        var groups: Set<String>
    }

    private struct State {
        var groupClusters: [String: ClusterKey] = [:]
        var clusters: [ClusterKey: Cluster] = [:]
        var generator: SplitMix64
        var closed = false
        /// Groups met with no cluster of their own, for discovery.
        var unrouted: Set<String> = []
        /// Proxies failing at the last look for failing subset members, and those swapped out lately.
        var failingBefore: Set<Endpoint> = []
        var coolingUntil: [Endpoint: ContinuousClock.Instant] = [:]
    }

    private let state: Mutex<State>
    private let subsetSize: Int
    private let makePool: @Sendable ([Endpoint]) -> Pool
    /// Pools to run, as clusters appear.
    let newPools: AsyncStream<Pool>
    private let newPool: AsyncStream<Pool>.Continuation

    init(subsetSize: Int, seed: UInt64, makePool: @escaping @Sendable ([Endpoint]) -> Pool) {
        self.state = Mutex(State(generator: SplitMix64(seed: seed)))
        self.subsetSize = max(subsetSize, 1)
        self.makePool = makePool
        (self.newPools, self.newPool) = AsyncStream.makeStream()
    }

    /// The pool for `group`'s batches: its cluster's, else the static proxies' (a fallback while a Manager has
    /// not answered for it), else `nil`.
    func pool(for group: String) -> Pool? {
        self.state.withLock { state in
            if let key = state.groupClusters[group], let cluster = state.clusters[key] { return cluster.pool }
            state.unrouted.insert(group)
            return state.clusters[.configured]?.pool
        }
    }

    /// Groups batches were seen for that have no cluster of their own yet.
    var unroutedGroups: [String] {
        self.state.withLock { state in
            state.unrouted = state.unrouted.filter { state.groupClusters[$0] == nil }
            return Array(state.unrouted)
        }
    }

    /// Whether `group` has a cluster of its own (not only the static fallback).
    func isRouted(_ group: String) -> Bool {
        self.state.withLock { $0.groupClusters[group] != nil }
    }

    /// Uses the static proxies for every group without a cluster of its own.
    func setConfigured(_ endpoints: [Endpoint]) {
        guard !endpoints.isEmpty else { return }
        self.update(key: .configured, group: nil, listed: endpoints)
    }

    /// `group`'s proxy list as the Manager (or its cache) gave it. Returns whether the proxies in use changed.
    @discardableResult
    func apply(_ list: ProxyList, for group: String) -> Bool {
        let key: ClusterKey = list.clusterID.map { .manager($0) } ?? .unnamed(list.endpoints.sorted { ($0.host, $0.port) < ($1.host, $1.port) })
        return self.update(key: key, group: group, listed: list.endpoints)
    }

    @discardableResult
    private func update(key: ClusterKey, group: String?, listed: [Endpoint]) -> Bool {
        let (created, closed, changed) = self.state.withLock { state -> (Pool?, Pool?, Bool) in
            guard !state.closed else { return (nil, nil, false) }
            var closed: Pool?
            if let group, let old = state.groupClusters[group], old != key {
                state.clusters[old]?.groups.remove(group)
                if state.clusters[old]?.groups.isEmpty == true, old != .configured {
                    closed = state.clusters.removeValue(forKey: old)?.pool
                }
            }
            if let group { state.groupClusters[group] = key }
            if var cluster = state.clusters[key] {
                if let group { cluster.groups.insert(group) }
                var changed = false
                if cluster.listed != listed {
                    cluster.listed = listed
                    let subset = ProxySubset.update(current: cluster.subset, listed: listed, size: self.subsetSize, using: &state.generator)
                    if Set(subset) != Set(cluster.subset) {
                        cluster.subset = subset
                        changed = cluster.pool.updateEndpoints(subset)
                    }
                }
                state.clusters[key] = cluster
                return (nil, closed, changed || closed != nil)
            }
            let subset = ProxySubset.update(current: [], listed: listed, size: self.subsetSize, using: &state.generator)
            let pool = self.makePool(subset)
            state.clusters[key] = Cluster(listed: listed, subset: subset, pool: pool, groups: group.map { [$0] } ?? [])
            return (pool, closed, true)
        }
        if let created { self.newPool.yield(created) }
        closed?.close()
        return changed
    }

    /// Swaps failing subset members (still listed) for listed spares; returns whether a subset changed. A member is
    /// swapped once it failed at two looks in a row (a proxy that misses one reconnect keeps its slot), and one
    /// swapped out is no spare for ``spareCooldown`` (so that subsets do not cycle among proxies that are all down).
    @discardableResult
    func replaceFailingProxies(now: ContinuousClock.Instant = .now) -> Bool {
        // The pools' health is read first, outside the router's lock: no lock is taken inside another. Failing:
        // avoided after failed requests, or not connected with a connect error (a refused or unreachable proxy
        // never gets a request to fail).
        let failingNow = Dictionary(uniqueKeysWithValues: self.clusterPools.map { key, pool in
            let unreachable = pool.connections.filter { $0.connectivityState != .ready && $0.statistics().lastConnectError != nil }
            return (key, pool.avoidedEndpoints.union(unreachable.map { $0.configuration.endpoints[0] }))
        })
        let updates = self.state.withLock { state -> [(Pool, [Endpoint])] in
            guard !state.closed else { return [] }
            defer { state.failingBefore = failingNow.values.reduce(into: Set()) { $0.formUnion($1) } }
            state.coolingUntil = state.coolingUntil.filter { $0.value > now }
            var updates: [(Pool, [Endpoint])] = []
            for (key, var cluster) in state.clusters {
                guard let failing = failingNow[key]?.intersection(state.failingBefore), !failing.isDisjoint(with: cluster.subset) else { continue }
                let subset = ProxySubset.replacing(
                    failing: failing,
                    unavailable: failingNow[key, default: []].union(state.coolingUntil.keys),
                    in: cluster.subset,
                    listed: cluster.listed,
                    using: &state.generator
                )
                guard subset != cluster.subset else { continue }
                for gone in Set(cluster.subset).subtracting(subset) { state.coolingUntil[gone] = now + Self.spareCooldown }
                cluster.subset = subset
                state.clusters[key] = cluster
                updates.append((cluster.pool, subset))
            }
            return updates
        }
        for (pool, subset) in updates { pool.updateEndpoints(subset) }
        return !updates.isEmpty
    }

    /// How long a proxy swapped out for failing is no spare.
    static let spareCooldown: Duration = .seconds(30)

    private var clusterPools: [(key: ClusterKey, pool: Pool)] {
        self.state.withLock { $0.clusters.map { ($0.key, $0.value.pool) } }
    }

    /// Every proxy in use, over all clusters.
    var endpoints: [Endpoint] {
        self.state.withLock { state in
            var all: [Endpoint] = []
            for cluster in state.clusters.values { all += cluster.subset.filter { !all.contains($0) } }
            return all
        }
    }

    var pools: [Pool] { self.state.withLock { $0.clusters.values.map(\.pool) } }

    /// Closes every pool; no more pools are made.
    func close() {
        let pools = self.state.withLock { state -> [Pool] in
            state.closed = true
            return state.clusters.values.map(\.pool)
        }
        self.newPool.finish()
        for pool in pools { pool.close() }
    }
}
