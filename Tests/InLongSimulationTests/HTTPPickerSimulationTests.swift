import Foundation
@testable import InLongDataProxy
import InLongTransport
import InLongWire
import Testing

/// Which proxy an HTTP request goes to (``HTTPProxyPicker``) under seeded random schedules on a simulated clock:
/// picks among random candidates (a group's proxies, or all) with random proxies to avoid, proxies added as a
/// Manager lists them, requests that end in any order with success or failure, and time passing across pauses.
/// After every event: the slots in flight are exactly the picks not yet ended, none over its cap; a pick is one of
/// its candidates, and comes back empty only when every candidate is at its cap; and a pick never takes a worse
/// tier (paused, avoided) while a better candidate has room.
final class HTTPPickerSimulation {
    let seed: UInt64
    var random: SplitMix64
    var trace = EventTrace()
    var step = 0
    var now = ContinuousClock.now
    var picker: HTTPProxyPicker
    /// Requests picked and not ended, by proxy.
    var outstanding: [Endpoint] = []

    init(seed: UInt64) {
        self.seed = seed
        self.random = SplitMix64(seed: seed)
        let count = Int(self.random.next() % 4) + 1
        let proxies = (0..<count).map { Endpoint(host: "10.0.0.\($0 + 1)", port: 8080) }
        self.picker = HTTPProxyPicker(
            proxies: proxies,
            maxInFlightPerProxy: Int(self.random.next() % 3) + 1,
            pauseAfterFailure: .milliseconds(Int64(self.random.next() % 500) + 1)
        )
    }

    func violation(_ invariant: String, _ detail: String) -> SimulationViolation {
        SimulationViolation(simulation: "http picker", seed: self.seed, step: self.step, invariant: invariant, detail: detail, trace: self.trace.events)
    }

    func run(steps: Int) throws -> Int {
        for step in 0..<steps {
            self.step = step
            switch self.random.next() % 10 {
            case 0...4:
                try self.pick()
            case 5 where self.picker.proxies.count < 8 && self.random.next() % 4 == 0:
                // The Manager lists a new proxy (and one already known, which changes nothing).
                let added = Endpoint(host: "10.0.1.\(self.picker.proxies.count + 1)", port: 8080)
                let known = self.picker.proxies[Int(self.random.next() % UInt64(self.picker.proxies.count))]
                self.trace.record("add \(added), \(known)")
                let before = self.picker.proxies
                self.picker.add([added, known])
                if self.picker.proxies != before + [added] {
                    throw self.violation("add appends the new proxy only", "\(self.picker.proxies)")
                }
            case 5...7 where !self.outstanding.isEmpty:
                let index = Int(self.random.next() % UInt64(self.outstanding.count))
                let proxy = self.outstanding.remove(at: index)
                let succeeded = self.random.next() % 3 != 0
                self.trace.record("finished \(proxy) succeeded=\(succeeded)")
                self.picker.finished(proxy, succeeded: succeeded, now: self.now)
            default:
                let advance = Duration.milliseconds(Int64(self.random.next() % 300))
                self.now += advance
                self.trace.record("time +\(advance)")
            }
            try self.check()
        }
        return steps
    }

    private func pick() throws {
        let avoiding = Set(self.picker.proxies.filter { _ in self.random.next() % 3 == 0 })
        // A group's proxies (possibly none known to have room), or every proxy.
        let candidates: Set<Endpoint>? = self.random.next() % 2 == 0 ? nil : Set(self.picker.proxies.filter { _ in self.random.next() % 2 == 0 })
        // What the best tier with room is before the pick.
        let roomy = self.picker.proxies.indices.filter { index in
            self.picker.inFlight[index] < self.picker.maxInFlightPerProxy && (candidates?.contains(self.picker.proxies[index]) ?? true)
        }
        let bestTier = roomy.map { self.picker.tier($0, avoiding: avoiding, now: self.now) }.min()
        let picked = self.picker.pick(among: candidates, avoiding: avoiding, now: self.now)
        self.trace.record("pick among \(candidates.map { $0.map(\.host).sorted().description } ?? "all") avoiding \(avoiding.map(\.host).sorted()) -> \(picked.map(\.description) ?? "none")")
        guard let picked else {
            if !roomy.isEmpty { throw self.violation("a pick finds room when a candidate has room", "\(roomy.count) candidates had room") }
            return
        }
        if let candidates, !candidates.contains(picked) { throw self.violation("a pick is one of its candidates", "picked \(picked)") }
        guard let bestTier else { throw self.violation("no pick beyond the caps", "picked \(picked) with every candidate full") }
        let index = self.picker.proxies.firstIndex(of: picked)!
        // The tier is judged before the pick took the slot; tiers do not depend on slots.
        let tier = self.picker.tier(index, avoiding: avoiding, now: self.now)
        if tier != bestTier { throw self.violation("the best tier with room is taken", "picked tier \(tier), best was \(bestTier)") }
        self.outstanding.append(picked)
    }

    private func check() throws {
        for (index, proxy) in self.picker.proxies.enumerated() {
            let expected = self.outstanding.filter { $0 == proxy }.count
            if self.picker.inFlight[index] != expected {
                throw self.violation("slots match the requests in flight", "\(proxy): \(self.picker.inFlight[index]) != \(expected)")
            }
            if expected > self.picker.maxInFlightPerProxy {
                throw self.violation("no proxy beyond its cap", "\(proxy): \(expected)")
            }
        }
    }
}

@Suite struct HTTPPickerSimulationTests {
    @Test func randomSchedulesKeepTheInvariants() async throws {
        try await SimulationRuns.explore("http picker", seeds: 200, steps: 400) { seed, steps in
            try HTTPPickerSimulation(seed: seed).run(steps: steps)
        }
    }
}
