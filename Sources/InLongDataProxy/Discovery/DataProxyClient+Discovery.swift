#if ManagerDiscovery
import InLongTransport
import Logging
import NIOCore
import NIOPosix

/// Discovery: the Manager asked for each group's proxies, on the ``DiscoverySchedule``.
extension DataProxyClient {
    /// Runs the ``DiscoverySchedule``: asks the Manager for the configured groups, then for groups as they are
    /// first used, refreshes every group it knows, and gives the slots of avoided proxies to spares. Between
    /// steps it waits for a wake-up: the router meeting a group without proxies, or the clock reaching the
    /// schedule's next step.
    func discoveryLoop(_ discovery: ProxyDiscovery) async {
        var discovery = discovery
        // The HTTP transport asks for the proxies' HTTP nodes.
        if self.httpTransport != nil { discovery.protocolType = "HTTP" }
        let manager = discovery.configuration
        var schedule = DiscoverySchedule(
            groups: manager.groups,
            refreshInterval: manager.refreshInterval,
            attempts: manager.attempts,
            usesCache: manager.cacheFile != nil,
            now: .now
        )
        var wakeups = self.discoveryWakeups.makeAsyncIterator()
        /// The last request's failure per group, said when its ask gives up.
        var lastErrors: [String: any Error] = [:]
        while !Task.isCancelled {
            // Groups met by the dispatcher with no proxies of their own.
            schedule.met(self.httpTransport?.unroutedGroups ?? self.router.unroutedGroups, now: .now)
            switch schedule.next(now: .now) {
            case .ask(let group, _, _):
                switch await discovery.ask(group: group) {
                case .success(let (list, raw)):
                    lastErrors[group] = nil
                    self.found(list, for: group)
                    // After routing, and on NIO's blocking pool: two fsyncs take seconds on a busy disk. Through a
                    // future, so that a closing client still ends the write it began.
                    try? await NIOThreadPool.singleton.runIfActive(eventLoop: self.eventLoopGroup.any()) {
                        discovery.writeCache(group: group, reply: raw)
                    }.get()
                    schedule.answered(group, found: true, now: .now)
                case .failure(let error) where error is CancellationError:
                    // The client is closing: what the Manager said last still stands.
                    return
                case .failure(let error):
                    lastErrors[group] = error
                    // Told at the first failed request, not after the last: an operator waits for it.
                    if !self.isRouted(group) { self.setDiscoveryError(Self.noProxies(manager, group, error)) }
                    if schedule.answered(group, found: false, now: .now) == .gaveUp {
                        self.askFailed(group, error: error, manager: manager)
                    }
                }
            case .readCache(let group):
                let error = lastErrors[group] ?? DataProxyError(.discoveryFailed, "no answer", group: group)
                if let list = discovery.cachedList(group: group) {
                    self.logger.notice("using the cached proxy list", metadata: ["inlong.group": "\(group)", "inlong.error": "\(error)"])
                    self.found(list, for: group)
                    schedule.cacheRead(group, found: true, now: .now)
                } else {
                    schedule.cacheRead(group, found: false, now: .now)
                    self.askFailed(group, error: error, manager: manager)
                }
            case .replaceFailingProxies:
                // A proxy the Manager still lists but the router avoids gives its slot to a spare. (Over HTTP every
                // listed proxy is in use, and the picker passes over a failing one.)
                if self.httpTransport == nil, self.router.replaceFailingProxies() {
                    let endpoints = self.router.endpoints
                    self.logger.notice("failing proxies replaced by spares", metadata: ["inlong.proxies": "\(endpoints)"])
                    self.withMachineState { $0.proxiesChanged(endpoints) }
                }
            case .wait(let until):
                // The clock wakes this loop at `until`; a group met wakes it sooner.
                self.modifyState { state in
                    state.discovery.due = until
                    return ((), nil)
                }
                guard await wakeups.next() != nil else { return }
            }
        }
    }

    /// Routes `group` to the proxies found for it.
    private func found(_ list: ProxyList, for group: String) {
        let changed = self.httpTransport.map { $0.apply(list.endpoints, for: group) } ?? self.router.apply(list, for: group)
        if changed {
            self.logger.info("proxies updated", metadata: ["inlong.group": "\(group)", "inlong.proxies": "\(list.endpoints)"])
        }
        let endpoints = self.httpTransport?.proxies ?? self.router.endpoints
        let lowered = self.modifyState { state in
            state.machine.proxiesChanged(endpoints)
            let before = state.machine.accumulator.limits.maxBytes
            if let length = list.maxPacketLength { self.applyFrameLimit(length, to: &state.machine) }
            state.discovery.error = nil
            state.discovery.failures[group] = nil
            return (state.machine.accumulator.limits.maxBytes < before, state.machine.routeReady(group))
        }
        // Batches the lanes fill to the former limit go now, as the machine's own open ones do at their linger.
        if lowered { self.handInLanes() }
    }

    /// An ask ended with no proxies: said once at warning while the same failure goes on, each time after it at
    /// debug.
    private func askFailed(_ group: String, error: any Error, manager: Configuration.Manager) {
        let routed = self.isRouted(group)
        let message = routed ? "proxy refresh failed; keeping the group's proxies" : "no proxy found yet"
        let repeated = self.modifyState { state in
            let said = "\(message): \(error)"
            defer { state.discovery.failures[group] = said }
            if !routed { state.discovery.error = Self.noProxies(manager, group, error) }
            return (state.discovery.failures[group] == said, nil)
        }
        self.logger.log(
            level: repeated ? .debug : .warning,
            "\(message)",
            metadata: ["inlong.group": "\(group)", "inlong.manager": "\(manager.url)", "inlong.error": "\(error)"]
        )
    }

    /// Whether `group` has proxies of its own, from the Manager.
    private func isRouted(_ group: String) -> Bool {
        self.httpTransport?.isRouted(group) ?? self.router.isRouted(group)
    }

    private func setDiscoveryError(_ error: String) {
        self.modifyState { state in
            state.discovery.error = error
            return ((), nil)
        }
    }

    private static func noProxies(_ manager: Configuration.Manager, _ group: String, _ error: any Error) -> String {
        "the Manager \(manager.url) gave no proxy for \(group): \(error)"
    }
}
#endif
