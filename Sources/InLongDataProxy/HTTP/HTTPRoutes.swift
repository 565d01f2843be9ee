import InLongTransport

/// Which proxies serve a group over HTTP, with no I/O: without a Manager, every configured proxy serves every
/// group; with one, a group goes to the proxies the Manager listed for it, else to the configured proxies (a
/// fallback while the Manager has not answered for it), else nowhere yet (its batches wait for discovery).
struct HTTPRoutes: Sendable {
    /// Where a group's requests may go.
    enum Route: Equatable, Sendable {
        /// Any proxy.
        case every
        /// One of these.
        case among(Set<Endpoint>)
        /// None yet: the group waits for the Manager.
        case none
    }

    let configured: [Endpoint]
    /// Whether a Manager lists proxies per group.
    let discovers: Bool
    /// The proxies the Manager listed, by group.
    private(set) var groups: [String: [Endpoint]] = [:]
    /// Groups met with no list of their own yet.
    private(set) var unrouted: Set<String> = []

    init(configured: [Endpoint], discovers: Bool) {
        self.configured = configured
        self.discovers = discovers
    }

    /// Where `group`'s next request may go, and whether `group` was met for the first time without a list of its
    /// own (discovery looks for it).
    mutating func route(for group: String) -> (route: Route, newlyUnrouted: Bool) {
        guard self.discovers else { return (.every, false) }
        if let listed = self.groups[group] { return (.among(Set(listed)), false) }
        let newlyUnrouted = self.unrouted.insert(group).inserted
        return (self.configured.isEmpty ? .none : .among(Set(self.configured)), newlyUnrouted)
    }

    /// The Manager listed `endpoints` for `group` (never empty: discovery refuses an empty list). Returns whether
    /// the group's proxies changed.
    mutating func apply(_ endpoints: [Endpoint], for group: String) -> Bool {
        precondition(!endpoints.isEmpty, "an empty list is no answer")
        self.unrouted.remove(group)
        guard self.groups[group] != endpoints else { return false }
        self.groups[group] = endpoints
        return true
    }

    /// Whether `group` has a list of its own.
    func isRouted(_ group: String) -> Bool { self.groups[group] != nil }

    /// Every proxy a request may go to now: the configured ones, then those listed, each once.
    var endpoints: [Endpoint] {
        var all = self.configured
        for group in self.groups.keys.sorted() {
            for endpoint in self.groups[group]! where !all.contains(endpoint) { all.append(endpoint) }
        }
        return all
    }
}
