public import InLongTransport
import Synchronization

extension DataProxyClient {
    // MARK: Reports and statistics

    /// Delivery reports, one per batch, as batches end: each names exactly the records it covers, and every
    /// record accepted is in exactly one. Each call makes a new sequence that sees the reports of batches ending
    /// after the call. No report is dropped: while sequences are open, a batch's quota is held until each took
    /// its report, so a reader that falls behind slows acceptance (see ``DeliveryReports``); a client with no
    /// sequence open holds nothing for reports. Every sequence finishes after the client's last report (after
    /// ``close(deadline:)`` or cancellation of ``run()``).
    public func deliveryReports() -> DeliveryReports {
        let (stream, continuation) = AsyncStream.makeStream(of: DeliveryReport.self)
        let subscription = self.modifyState { state -> (ReportSubscription?, Machine.Actions?) in
            guard !state.reports.finished else { return (nil, nil) }
            defer { state.reports.nextID += 1 }
            let subscription = ReportSubscription(id: state.reports.nextID, continuation: continuation) { [weak self] id in
                self?.reportReaderEnded(id)
            }
            state.reports.subscriptions[state.reports.nextID] = WeakSubscription(subscription: subscription)
            // Under the same lock as the holds: the machine counts exactly the readers that get reports.
            state.machine.reportReadersChanged(state.reports.subscriptions.count)
            return (subscription, nil)
        }
        guard let subscription else {
            continuation.finish()
            return DeliveryReports(stream: stream, subscription: nil)
        }
        continuation.onTermination = { [weak subscription] _ in subscription?.end() }
        return DeliveryReports(stream: stream, subscription: subscription)
    }

    func reportReaderEnded(_ id: Int) {
        self.modifyState { state in
            guard state.reports.subscriptions.removeValue(forKey: id) != nil else { return ((), nil) }
            state.machine.reportReadersChanged(state.reports.subscriptions.count)
            return ((), nil)
        }
    }

    /// A snapshot of the counters.
    public func statistics() -> DataProxyClientStatistics {
        var statistics = DataProxyClientStatistics()
        self.observation.counted(into: &statistics)
        // The lanes stay locked while the machine is read (lane, then machine: the order lanes' turns take).
        self.withLaneHoldings { lanes in
            // Read in place: a copy of the machine would retain its storage while the lanes wait.
            self.modifyState { state in
                statistics.heldBytes = state.machine.accumulator.heldBytes - state.machine.reports.heldBytes + lanes.bytes
                statistics.heldRecords = state.machine.accumulator.heldRecords - state.machine.reports.heldRecords + lanes.records
                statistics.reportHeldRecords = state.machine.reports.heldRecords
                statistics.inFlightBatches = state.machine.jobCount
                statistics.spilledRecords = state.machine.spill.records
                statistics.discoveryError = state.discovery.error
                return ((), nil)
            }
        }
        if let spool = self.spool { (statistics.spoolBytes, statistics.spoolSegments) = spool.statistics }
        self.httpTransport?.count(into: &statistics)
        statistics.avoidedProxies = self.router.avoidedProxies
        for connection in self.router.pools.flatMap(\.connections) {
            let counted = connection.statistics()
            statistics.answeredRequests += counted.requestsSucceeded
            if connection.connectivityState == .ready {
                statistics.readyProxies += 1
                statistics.reachableProxies.insert(connection.configuration.endpoints[0])
            } else if let error = counted.lastConnectError {
                statistics.proxyErrors[connection.configuration.endpoints[0]] = error
            }
            if let load = connection.reportedLoad { statistics.proxyLoads[connection.configuration.endpoints[0]] = load }
        }
        return statistics
    }

    /// The proxies in use.
    public var proxies: [Endpoint] { self.withMachineState { $0.proxies } }
}
