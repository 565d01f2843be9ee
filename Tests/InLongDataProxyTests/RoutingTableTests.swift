import Foundation
import InLongTransport
import InLongWire
import Testing

@testable import InLongDataProxy

/// The router's rules (``RoutingTable``): routes by cluster, the ready set the pools push, health, and the pick.
@Suite struct RoutingTableTests {
    final class Connection: CustomStringConvertible {
        let endpoint: Endpoint
        let serial: Int
        var inFlight = 0

        init(_ endpoint: Endpoint, serial: Int) {
            self.endpoint = endpoint
            self.serial = serial
        }

        var description: String { "\(self.endpoint.port)#\(self.serial)" }
    }

    typealias Table = RoutingTable<String, Connection>

    static func endpoint(_ port: Int) -> Endpoint { Endpoint(host: "10.0.0.1", port: port) }

    /// Least in flight, ties rotating: the client's default policy.
    static func leastInFlight(_ ready: [Connection], _ start: Int) -> Int {
        var best = start % ready.count
        for offset in 1..<max(ready.count, 1) {
            let index = (start + offset) % ready.count
            if ready[index].inFlight < ready[best].inFlight { best = index }
        }
        return best
    }

    let now = ContinuousClock.now

    func pick(_ table: inout Table, _ group: String, avoiding: Set<Endpoint> = [], at offset: Duration = .zero) -> Table.Pick {
        table.pick(group: group, avoiding: avoiding, now: self.now + offset, choose: Self.leastInFlight).pick
    }

    func picked(_ pick: Table.Pick) -> Connection? {
        if case .picked(let route) = pick { return route.connection }
        return nil
    }

    /// Makes the pool the update asked for, as the router does; its id.
    func make(_ table: inout Table, _ actions: Table.UpdateActions, name: String) -> Int? {
        guard case let (id, endpoints)? = actions.makePool else { return nil }
        let made = table.poolMade(id, name, endpoints: endpoints)
        #expect(made == .run)
        return id
    }

    @Test func aGroupUsesItsClusterElseTheConfiguredProxiesElseNone() throws {
        var table = Table(subsetSize: 2, seed: 1, health: nil)
        // Nothing known: no route, and the group is met once for discovery.
        let first = table.pick(group: "g", avoiding: [], now: self.now, choose: Self.leastInFlight)
        let second = table.pick(group: "g", avoiding: [], now: self.now, choose: Self.leastInFlight)
        #expect(first.newlyUnrouted)
        #expect(!second.newlyUnrouted)
        guard case .noRoute = self.pick(&table, "g") else { Issue.record("expected no route"); return }
        #expect(table.unroutedGroups == ["g"])

        let configured = try #require(self.make(&table, table.update(key: .configured, group: nil, listed: [Self.endpoint(1)]), name: "configured"))
        guard case .notReady = self.pick(&table, "g") else { Issue.record("expected not ready"); return }
        let fallback = Connection(Self.endpoint(1), serial: 0)
        let becameReady = table.readinessChanged(poolID: configured, endpoint: fallback.endpoint, connection: fallback, isReady: true)
        #expect(becameReady)
        #expect(self.picked(self.pick(&table, "g")) === fallback)

        // The Manager names g's cluster: g goes there only, and is routed.
        let own = try #require(self.make(&table, table.update(key: .manager(7), group: "g", listed: [Self.endpoint(2)]), name: "c7"))
        #expect(table.isRouted("g"))
        #expect(table.unroutedGroups.isEmpty)
        guard case .notReady = self.pick(&table, "g") else { Issue.record("a routed group never falls back"); return }
        let mine = Connection(Self.endpoint(2), serial: 1)
        table.readinessChanged(poolID: own, endpoint: mine.endpoint, connection: mine, isReady: true)
        #expect(self.picked(self.pick(&table, "g")) === mine)
        // Another group still uses the configured proxies.
        #expect(self.picked(self.pick(&table, "h")) === fallback)
    }

