import InLongDataProxy
import Logging
import NIOCore
import Synchronization

/// Moves one source's records to the sink (InLong Agent's Instance; one per file): the driver of an
/// ``InstanceStateMachine``. It runs the machine's actions (take budget and read, send, send again, wait) and
/// reports what came of them; the rules, and why it never waits for budget alone, are the machine's.
struct Instance<Source: AgentSource, Sink: InstanceSink> {
    typealias Machine = InstanceStateMachine<Source.Position, Sink.Delivery, PendingRecord>
    typealias Limits = Machine.Limits
    typealias End = Machine.End

    let source: Source
    let sink: Sink
    let budget: ByteBudget
    let limits: Limits
    let control: AgentControl
    let counters: AgentCounters
    /// The source's own counts (its metrics), beside the group's.
    var sourceCounters: AgentCounters? = nil
    /// The source's rate limit, shared by its instances: reading waits while it is used up.
    var rateLimit: SourceRateLimiter? = nil
    let origin: String
    let logger: Logger
    /// A source without offsets (a listener): at a stop, what did not end is set aside (dead-lettered), as it
    /// cannot be read again.
    var setsAsideAtStop = false
    /// Called once per step, after the outcomes that ended were settled and before the next action (so before any
    /// wait), and at the end, with the bytes read and not yet acked (the agent records the committed offset and the
    /// counts).
    let onProgress: (_ unackedBytes: Int) -> Void

    func run() async -> End {
        var machine = Machine(limits: self.limits)
        // Whether the machine was told of the stop: until then every wait also ends at the stop.
        var stopping = false
        while true {
            if Task.isCancelled {
                self.onProgress(machine.unackedBytes)
                await self.setAsideUnended(machine)
                self.apply(machine.finished())
                return .stopped
            }
            if let deadline = self.control.deadline {
                machine.stop(deadline: deadline)
                stopping = true
            }
            await self.settle(&machine)
            // Before anything waits: acks just settled count at once (the agent may have caught up with them).
            self.onProgress(machine.unackedBytes)
            switch machine.next(now: .now) {
            case .finish(let end):
                // Reported above, before the machine lets go of what it holds: a stopped file's unacked reads stay
                // counted.
                if end == .stopped { await self.setAsideUnended(machine) }
                self.apply(machine.finished())
                return end
            case .read(let maxBytes):
                switch self.rateLimit?.reserve(now: .now) {
                case nil:
                    await self.read(maxBytes: maxBytes, maxRecords: nil, &machine)
                case .read(let records, let bytes):
                    // An exact read: within the source's rate to one record.
                    await self.read(maxBytes: min(maxBytes, bytes), maxRecords: records, reserved: .read(records: records, bytes: bytes), &machine)
                case .wait(let until):
                    // Over the source's rate: the records wait in the source (back-pressure, never a loss). The
                    // wait ends at the stop too; the machine then lets go of the budget held for this read.
                    self.sourceCounters?.rateLimitWaits.add(1, ordering: .relaxed)
                    _ = await self.wait(for: .init(outcome: nil, until: until), budget: nil, untilStop: !stopping)
                }
            case .resend(let entry, let records):
                do {
                    let result = try await self.sink.retry(records, origin: self.origin)
                    self.apply(machine.resent(entry: entry, records: records, result: result, now: .now))
                } catch let closed as SinkClosed<Sink.Delivery> {
                    // What went before the close is awaited; the rest stays owed (set aside at the stop, or read
                    // again from the committed offset).
                    self.apply(machine.resent(entry: entry, records: records, result: (closed.deliveries, closed.owed), now: .now))
                    self.apply(machine.sinkClosed())
                } catch {
                    self.apply(machine.resent(entry: entry, records: records, result: nil, now: .now))
                }
            case .acquire(let bytes, let wake):
                if let taken = self.budget.tryAcquire(bytes) {
                    self.apply(machine.acquired(taken))
                } else {
                    let taken = await self.wait(for: wake, budget: bytes, untilStop: !stopping)
                    if taken > 0 {
                        self.apply(machine.acquired(taken))
                    } else {
                        machine.budgetNotTaken()
                    }
                }
            case .wait(let wake):
                _ = await self.wait(for: wake, budget: nil, untilStop: !stopping)
            case .idle(let until):
                if self.source.isExhausted(now: .now) {
                    machine.sourceExhausted()
                } else {
                    _ = await self.wait(for: .init(outcome: nil, until: until), budget: nil, untilStop: !stopping)
                }
            }
        }
    }

