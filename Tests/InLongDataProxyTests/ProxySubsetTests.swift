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

    @Test func aListSmallerThanTheSubsetIsUsedWhole() {
        var generator = SplitMix64(seed: 1)
        #expect(Set(ProxySubset.update(current: [], listed: Array(self.listed.prefix(2)), size: 4, using: &generator)) == Set(self.listed.prefix(2)))
    }
}