    @Test func onlyConnectionsToldReadyArePickedUntilToldOtherwise() throws {
        var table = Table(subsetSize: 3, seed: 2, health: nil)
        let pool = try #require(self.make(&table, table.update(key: .configured, group: nil, listed: (1...3).map(Self.endpoint)), name: "p"))
        let connections = (1...3).map { Connection(Self.endpoint($0), serial: $0) }
        for connection in connections {
            let becameReady = table.readinessChanged(poolID: pool, endpoint: connection.endpoint, connection: connection, isReady: true)
            #expect(becameReady)
        }
        // Told twice: no second entry, and nothing new became ready.
        let again = table.readinessChanged(poolID: pool, endpoint: connections[0].endpoint, connection: connections[0], isReady: true)
        #expect(!again)
        connections[0].inFlight = 5
        connections[1].inFlight = 5
        #expect(self.picked(self.pick(&table, "g")) === connections[2])
        table.readinessChanged(poolID: pool, endpoint: connections[2].endpoint, connection: connections[2], isReady: false)
        let next = try #require(self.picked(self.pick(&table, "g")))
        #expect(next !== connections[2])
        // A connection that refused a request is dropped until its pool says it is ready again.
        guard case .picked(let route) = self.pick(&table, "g") else { Issue.record("expected a pick"); return }
        table.notAccepting(route)
        let remaining = try #require(self.picked(self.pick(&table, "g")))
        #expect(remaining !== route.connection)
        // Events of a pool no cluster uses are dropped.
        let stranger = Connection(Self.endpoint(9), serial: 9)
        let strangerReady = table.readinessChanged(poolID: pool + 100, endpoint: stranger.endpoint, connection: stranger, isReady: true)
        #expect(!strangerReady)
        #expect(table.clusters[.configured]?.ready.count == 1)
    }

