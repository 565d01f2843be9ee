import InLongTransport
import InLongWire

/// Which proxies of a cluster's list one client connects to: a random subset (so that the clients of a large
/// cluster spread over all of its proxies rather than pile onto the first ones), kept while its members stay
/// listed (so that a refresh or a reordered list changes no connection), with only the departed replaced.
/// Pure: the random numbers come from the caller's generator.
struct ProxySubset {
    /// The subset after the list changed from what `current` was chosen from to `listed`.
    static func update(
        current: [Endpoint],
        listed: [Endpoint],
        size: Int,
        using generator: inout some RandomNumberGenerator
    ) -> [Endpoint] {
        let size = max(1, min(size, listed.count))
        let listedSet = Set(listed)
        var kept = current.filter { listedSet.contains($0) }
        if kept.count > size { kept.removeLast(kept.count - size) }
        let keptSet = Set(kept)
        // Candidates in the Manager's order, then shuffled: the pick depends on the generator only.
        var candidates = listed.filter { !keptSet.contains($0) }
        candidates.sort { ($0.host, $0.port) < ($1.host, $1.port) }
        candidates.shuffle(using: &generator)
        return kept + candidates.prefix(size - kept.count)
    }

    /// The subset with its `failing` members (still listed) swapped for listed proxies outside it that are neither
    /// failing nor `unavailable`, as the C++ SDK keeps reserve proxies: a dead proxy the Manager still lists must not
    /// hold a slot while a spare could serve. Members without a spare stay; the order of the others is kept.
    static func replacing(
        failing: Set<Endpoint>,
        unavailable: Set<Endpoint> = [],
        in current: [Endpoint],
        listed: [Endpoint],
        using generator: inout some RandomNumberGenerator
    ) -> [Endpoint] {
        let currentSet = Set(current)
        var spares = listed.filter { !currentSet.contains($0) && !failing.contains($0) && !unavailable.contains($0) }
        spares.sort { ($0.host, $0.port) < ($1.host, $1.port) }
        spares.shuffle(using: &generator)
        return current.map { member in
            guard failing.contains(member), !spares.isEmpty else { return member }
            return spares.removeFirst()
        }
    }
}
