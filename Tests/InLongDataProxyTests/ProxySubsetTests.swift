import InLongTransport
import InLongWire
import Testing

@testable import InLongDataProxy

/// The choice of a client's proxies among a cluster's list.
@Suite struct ProxySubsetTests {
    let listed = (1...10).map { Endpoint(host: "10.0.0.\($0)", port: 46801) }

    @Test func aSubsetIsStableWhileItsMembersStayListed() {
        var generator = SplitMix64(seed: 7)
        let first = ProxySubset.update(current: [], listed: self.listed, size: 4, using: &generator)
        #expect(first.count == 4)
        #expect(Set(first).isSubset(of: Set(self.listed)))
        let reordered = ProxySubset.update(current: first, listed: self.listed.reversed(), size: 4, using: &generator)
        #expect(reordered == first)
        // One member leaves: only it is replaced.
        let shrunk = self.listed.filter { $0 != first[1] }
        let replaced = ProxySubset.update(current: first, listed: shrunk, size: 4, using: &generator)
        #expect(replaced.count == 4)
        #expect(Set(replaced).isSuperset(of: Set(first).subtracting([first[1]])))
        #expect(!replaced.contains(first[1]))
    }

    @Test func seedsSpreadClientsOverTheList() {
        var counts: [Endpoint: Int] = [:]
        for seed in 0..<100 {
            var generator = SplitMix64(seed: UInt64(seed))
            for endpoint in ProxySubset.update(current: [], listed: self.listed, size: 4, using: &generator) { counts[endpoint, default: 0] += 1 }
        }
        // 400 picks over 10 proxies: 40 each on average.
        #expect(counts.count == 10)
        #expect(counts.values.allSatisfy { (20...60).contains($0) }, "\(counts.values.sorted())")
    }

    @Test func avoidedMembersGiveTheirSlotsToSparesThatAreNotAvoided() {
        var generator = SplitMix64(seed: 3)
        let current = Array(self.listed.prefix(4))
        let avoided: Set = [current[1], current[3], self.listed[4]]
        let cooling: Set = [self.listed[5]]
        let replaced = ProxySubset.replacing(failing: avoided, unavailable: cooling, in: current, listed: self.listed, using: &generator)
        #expect(replaced.count == 4)
        #expect(replaced[0] == current[0] && replaced[2] == current[2])
        #expect(replaced.allSatisfy { !avoided.contains($0) && !cooling.contains($0) })
        #expect(Set(replaced).count == 4)
        // No spare left: the member stays.
        let small = Array(self.listed.prefix(2))
        #expect(ProxySubset.replacing(failing: [small[0]], in: small, listed: small, using: &generator) == small)
    }

    @Test func aListSmallerThanTheSubsetIsUsedWhole() {
        var generator = SplitMix64(seed: 1)
        #expect(Set(ProxySubset.update(current: [], listed: Array(self.listed.prefix(2)), size: 4, using: &generator)) == Set(self.listed.prefix(2)))
    }
}
