import Synchronization

/// Each source's and listener's own counts, for ``AgentStatistics/sources`` and the per-source metrics: kept by
/// name from the first time it runs until the agent ends, so that its counters only grow (a task changed or
/// removed and added again goes on counting under its name).
extension Agent {
    /// A source's counts, and what it is.
    struct SourceCounting: Sendable {
        var type: String
        var group: String
        var stream: String
        let counters: AgentCounters
        /// A listener's socket, which counts what it received, dropped and cut.
        var listener: ListenerServer?
    }

    /// The counters of the source named `name` (made on first use).
    func sourceCounters(name: String, type: String, group: String, stream: String, listener: ListenerServer? = nil) -> AgentCounters {
        self.modifyStateAndRunActions { state in
            var entry = state.sources[name] ?? SourceCounting(type: type, group: group, stream: stream, counters: AgentCounters())
            entry.type = type
            entry.group = group
            entry.stream = stream
            if let listener { entry.listener = listener }
            state.sources[name] = entry
            return (entry.counters, [])
        }
    }

    /// The rate limiter of the source named `name` (`nil` without a limit): one per source, shared by its files;
    /// a new one when its limit changed.
    func rateLimiter(name: String, limit: AgentConfiguration.RateLimit?) -> SourceRateLimiter? {
        guard let limit else { return nil }
        return self.modifyStateAndRunActions { state in
            if case let (current, limiter)? = state.rateLimiters[name], current == limit { return (limiter, []) }
            let limiter = SourceRateLimiter(limit)
            state.rateLimiters[name] = (limit, limiter)
            return (limiter, [])
        }
    }

    /// Where a source's records go: its lane's client, under the source's group, stream and message attributes,
    /// counted for its group and for itself.
    func sink(
        lane: Lane,
        group: String,
        stream: String,
        attributes: [(String, String)],
        offsetAttribute: String? = nil,
        deadLetters: DeadLetterFile,
        sourceCounters: AgentCounters
    ) -> DataProxySink {
        DataProxySink(
            client: lane.client,
            group: group,
            stream: stream,
            attributes: attributes,
            offsetAttribute: offsetAttribute,
            deadLetters: deadLetters,
            counters: lane.counters,
            sourceCounters: sourceCounters,
            logger: self.logger
        )
    }

    /// An instance's limits: the agent's read size (no more than the source's rate lets one read take), its bytes
    /// unacked per source, poll interval and resend delay.
    func instanceLimits<Source: AgentSource>(of _: Source.Type, rateLimit: SourceRateLimiter?) -> Instance<Source, DataProxySink>.Limits {
        Instance<Source, DataProxySink>.Limits(
            readSize: min(self.configuration.readSize, rateLimit?.maxReadBytes ?? .max),
            maxUnackedBytes: self.configuration.maxUnackedBytesPerFile,
            pollInterval: self.configuration.pollInterval,
            resendDelay: self.configuration.resendDelay
        )
    }

    /// Every source's statistics so far, by name.
    func sourceStatistics() -> [AgentSourceStatistics] {
        let (sources, files) = self.modifyStateAndRunActions { state in
            ((state.sources, state.machine.sourceFiles), [])
        }
        return sources.sorted { $0.key < $1.key }.map { name, entry in
            var statistics = AgentSourceStatistics(name: name, type: entry.type, group: entry.group, stream: entry.stream)
            let counters = entry.counters
            statistics.recordsRead = counters.linesRead.load(ordering: .relaxed)
            statistics.bytesRead = counters.bytesRead.load(ordering: .relaxed)
            statistics.recordsAcked = counters.linesAcked.load(ordering: .relaxed)
            statistics.bytesAcked = counters.bytesAcked.load(ordering: .relaxed)
            statistics.deadLettered = counters.deadLettered.load(ordering: .relaxed)
            statistics.resent = counters.resent.load(ordering: .relaxed)
            statistics.readErrors = counters.readErrors.load(ordering: .relaxed)
            statistics.rateLimitWaits = counters.rateLimitWaits.load(ordering: .relaxed)
            if let files = files[name] {
                statistics.cutRecords = files.counts.cutRecords
                statistics.filteredRecords = files.counts.filteredRecords
                statistics.overlongLines = files.counts.overlongLines
                statistics.openFiles = files.openFiles
                statistics.lagBytes = files.lagBytes
            }
            if let listener = entry.listener?.statistics {
                statistics.received = listener.received
                statistics.dropped = listener.dropped
                statistics.pauses = listener.pauses
                statistics.cutRecords += listener.cutMessages
            }
            return statistics
        }
    }
}
