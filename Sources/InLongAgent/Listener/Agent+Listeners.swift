import InLongDataProxy
import Logging
import NIOCore

/// The agent's network listeners: bound before it starts (a port that cannot be bound stops it, named), one
/// instance each, and at the stop closed first, so that what they received is sent before the clients close.
extension Agent {
    /// What each listener took in, once bound.
    public func listenerStatistics() -> [ListenerStatistics] {
        self.modifyStateAndRunActions { ($0.listeners.map(\.statistics), []) }
    }

    func bindListeners() async throws -> [ListenerServer] {
        var bound: [ListenerServer] = []
        for listener in self.configuration.listeners {
            do {
                bound.append(try await ListenerServer.bind(listener, group: self.eventLoopGroup, logger: self.logger))
            } catch {
                for server in bound { await server.close() }
                throw error
            }
        }
        self.modifyStateAndRunActions { state in
            state.listeners = bound
            return ((), [])
        }
        for server in bound { self.logger.info("listening", metadata: ["inlong.address": "\(server.statistics.address)"]) }
        return bound
    }

    /// Starts an instance per listener under its own control: the agent's stop closes the listener first, and the
    /// instance stops only once it read what was queued.
    func startListeners(_ servers: [ListenerServer], deadLetters: DeadLetterFile, into instances: inout DiscardingTaskGroup) -> AgentControl {
        let control = AgentControl()
        // Standard input as the only source: its end is the agent's (as `inlong send` ends with its input).
        let endsWithInput = self.configuration.sources.isEmpty && self.configuration.listeners.count == 1
        for server in servers {
            let listener = server.configuration
            let lane = self.lane(for: listener.group, into: &instances)
            let sourceCounters = self.sourceCounters(
                name: server.metricsName, type: listener.format.rawValue, group: listener.group, stream: listener.stream, listener: server
            )
            let sink = self.sink(
                lane: lane,
                group: listener.group,
                stream: listener.stream,
                attributes: listener.attributes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                deadLetters: deadLetters,
                sourceCounters: sourceCounters
            )
            let rateLimit = self.rateLimiter(name: server.metricsName, limit: listener.rateLimit)
            let limits = self.instanceLimits(of: ListenerSource.self, rateLimit: rateLimit)
            let source = ListenerSource(queue: server.queue, syslogAttributes: listener.syslogAttributes)
            let logger = self.logger
            instances.addTask {
                let instance = Instance(
                    source: source,
                    sink: sink,
                    budget: lane.budget,
                    limits: limits,
                    control: control,
                    counters: lane.counters,
                    sourceCounters: sourceCounters,
                    rateLimit: rateLimit,
                    origin: listener.address,
                    logger: logger,
                    setsAsideAtStop: true
                ) { _ in }
                let end = await instance.run()
                if end == .stopped {
                    // Messages never read (the stop's deadline came first): set aside, as there is no offset to
                    // read them again from.
                    let left = server.queue.takeAll()
                    if !left.isEmpty {
                        await sink.setAside(left.map { PendingRecord(body: $0) }, inFlight: [], reason: "the agent stopped before it was sent", origin: listener.address)
                    }
                }
                // Nothing more is read from it: whoever waits for it to drain goes on.
                server.queue.readerStopped()
                if end == .released, listener.transport == .stdin, endsWithInput {
                    self.logger.info("standard input ended and every line was sent: stopping")
                    self.stop()
                }
            }
        }
        return control
    }

    /// Closes the listeners, waits (up to the stop's deadline) for their instances to read what was queued, then
    /// stops those instances: what they sent gets until the deadline to be acked, as a file's lines do. Woken when
    /// the last queue drains (or its instance ended), at the deadline, or when cancelled; never by polling.
    func drainListeners(_ servers: [ListenerServer], control: AgentControl) async {
        guard !servers.isEmpty else { return }
        for server in servers { await server.close() }
        let deadline = self.control.deadline ?? .now
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for server in servers { await server.queue.waitUntilDrained() }
            }
            group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            await group.next()
            group.cancelAll()
        }
        control.stop(deadline: deadline)
    }
}
