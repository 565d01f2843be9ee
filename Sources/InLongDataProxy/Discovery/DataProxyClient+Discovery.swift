#if ManagerDiscovery
import InLongTransport
import Logging
import Synchronization

/// Discovery: the Manager asked for each group's proxies, on the ``DiscoverySchedule``.
extension DataProxyClient {
    /// Runs the ``DiscoverySchedule``: asks the Manager for the configured groups, then for groups as they are
    /// first used, refreshes every group it knows, and gives the slots of avoided proxies to spares.
    func discoveryLoop(_ discovery: ProxyDiscovery, router: ProxyRouter) async {
        var schedule = DiscoverySchedule(
            groups: discovery.configuration.groups,
            refreshInterval: discovery.configuration.refreshInterval,
            now: .now
        )
        while !Task.isCancelled {
            // Groups met by the dispatcher with no proxies of their own.
            schedule.met(router.unroutedGroups, now: .now)
            switch schedule.next(now: .now) {
            case .discover(let group, let useCache):
                let found = await self.discover(group, discovery: discovery, router: router, useCache: useCache)
                schedule.discovered(group, found: found, now: .now)
            case .replaceFailingProxies:
                // A proxy the Manager still lists but the pool avoids gives its slot to a spare.
                if router.replaceFailingProxies() {
                    self.logger.notice("failing proxies replaced by spares", metadata: ["inlong.proxies": "\(router.endpoints)"])
                    let endpoints = router.endpoints
                    self.withMachineState { $0.proxiesChanged(endpoints) }
                }
            case .wait(let until):
                // The dispatcher's new groups are looked for at least every 50 ms.
                try? await Task.sleep(until: min(until, .now + .milliseconds(50)))
            }
        }
    }

    /// Asks for one group's proxies and routes the group to them; `false` when none was found (a group that
    /// had proxies keeps them).
    private func discover(_ group: String, discovery: ProxyDiscovery, router: ProxyRouter, useCache: Bool) async -> Bool {
        let noProxies = { (error: any Error) in
            "the Manager \(discovery.configuration.url) gave no proxy for \(group): \(error)"
        }
        // Told at the first failed attempt, not after the last: an operator waits for it.
        let attemptFailed = { (error: any Error) in
            if !router.isRouted(group) { self.discoveryError.withLock { $0 = noProxies(error) } }
        }
        switch await discovery.discover(group: group, useCache: useCache, attemptFailed: attemptFailed) {
        case .success(let list):
            if router.apply(list, for: group) {
                self.logger.info("proxies updated", metadata: ["inlong.group": "\(group)", "inlong.proxies": "\(list.endpoints)"])
            }
            let endpoints = router.endpoints
            self.withMachineState { machine in
                machine.proxiesChanged(endpoints)
                if let length = list.maxPacketLength { self.applyFrameLimit(length, to: &machine) }
            }
            self.withMachine { ((), $0.routeReady(group)) }
            self.discoveryError.withLock { $0 = nil }
            self.discoveryFailures.withLock { $0[group] = nil }
            return true
        case .failure(let error) where error is CancellationError:
            // The client is closing: what the Manager said last still stands.
            return false
        case .failure(let error):
            let message = router.isRouted(group) ? "proxy refresh failed; keeping the group's proxies" : "no proxy found yet"
            // Said once at warning while the same failure goes on; each retry after it at debug.
            let repeated = self.discoveryFailures.withLock { failures in
                defer { failures[group] = "\(message): \(error)" }
                return failures[group] == "\(message): \(error)"
            }
            if !router.isRouted(group) { self.discoveryError.withLock { $0 = noProxies(error) } }
            self.logger.log(
                level: repeated ? .debug : .warning,
                "\(message)",
                metadata: ["inlong.group": "\(group)", "inlong.manager": "\(discovery.configuration.url)", "inlong.error": "\(error)"]
            )
            return false
        }
    }
}
#endif
