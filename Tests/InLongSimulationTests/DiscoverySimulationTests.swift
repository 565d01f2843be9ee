import Foundation
@testable import InLongDataProxy
import InLongTransport
import InLongWire
import Synchronization
import Testing

/// When the client asks the Manager (``DiscoverySchedule``), driven as the discovery loop drives it, under seeded
/// random schedules on a simulated clock: a Manager that goes down and up and lists a group or not, asks that take
/// up to the request timeout, a cache that stands in for the Manager, groups the dispatcher meets at any moment.
/// Invariants after every step.
final class DiscoverySimulation {
    let seed: UInt64
    let steps: Int
    var random: SplitMix64
    var trace = EventTrace(keep: Int(ProcessInfo.processInfo.environment["INLONG_SIMULATION_TRACE"] ?? "") ?? 30)
    var step = 0
    let start = ContinuousClock.now
    var now: ContinuousClock.Instant
    let groups = ["g0", "g1", "g2", "g3", "g4", "g5"]
    let refreshInterval: Duration
    /// The longest an ask takes (the Manager's attempts and their timeouts).
    let longestAsk = Duration.seconds(2)
    var schedule: DiscoverySchedule
    var managerUp = true
    var listed: Set<String> = []
    var cached: Set<String> = []
    var routed: Set<String> = []
    /// Groups met by the dispatcher, or configured.
    var wanted: Set<String> = []
    var lastAsked: [String: ContinuousClock.Instant] = [:]
    var lastSpareCheck: ContinuousClock.Instant
    /// Since when the Manager has been up and listing each unrouted wanted group without interruption.
    var findableSince: [String: ContinuousClock.Instant] = [:]

    init(seed: UInt64, steps: Int) {
        self.seed = seed
        self.steps = steps
        var random = SplitMix64(seed: seed)
        self.now = self.start
        self.lastSpareCheck = self.start
        self.refreshInterval = .seconds(Int64.random(in: 1...120, using: &random))
        let configured = Array(["g0", "g1", "g2"].prefix(Int.random(in: 0...3, using: &random)))
        self.wanted = Set(configured)
        self.listed = Set(["g0", "g1", "g2", "g3", "g4", "g5"].filter { _ in Int.random(in: 0..<3, using: &random) > 0 })
        let jitter = Mutex(SplitMix64(seed: seed ^ 0x5555))
        self.schedule = DiscoverySchedule(groups: configured, refreshInterval: self.refreshInterval, now: self.start) { range in
            jitter.withLock { Double.random(in: range, using: &$0) }
        }
        self.random = random
    }

    func violation(_ invariant: String, _ detail: String) -> SimulationViolation {
        SimulationViolation(simulation: "discovery", seed: self.seed, step: self.step, invariant: invariant, detail: detail, trace: self.trace.events)
    }

    func time() -> Duration { self.now - self.start }

    /// The Manager (or, for a first ask, the cache) answers: whether proxies were found.
    func ask(_ group: String, useCache: Bool) throws -> Bool {
        if !useCache, !self.routed.contains(group) {
            throw self.violation("only a group found before is refreshed without the cache", group)
        }
        let took = Duration.milliseconds(Int64.random(in: 0...2_000, using: &self.random))
        self.now += took
        self.lastAsked[group] = self.now
        let found: Bool
        if self.managerUp, self.listed.contains(group) {
            self.cached.insert(group)
            found = true
        } else {
            found = useCache && self.cached.contains(group)
        }
        // A group that had proxies keeps them when an ask fails.
        if found { self.routed.insert(group) }
        self.trace.record("\(self.time()): ask \(group)\(useCache ? "" : " (refresh)") took \(took): \(found ? "found" : "none")")
        return found
    }

    func world() {
        switch Int.random(in: 0..<20, using: &self.random) {
        case 0:
            self.managerUp.toggle()
            self.trace.record("\(self.time()): Manager \(self.managerUp ? "up" : "down")")
        case 1:
            let group = self.groups[Int.random(in: 0..<self.groups.count, using: &self.random)]
            if self.listed.remove(group) == nil { self.listed.insert(group) }
            self.trace.record("\(self.time()): Manager \(self.listed.contains(group) ? "lists" : "drops") \(group)")
        case 2, 3:
            let group = self.groups[Int.random(in: 0..<self.groups.count, using: &self.random)]
            if self.wanted.insert(group).inserted { self.trace.record("\(self.time()): dispatcher meets \(group)") }
        default:
            break
        }
    }

