import DequeModule
import InLongWire
import Testing

@testable import InLongDataProxy

/// Jobs of groups without proxies (``DeliveryStateMachine/RouteWaitList``): by group, oldest first; a routed group
/// holds none.
@Suite struct RouteWaitListTests {
    typealias RouteWaitList = DeliveryStateMachine<Int>.RouteWaitList

    func job(_ id: Int, _ group: String, deadline: Int = 1_000) -> DeliveryJob {
        DeliveryJobFixtures.job(id, group: group, deadline: deadline)
    }

    @Test func jobsWaitByGroupOldestFirstMarkedAsHavingWaited() {
        var routes = RouteWaitList()
        #expect(routes.park(self.job(0, "a")) == nil)
        #expect(routes.park(self.job(1, "b")) == nil)
        #expect(routes.park(self.job(2, "a")) == nil)
        #expect(routes.count == 3)
        #expect(Set(routes.groups) == ["a", "b"])
        #expect(routes.waiting["a"]?.map(\.id) == [0, 2])
        #expect(routes.waiting.values.allSatisfy { $0.allSatisfy(\.awaitedRoute) })
        let ready = routes.routeReady("a")
        #expect(ready?.map(\.id) == [0, 2])
        #expect(routes.groups == ["b"])
        #expect(routes.count == 1)
    }

    @Test func aJobOfARoutedGroupIsHandedBackUnmarked() throws {
        var routes = RouteWaitList()
        #expect(!routes.isRouted("a"))
        #expect(routes.routeReady("a") == nil)
        #expect(routes.isRouted("a"))
        let parked = routes.park(self.job(4, "a"))
        let back = try #require(parked)
        #expect(back.id == 4)
        #expect(!back.awaitedRoute)
        #expect(routes.isEmpty)
        #expect(routes.count == 0)
    }

    @Test func whatIsKeptReplacesTheListAndNothingKeptDropsTheGroup() {
        var routes = RouteWaitList()
        for id in 0..<3 { _ = routes.park(self.job(id, "a")) }
        _ = routes.park(self.job(3, "b"))
        var kept = routes.waiting["a"] ?? []
        kept.removeFirst()
        routes.replace("a", with: kept)
        #expect(routes.waiting["a"]?.map(\.id) == [1, 2])
        routes.replace("b", with: [])
        #expect(routes.waiting["b"] == nil)
        #expect(routes.groups == ["a"])
        #expect(!routes.isRouted("b"))
    }

    @Test func removingAllKeepsTheGroupsRouted() {
        var routes = RouteWaitList()
        _ = routes.routeReady("r")
        _ = routes.park(self.job(0, "a"))
        _ = routes.park(self.job(1, "b"))
        _ = routes.park(self.job(2, "a"))
        var jobs = [self.job(9, "x")]
        routes.removeAll(into: &jobs)
        #expect(jobs.first?.id == 9)
        #expect(jobs.map(\.id).sorted() == [0, 1, 2, 9])
        // Within a group, oldest first.
        let a = jobs.filter { $0.batch.key.group == "a" }.map(\.id)
        #expect(a == [0, 2])
        #expect(routes.isEmpty)
        #expect(routes.isRouted("r"))
        #expect(routes.park(self.job(5, "r")) != nil)
    }

    /// Random parks, routes, expiries and removals against a model: after every step no group holds an empty
    /// list, a routed group holds none, every job waits marked in its group's order, and the count is the model's.
    @Test(arguments: [1, 2, 3] as [UInt64]) func randomSchedulesKeepTheInvariants(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var routes = RouteWaitList()
        let groups = ["a", "b", "c", "d", "e"]
        var model: [String: [Int]] = [:]
        var routed: Set<String> = []
        var nextID = 0
        for _ in 0..<2_000 {
            let group = groups.randomElement(using: &random)!
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:
                let back = routes.park(self.job(nextID, group))
                if routed.contains(group) {
                    #expect(back?.id == nextID && back?.awaitedRoute == false, "seed \(seed)")
                } else {
                    #expect(back == nil, "seed \(seed)")
                    model[group, default: []].append(nextID)
                }
                nextID += 1
            case 6:
                // Rarely: routes come for good.
                guard Int.random(in: 0..<4, using: &random) == 0 else { break }
                let jobs = routes.routeReady(group)
                #expect(jobs?.map(\.id) == model[group])
                model[group] = nil
                routed.insert(group)
            case 7, 8:
                // Expiry: some of a group's jobs are dropped, the rest kept in order.
                guard var kept = routes.waiting[group] else { break }
                let drop = Int.random(in: 0...kept.count, using: &random)
                kept.removeFirst(drop)
                routes.replace(group, with: kept)
                let left = Array(model[group, default: []].dropFirst(drop))
                model[group] = left.isEmpty ? nil : left
            default:
                guard Int.random(in: 0..<10, using: &random) == 0 else { break }
                var jobs: [DeliveryJob] = []
                routes.removeAll(into: &jobs)
                #expect(jobs.map(\.id).sorted() == model.values.flatMap { $0 }.sorted())
                model.removeAll()
            }
            #expect(routes.count == model.values.reduce(0) { $0 + $1.count })
            #expect(routes.isEmpty == model.isEmpty)
            #expect(Set(routes.groups) == Set(model.keys))
            for (group, jobs) in routes.waiting {
                #expect(!jobs.isEmpty)
                #expect(!routed.contains(group))
                #expect(jobs.map(\.id) == model[group])
                #expect(jobs.allSatisfy { $0.awaitedRoute && $0.batch.key.group == group })
            }
            for group in groups { #expect(routes.isRouted(group) == routed.contains(group)) }
        }
    }
}