    @Test func anAvoidedProxyIsTakenOnlyWhenNoOtherIsReady() throws {
        var table = Table(subsetSize: 2, seed: 3, health: .init(threshold: 2, basePause: .seconds(1)))
        let pool = try #require(self.make(&table, table.update(key: .configured, group: nil, listed: [Self.endpoint(1), Self.endpoint(2)]), name: "p"))
        let a = Connection(Self.endpoint(1), serial: 1)
        let b = Connection(Self.endpoint(2), serial: 2)
        table.readinessChanged(poolID: pool, endpoint: a.endpoint, connection: a, isReady: true)
        table.readinessChanged(poolID: pool, endpoint: b.endpoint, connection: b, isReady: true)
        // The caller avoids a (a retry's original went there).
        for _ in 0..<4 { #expect(self.picked(self.pick(&table, "g", avoiding: [a.endpoint])) === b) }
        // Health avoids b after two failures in a row, for a second.
        let routeB = Table.Route(poolID: pool, endpoint: b.endpoint, connection: b)
        let firstPause = table.recordOutcome(routeB, succeeded: false, now: self.now)
        let secondPause = table.recordOutcome(routeB, succeeded: false, now: self.now)
        #expect(firstPause == nil)
        #expect(secondPause == .seconds(1))
        #expect(table.avoided(now: self.now) == [b.endpoint])
        for _ in 0..<4 { #expect(self.picked(self.pick(&table, "g")) === a) }
        // Both avoided: one is taken all the same.
        #expect(self.picked(self.pick(&table, "g", avoiding: [a.endpoint])) != nil)
        // The pause ends.
        #expect(table.avoided(now: self.now + .seconds(2)).isEmpty)
        // The last usable proxy is never avoided by health.
        let routeA = Table.Route(poolID: pool, endpoint: a.endpoint, connection: a)
        _ = table.recordOutcome(routeA, succeeded: false, now: self.now)
        let lastPause = table.recordOutcome(routeA, succeeded: false, now: self.now)
        #expect(lastPause == nil)
    }

    @Test func aClusterNoGroupUsesIsClosedAndItsLatePoolToo() throws {
        var table = Table(subsetSize: 1, seed: 4, health: nil)
        let first = table.update(key: .manager(1), group: "g", listed: [Self.endpoint(1)])
        let (firstID, firstEndpoints) = try #require(first.makePool)
        // g moves to cluster 2 before cluster 1's pool was made: that pool is closed once made.
        let moved = table.update(key: .manager(2), group: "g", listed: [Self.endpoint(2)])
        #expect(moved.closePool == nil)
        let late = table.poolMade(firstID, "c1", endpoints: firstEndpoints)
        #expect(late == .close)
        let secondID = try #require(self.make(&table, moved, name: "c2"))
        // A subset changed between the update and the pool: the pool gets the new one.
        let third = table.update(key: .manager(3), group: "h", listed: [Self.endpoint(3)])
        let (thirdID, thirdEndpoints) = try #require(third.makePool)
        _ = table.update(key: .manager(3), group: "h", listed: [Self.endpoint(4)])
        let changed = table.poolMade(thirdID, "c3", endpoints: thirdEndpoints)
        #expect(changed == .runWith([Self.endpoint(4)]))
        // h leaves cluster 3 for cluster 2: cluster 3's pool is closed.
        let left = table.update(key: .manager(2), group: "h", listed: [Self.endpoint(2)])
        #expect(left.closePool == "c3")
        #expect(table.pools.map(\.id) == [secondID])
        let closed = table.close()
        #expect(closed == ["c2"])
        let afterClose = table.update(key: .manager(5), group: "x", listed: [Self.endpoint(5)])
        #expect(afterClose.makePool == nil)
    }

    @Test func aMemberFailingAtTwoLooksGivesItsSlotToASpare() throws {
        var table = Table(subsetSize: 1, seed: 5, health: nil)
        let pool = try #require(self.make(&table, table.update(key: .configured, group: nil, listed: [Self.endpoint(1), Self.endpoint(2)]), name: "p"))
        let member = try #require(table.clusters[.configured]?.subset.first)
        let firstLook = table.replaceFailing(unreachable: [pool: [member]], now: self.now)
        #expect(firstLook.isEmpty)
        let updates = table.replaceFailing(unreachable: [pool: [member]], now: self.now + .seconds(1))
        #expect(updates.count == 1)
        #expect(updates.first?.endpoints.contains(member) == false)
        // The one swapped out is no spare for a while: the new member failing twice keeps its slot.
        let spare = try #require(updates.first?.endpoints.first)
        _ = table.replaceFailing(unreachable: [pool: [spare]], now: self.now + .seconds(2))
        let noSpare = table.replaceFailing(unreachable: [pool: [spare]], now: self.now + .seconds(3))
        #expect(noSpare.isEmpty)
    }

    // MARK: Seeded schedules

    /// Random updates, pools made late, readiness events (some from pools no longer used), outcomes, refusals and
    /// picks on a simulated clock; after every pick the table agrees with a model of what each pool told it.
    @Test(arguments: 0..<UInt64(40))
    func randomSchedulesKeepEveryPickToAReadyConnectionOfTheGroupsCluster(seed: UInt64) throws {
        var simulation = RoutingSimulation(seed: seed)
        try simulation.run(steps: 600)
    }
}

/// Drives a ``RoutingTable`` as the router does, with a model of the pools' readiness.
struct RoutingSimulation {
    typealias Connection = RoutingTableTests.Connection
    typealias Table = RoutingTable<String, Connection>

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    var random: SplitMix64
    var table: Table
    var now = ContinuousClock.now
    let seed: UInt64
    let groups = ["a", "b", "c"]
    let universe = (1...6).map { Endpoint(host: "10.0.0.1", port: $0) }
    /// Pools made and running, by id: the connections each told ready (and not since told otherwise).
    var ready: [Int: [ObjectIdentifier: Connection]] = [:]
    /// Pools asked for and not made yet.
    var unmade: [(id: Int, endpoints: [Endpoint])] = []
    /// Every connection of every pool, by pool id.
    var connections: [Int: [Connection]] = [:]
    var serial = 0
    var trace: [String] = []

    init(seed: UInt64) {
        self.seed = seed
        self.random = SplitMix64(seed: seed)
        self.table = Table(subsetSize: 1 + Int(seed % 3), seed: seed, health: .init(threshold: 2, basePause: .milliseconds(300)))
    }

    func fail(_ invariant: String) -> Failure {
        Failure(description: "seed \(self.seed): \(invariant)\nlast events:\n" + self.trace.suffix(25).joined(separator: "\n"))
    }

    mutating func note(_ event: String) {
        self.trace.append("\(self.now): \(event)")
    }

    mutating func apply(_ actions: Table.UpdateActions) {
        if let made = actions.makePool { self.unmade.append(made) }
        if let closed = actions.closePool, let id = Int(closed.dropFirst()) {
            // A closed pool's connections shut down: told not ready, in any order with other events.
            for connection in self.connections[id] ?? [] { self.tell(id, connection, ready: false) }
        }
    }

    mutating func tell(_ pool: Int, _ connection: Connection, ready: Bool) {
        self.table.readinessChanged(poolID: pool, endpoint: connection.endpoint, connection: connection, isReady: ready)
        if ready {
            self.ready[pool, default: [:]][ObjectIdentifier(connection)] = connection
        } else {
            self.ready[pool]?[ObjectIdentifier(connection)] = nil
        }
        self.note("pool \(pool): \(connection) \(ready ? "ready" : "not ready")")
    }

    mutating func run(steps: Int) throws {
        for _ in 0..<steps {
            self.now += .milliseconds(Int64.random(in: 0...200, using: &self.random))
            switch Int.random(in: 0..<10, using: &self.random) {
            case 0:
                var generator = self.random
                let listed = self.universe.filter { _ in Bool.random(using: &generator) }
                self.random = generator
                guard !listed.isEmpty else { continue }
                if Int.random(in: 0..<4, using: &self.random) == 0 {
                    self.note("configured \(listed.map(\.port))")
                    self.apply(self.table.update(key: .configured, group: nil, listed: listed))
                } else {
                    let group = self.groups.randomElement(using: &self.random)!
                    let cluster = Int.random(in: 0..<3, using: &self.random)
                    self.note("\(group) in cluster \(cluster): \(listed.map(\.port))")
                    self.apply(self.table.update(key: .manager(cluster), group: group, listed: listed))
                }
            case 1:
                guard !self.unmade.isEmpty else { continue }
                let (id, endpoints) = self.unmade.removeFirst()
                switch self.table.poolMade(id, "p\(id)", endpoints: endpoints) {
                case .close: self.note("pool \(id) made and closed")
                case .run, .runWith: self.note("pool \(id) made")
                }
            case 2, 3:
                // A connection of a made pool changes (pools of clusters gone too: late events).
                var generator = self.random
                let made = self.table.pools.map(\.id) + self.connections.keys.filter { _ in Bool.random(using: &generator) }
                let pool = made.randomElement(using: &generator)
                let existing = pool.flatMap { self.connections[$0]?.randomElement(using: &generator) }
                let toggle = Bool.random(using: &generator)
                self.random = generator
                guard let pool else { continue }
                if let existing, toggle {
                    self.tell(pool, existing, ready: !(self.ready[pool]?[ObjectIdentifier(existing)] != nil))
                } else {
                    self.serial += 1
                    let connection = Connection(self.universe.randomElement(using: &self.random)!, serial: self.serial)
                    self.connections[pool, default: []].append(connection)
                    self.tell(pool, connection, ready: true)
                }
            case 4:
                guard let route = self.pickRoute() else { continue }
                let succeeded = Int.random(in: 0..<3, using: &self.random) > 0
                _ = self.table.recordOutcome(route, succeeded: succeeded, now: self.now)
                self.note("outcome on \(route.connection): \(succeeded)")
            case 5:
                guard let route = self.pickRoute() else { continue }
                self.table.notAccepting(route)
                self.ready[route.poolID]?[ObjectIdentifier(route.connection)] = nil
                self.note("\(route.connection) refused")
            case 6:
                var unreachable: [Int: Set<Endpoint>] = [:]
                var generator = self.random
                for (id, _) in self.table.pools { unreachable[id] = Set(self.universe.filter { _ in Int.random(in: 0..<4, using: &generator) == 0 }) }
                self.random = generator
                let updates = self.table.replaceFailing(unreachable: unreachable, now: self.now)
                if !updates.isEmpty { self.note("spares for \(updates.map(\.pool))") }
            default:
                try self.checkPick()
            }
            try self.checkSubsets()
        }
    }

    mutating func pickRoute() -> Table.Route? {
        let group = self.groups.randomElement(using: &self.random)!
        if case .picked(let route) = self.table.pick(group: group, avoiding: [], now: self.now, choose: RoutingTableTests.leastInFlight).pick {
            return route
        }
        return nil
    }

    mutating func checkPick() throws {
        let group = self.groups.randomElement(using: &self.random)!
        let avoiding: Set<Endpoint> = Bool.random(using: &self.random) ? [self.universe.randomElement(using: &self.random)!] : []
        let key: Table.ClusterKey? = self.table.isRouted(group) ? self.table.groupClusters[group] : (self.table.clusters[.configured] != nil ? .configured : nil)
        let pick = self.table.pick(group: group, avoiding: avoiding, now: self.now, choose: RoutingTableTests.leastInFlight).pick
        self.note("pick for \(group) avoiding \(avoiding.map(\.port)): \(pick)")
        guard let key, let cluster = self.table.clusters[key] else {
            guard case .noRoute = pick else { throw self.fail("a group with no cluster and no configured proxies has no route") }
            return
        }
        let candidates = (self.ready[cluster.poolID] ?? [:]).values.filter { cluster.subset.contains($0.endpoint) }
        let avoided = avoiding.union(cluster.health?.avoided(now: self.now) ?? [])
        switch pick {
        case .noRoute:
            throw self.fail("a group with a cluster or configured proxies has a route")
        case .notReady:
            guard candidates.isEmpty else { throw self.fail("not ready while \(candidates) are ready for \(group)") }
        case .picked(let route):
            guard route.poolID == cluster.poolID else { throw self.fail("\(group) picked pool \(route.poolID), not its cluster's \(cluster.poolID)") }
            guard candidates.contains(where: { $0 === route.connection }) else {
                throw self.fail("picked \(route.connection), not a ready connection to the subset \(cluster.subset.map(\.port))")
            }
            if avoided.contains(route.endpoint), candidates.contains(where: { !avoided.contains($0.endpoint) }) {
                throw self.fail("picked the avoided \(route.connection) while another was ready")
            }
            route.connection.inFlight += 1
        }
    }

    func checkSubsets() throws {
        for (key, cluster) in self.table.clusters {
            let size = min(self.table.subsetSize, Set(cluster.listed).count)
            guard Set(cluster.subset).isSubset(of: Set(cluster.listed)), cluster.subset.count == size, Set(cluster.subset).count == size else {
                throw self.fail("\(key)'s subset \(cluster.subset.map(\.port)) is \(size) listed proxies")
            }
        }
    }
}
