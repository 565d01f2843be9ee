import Foundation
@testable import InLongDataProxy
import InLongTransport
import InLongWire
import Synchronization
import Testing

/// When the client asks the Manager (``DiscoverySchedule``), driven as the discovery loop drives it, under seeded
/// random schedules on a simulated clock: a Manager that goes down and up and lists a group or not, requests that
/// take up to the request timeout, asks of up to three requests, a cache that stands in for the Manager, groups the
/// dispatcher meets at any moment (each one a wake-up of the loop). Invariants after every step.
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
    let attempts: Int
    let usesCache: Bool
    /// The longest one request takes (its timeout).
    let longestRequest = Duration.seconds(2)
    /// The longest an ask takes: every request, and the waits between them.
    let longestAsk: Duration
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
    /// The ask under way: its group, its requests so far, when the last one failed, whether it is a refresh.
    var asking: (group: String, attempt: Int, failedAt: ContinuousClock.Instant, refresh: Bool)?

    init(seed: UInt64, steps: Int) {
        self.seed = seed
        self.steps = steps
        var random = SplitMix64(seed: seed)
        self.now = self.start
        self.lastSpareCheck = self.start
        self.refreshInterval = .seconds(Int64.random(in: 1...120, using: &random))
        self.attempts = Int.random(in: 1...3, using: &random)
        self.usesCache = Bool.random(using: &random)
        self.longestAsk = self.longestRequest * self.attempts
            + (1..<self.attempts).reduce(.zero) { $0 + DiscoverySchedule.attemptDelay(after: $1) }
        let configured = Array(["g0", "g1", "g2"].prefix(Int.random(in: 0...3, using: &random)))
        self.wanted = Set(configured)
        self.listed = Set(["g0", "g1", "g2", "g3", "g4", "g5"].filter { _ in Int.random(in: 0..<3, using: &random) > 0 })
        let jitter = Mutex(SplitMix64(seed: seed ^ 0x5555))
        self.schedule = DiscoverySchedule(
            groups: configured,
            refreshInterval: self.refreshInterval,
            attempts: self.attempts,
            usesCache: self.usesCache,
            now: self.start
        ) { range in
            jitter.withLock { Double.random(in: range, using: &$0) }
        }
        self.random = random
    }

    func violation(_ invariant: String, _ detail: String) -> SimulationViolation {
        SimulationViolation(simulation: "discovery", seed: self.seed, step: self.step, invariant: invariant, detail: detail, trace: self.trace.events)
    }

    func time() -> Duration { self.now - self.start }

    /// One request to the Manager: whether it listed proxies.
    func ask(_ group: String, attempt: Int, refresh: Bool) throws -> Bool {
        if refresh, !self.routed.contains(group) {
            throw self.violation("only a group found before is refreshed", group)
        }
        if attempt == 1 {
            if let asking = self.asking { throw self.violation("one ask at a time", "\(group) while \(asking.group) is asked") }
        } else {
            guard let asking = self.asking, asking.group == group, asking.attempt + 1 == attempt, attempt <= self.attempts else {
                throw self.violation("an ask's requests come in order, up to the attempts", "\(group) attempt \(attempt)")
            }
            let delay = DiscoverySchedule.attemptDelay(after: asking.attempt)
            if self.now - asking.failedAt < delay {
                throw self.violation("a request waits its delay after a failed one", "\(group) attempt \(attempt) after \(self.now - asking.failedAt)")
            }
        }
        let took = Duration.milliseconds(Int64.random(in: 0...2_000, using: &self.random))
        self.now += took
        self.lastAsked[group] = self.now
        let found = self.managerUp && self.listed.contains(group)
        if found {
            // The Manager's answer is cached, and the group has proxies from now on.
            self.cached.insert(group)
            self.routed.insert(group)
        }
        self.asking = (group, attempt, self.now, refresh)
        self.trace.record("\(self.time()): ask \(group) #\(attempt)\(refresh ? " (refresh)" : "") took \(took): \(found ? "found" : "none")")
        return found
    }

    /// The cache stands in: whether it has the group.
    func readCache(_ group: String) throws -> Bool {
        guard self.usesCache, let asking = self.asking, asking.group == group, !asking.refresh, asking.attempt == self.attempts else {
            throw self.violation("the cache is read after every request of a first ask failed", group)
        }
        let found = self.cached.contains(group)
        if found { self.routed.insert(group) }
        self.trace.record("\(self.time()): cache for \(group): \(found ? "found" : "none")")
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
        // The spare check asks no one: it waits for one request at most, even in an ask of several.
        if self.now - self.lastSpareCheck > DiscoverySchedule.spareCheckInterval + self.longestRequest + .milliseconds(100) {
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
            case .ask(let group, let attempt, let refresh):
                let found = try self.ask(group, attempt: attempt, refresh: refresh)
                if self.schedule.answered(group, found: found, now: self.now) != .continuing { self.asking = nil }
            case .readCache(let group):
                let found = try self.readCache(group)
                self.schedule.cacheRead(group, found: found, now: self.now)
                self.asking = nil
            case .replaceFailingProxies:
                self.lastSpareCheck = self.now
            case .wait(let until):
                guard until > self.now else { throw self.violation("a wait moves time on", "until \(until - self.start)") }
                // Woken at `until`, or sooner by a group the dispatcher meets.
                self.now = Bool.random(using: &self.random)
                    ? until : min(until, self.now + .milliseconds(Int64.random(in: 1...500, using: &self.random)))
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
        #expect(schedule.next(now: start) == .ask(group: "a", attempt: 1, refresh: false))
        #expect(schedule.answered("a", found: true, now: start) == .found)
        #expect(schedule.next(now: start) == .ask(group: "b", attempt: 1, refresh: false))
        // b's ask took 6 s and found nothing: the spare check comes first, then a's refresh (due at 5 s) before
        // b again (due at 6.2 s).
        var now = start + .seconds(6)
        #expect(schedule.answered("b", found: false, now: now) == .gaveUp)
        now += .milliseconds(300)
        #expect(schedule.next(now: now) == .replaceFailingProxies)
        #expect(schedule.next(now: now) == .ask(group: "a", attempt: 1, refresh: true))
        schedule.answered("a", found: false, now: now)
        #expect(schedule.next(now: now) == .ask(group: "b", attempt: 1, refresh: false))
        schedule.answered("b", found: true, now: now)
        #expect(schedule.next(now: now) == .wait(until: start + .seconds(7) + .milliseconds(300)))
        #expect(!schedule.isRetrying("a") && !schedule.isRetrying("b"))
    }

    /// An ask is up to `attempts` requests, 500 ms × n after the n-th failed; the spare check goes on between them;
    /// when all failed, a first ask reads the cache, and a group it does not find there backs off.
    @Test func anAskRetriesItsRequestsThenReadsTheCache() {
        let start = ContinuousClock.now
        var schedule = DiscoverySchedule(groups: ["a"], refreshInterval: .seconds(60), attempts: 3, usesCache: true, now: start, random: { _ in 1 })
        #expect(schedule.next(now: start) == .ask(group: "a", attempt: 1, refresh: false))
        var now = start + .milliseconds(100)
        #expect(schedule.answered("a", found: false, now: now) == .continuing)
        #expect(schedule.isAsking)
        #expect(schedule.next(now: now) == .wait(until: now + .milliseconds(500)))
        now += .milliseconds(500)
        #expect(schedule.next(now: now) == .ask(group: "a", attempt: 2, refresh: false))
        #expect(schedule.answered("a", found: false, now: now) == .continuing)
        // The second wait is 1 s, and the spare check (due at 1 s) comes within it.
        #expect(schedule.next(now: now) == .wait(until: start + .seconds(1)))
        #expect(schedule.next(now: start + .seconds(1)) == .replaceFailingProxies)
        now += .seconds(1)
        #expect(schedule.next(now: now) == .ask(group: "a", attempt: 3, refresh: false))
        #expect(schedule.answered("a", found: false, now: now) == .continuing)
        #expect(schedule.next(now: now) == .readCache(group: "a"))
        #expect(schedule.cacheRead("a", found: false, now: now) == .gaveUp)
        #expect(!schedule.isAsking)
        #expect(schedule.isRetrying("a"))
        // Backed off (200 ms with this jitter), then asked afresh from the first request.
        #expect(schedule.next(now: now) == .wait(until: now + .milliseconds(200)))
        #expect(schedule.next(now: now + .milliseconds(200)) == .ask(group: "a", attempt: 1, refresh: false))
        #expect(schedule.answered("a", found: true, now: now + .milliseconds(200)) == .found)
        #expect(!schedule.isRetrying("a"))
    }

    /// A refresh that fails keeps the group's proxies: it reads no cache and does not back off.
    @Test func aFailedRefreshReadsNoCache() {
        let start = ContinuousClock.now
        var schedule = DiscoverySchedule(groups: ["a"], refreshInterval: .seconds(5), attempts: 2, usesCache: true, now: start, random: { _ in 1 })
        #expect(schedule.next(now: start) == .ask(group: "a", attempt: 1, refresh: false))
        schedule.answered("a", found: true, now: start)
        // The refresh is due at 5 s; the spare checks come every second before it.
        var now = start + .seconds(5)
        #expect(schedule.next(now: now) == .replaceFailingProxies)
        #expect(schedule.next(now: now) == .ask(group: "a", attempt: 1, refresh: true))
        #expect(schedule.answered("a", found: false, now: now) == .continuing)
        now += .milliseconds(500)
        #expect(schedule.next(now: now) == .ask(group: "a", attempt: 2, refresh: true))
        #expect(schedule.answered("a", found: false, now: now) == .gaveUp)
        #expect(!schedule.isAsking)
        #expect(!schedule.isRetrying("a"))
    }
}