    private func read(maxBytes: Int, maxRecords: Int?, reserved: SourceRateLimiter.Allowance? = nil, _ machine: inout Machine) async {
        let data: SourceData<Source.Position>?
        do {
            data = try self.source.read(maxBytes: maxBytes, maxRecords: maxRecords, now: .now)
            // What the read took of the source's rate limit; what it reserved and did not use goes back at once.
            if let reserved { self.rateLimit?.settle(reserved, lines: data?.records.count ?? 0, bytes: data?.bytes ?? 0, now: .now) }
        } catch {
            if let reserved { self.rateLimit?.settle(reserved, lines: 0, bytes: 0, now: .now) }
            self.counters.readErrors.add(1, ordering: .relaxed)
            self.sourceCounters?.readErrors.add(1, ordering: .relaxed)
            self.logger.warning("cannot read", metadata: ["inlong.source": "\(self.origin)", "inlong.error": "\(error)"])
            self.apply(machine.readFailed(now: .now))
            return
        }
        guard let data else {
            self.apply(machine.read(nil, now: .now))
            return
        }
        self.counters.read(lines: data.records.count, bytes: data.bytes)
        self.sourceCounters?.read(lines: data.records.count, bytes: data.bytes)
        // Once the machine holds the outcome of the send, whatever it is.
        defer { self.source.handedOn() }
        do {
            let sent = try await self.sink.send(data.records, offsets: data.offsets, attributes: data.attributes, origin: self.origin)
            self.apply(machine.read((data.position, data.bytes, sent.deliveries, sent.owed), now: .now))
        } catch let closed as SinkClosed<Sink.Delivery> {
            // The client closed part way: what it accepted before is awaited, the rest stays owed (set aside at the
            // stop, or read again from the committed offset); this read is never committed.
            self.apply(machine.read((data.position, data.bytes, closed.deliveries, closed.owed), now: .now))
            self.apply(machine.sinkClosed())
        } catch {
            // The client closed: nothing more can be sent, and this read is never committed.
            self.apply(machine.sinkClosed())
        }
    }

    private func setAsideUnended(_ machine: Machine) async {
        guard self.setsAsideAtStop else { return }
        let (owed, inFlight) = machine.unended
        guard !owed.isEmpty || !inFlight.isEmpty else { return }
        await self.sink.setAside(owed, inFlight: inFlight, reason: "the agent stopped before an ack", origin: self.origin)
    }

    /// Hands the outcomes of deliveries that ended to the machine.
    private func settle(_ machine: inout Machine) async {
        for (id, delivery) in machine.deliveriesInFlight {
            guard let owed = await self.sink.settle(delivery, origin: self.origin) else { continue }
            self.apply(machine.ended(delivery: id, resend: owed, now: .now))
        }
    }

    private func apply(_ effects: Machine.Effects) {
        for (position, bytes) in effects.acked {
            self.source.ack(position)
            self.counters.acked(bytes: bytes)
            self.sourceCounters?.acked(bytes: bytes)
        }
        if effects.overdraw > 0 { self.budget.overdraw(effects.overdraw) }
        if effects.release > 0 { self.budget.release(effects.release) }
    }

    /// Waits for whichever comes first: `bytes` of the budget, the outcome of the first delivery in flight, the
    /// wake time, and a stop while `untilStop` (once the machine knows of the stop, its wake time is the stop's
    /// deadline). Returns the budget taken (0 when none).
    private func wait(for wake: Machine.Wake, budget bytes: Int?, untilStop: Bool) async -> Int {
        let control = self.control
        let budget = self.budget
        let sink = self.sink
        let delivery = wake.outcome?.delivery
        let until = wake.until
        return await withTaskGroup(of: Int.self) { group in
            if let bytes { group.addTask { await budget.acquire(bytes) } }
            if let delivery {
                group.addTask {
                    await sink.waitForOutcome(of: delivery)
                    return 0
                }
            }
            // A stop the machine does not know of yet ends the wait at once (or when it comes).
            if untilStop {
                group.addTask {
                    await control.waitForStop()
                    return 0
                }
            }
            // The machine's wake time is a true deadline (a resend due, the next look at the source, the stop's
            // deadline): one sleep until then, cancelled when something else comes first.
            if let until {
                group.addTask {
                    try? await Task.sleep(until: until, clock: .continuous)
                    return 0
                }
            }
            var taken = await group.next() ?? 0
            group.cancelAll()
            // A grant that raced the cancellation is kept, not lost.
            for await value in group { taken += value }
            return taken
        }
    }
}