    func check() throws {
        // Routed groups are refreshed by the interval plus the asks due before theirs: every group's retry and the
        // refresh's groups before it, each up to the longest ask.
        let sweep = self.longestAsk * (2 * self.groups.count + 1)
        for group in self.routed {
            let last = self.lastAsked[group] ?? self.start
            if self.now - last > self.refreshInterval + sweep + .milliseconds(100) {
                throw self.violation("a group found is refreshed every interval", "\(group) last asked at \(last - self.start)")
            }
        }
        // The spare check asks no one: it waits for one ask at most.
        if self.now - self.lastSpareCheck > DiscoverySchedule.spareCheckInterval + self.longestAsk + .milliseconds(100) {
            throw self.violation("spares are looked for every second", "last at \(self.lastSpareCheck - self.start)")
        }
        // A group the Manager lists is found within the longest backoff and a sweep once the Manager is up.
        for group in self.wanted where !self.routed.contains(group) {
            guard self.managerUp, self.listed.contains(group) else {
                self.findableSince[group] = nil
                continue
            }
            let since = self.findableSince[group] ?? self.now
            self.findableSince[group] = since
            if self.now - since > .seconds(12) + sweep + .milliseconds(150) {
                throw self.violation("a group the Manager lists is found in time", "\(group) findable since \(since - self.start)")
            }
        }
    }

    func runSchedule() throws {
        while self.step < self.steps {
            self.step += 1
            self.world()
            // The dispatcher's groups without proxies (the router lists them).
            self.schedule.met(self.groups.filter { self.wanted.contains($0) && !self.routed.contains($0) }, now: self.now)
            switch self.schedule.next(now: self.now) {
            case .discover(let group, let useCache):
                let found = try self.ask(group, useCache: useCache)
                self.schedule.discovered(group, found: found, now: self.now)
            case .replaceFailingProxies:
                self.lastSpareCheck = self.now
            case .wait(let until):
                guard until > self.now else { throw self.violation("a wait moves time on", "until \(until - self.start)") }
                // As the loop: at least every 50 ms, for new groups.
                self.now = min(until, self.now + .milliseconds(Int64.random(in: 1...50, using: &self.random)))
            }
            try self.check()
        }
    }
}

@Suite struct DiscoverySimulationTests {
    @Test func everyGroupIsFoundOnceListedAndRefreshedOnTime() async throws {
        try await SimulationRuns.explore("discovery", seeds: 60, offset: 8_000, steps: 2_000) { seed, steps in
            try DiscoverySimulation(seed: seed, steps: steps).runSchedule()
            return steps
        }
    }

    /// Schedules that failed once. 8000: with the asks for groups without proxies always first, four such groups
    /// whose asks took seconds kept the spare check (and the refresh) waiting.
    @Test(arguments: [UInt64(8000)])
    func regressionSeeds(seed: UInt64) throws {
        try DiscoverySimulation(seed: seed, steps: 2_000).runSchedule()
    }

    @Test func theSpareCheckAndTheRefreshAreNotStarvedByGroupsWithoutProxies() {
        let start = ContinuousClock.now
        var schedule = DiscoverySchedule(groups: ["a", "b"], refreshInterval: .seconds(5), now: start, random: { _ in 1 })
        #expect(schedule.next(now: start) == .discover(group: "a", useCache: true))
        schedule.discovered("a", found: true, now: start)
        #expect(schedule.next(now: start) == .discover(group: "b", useCache: true))
        // b's ask took 6 s and found nothing: the spare check comes first, then a's refresh (due at 5 s) before
        // b again (due at 6.2 s).
        var now = start + .seconds(6)
        schedule.discovered("b", found: false, now: now)
        now += .milliseconds(300)
        #expect(schedule.next(now: now) == .replaceFailingProxies)
        #expect(schedule.next(now: now) == .discover(group: "a", useCache: false))
        schedule.discovered("a", found: false, now: now)
        #expect(schedule.next(now: now) == .discover(group: "b", useCache: true))
        schedule.discovered("b", found: true, now: now)
        #expect(schedule.next(now: now) == .wait(until: start + .seconds(7) + .milliseconds(300)))
        #expect(!schedule.isRetrying("a") && !schedule.isRetrying("b"))
    }
}
