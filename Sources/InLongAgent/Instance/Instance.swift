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
    let origin: String
    let logger: Logger
    /// Called after reads, acks and idle looks (the agent records the committed offset and the counts).
    let onProgress: () -> Void

    func run() async -> End {
        var machine = Machine(limits: self.limits)
        self.onProgress()
        while true {
            if Task.isCancelled {
                self.apply(machine.finished())
                return .stopped
            }
            if let deadline = self.control.deadline { machine.stop(deadline: deadline) }
            await self.settle(&machine)
            switch machine.next(now: .now) {
            case .finish(let end):
                self.apply(machine.finished())
                self.onProgress()
                return end
            case .read(let maxBytes):
                await self.read(maxBytes: maxBytes, &machine)
            case .resend(let entry, let records):
                let result = try? await self.sink.retry(records, origin: self.origin)
                self.apply(machine.resent(entry: entry, records: records, result: result, now: .now))
            case .acquire(let bytes, let wake):
                if let taken = self.budget.tryAcquire(bytes) {
                    self.apply(machine.acquired(taken))
                } else {
                    let taken = await self.wait(for: wake, budget: bytes)
                    if taken > 0 {
                        self.apply(machine.acquired(taken))
                    } else {
                        machine.budgetNotTaken()
                    }
                }
            case .wait(let wake):
                _ = await self.wait(for: wake, budget: nil)
            case .idle(let until):
                if self.source.isExhausted(now: .now) {
                    machine.sourceExhausted()
                } else {
                    _ = await self.wait(for: .init(outcome: nil, until: until), budget: nil)
                }
            }
            self.onProgress()
        }
    }

    private func read(maxBytes: Int, _ machine: inout Machine) async {
        let data: SourceData<Source.Position>?
        do {
            data = try self.source.read(maxBytes: maxBytes)
        } catch {
            self.counters.readErrors.add(1, ordering: .relaxed)
            self.logger.warning("cannot read", metadata: ["inlong.source": "\(self.origin)", "inlong.error": "\(error)"])
            self.apply(machine.readFailed(now: .now))
            return
        }
        guard let data else {
            self.apply(machine.read(nil, now: .now))
            return
        }
        self.counters.read(lines: data.records.count, bytes: data.bytes)
        do {
            let sent = try await self.sink.send(data.records, origin: self.origin)
            self.apply(machine.read((data.position, data.bytes, sent.deliveries, sent.owed), now: .now))
        } catch {
            // The client closed: nothing more can be sent, and this read is never committed.
            self.apply(machine.sinkClosed())
        }
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
        }
        if effects.overdraw > 0 { self.budget.overdraw(effects.overdraw) }
        if effects.release > 0 { self.budget.release(effects.release) }
    }

    /// Waits for whichever comes first: `bytes` of the budget, the outcome of the first delivery in flight, the
    /// wake time, a stop (or its deadline, once stopping). Returns the budget taken (0 when none).
    private func wait(for wake: Machine.Wake, budget bytes: Int?) async -> Int {
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
            group.addTask {
                if control.isStopping {
                    // The machine asks only for what it still waits for: sleep to the deadline, not to the stop.
                    if let until { try? await Task.sleep(until: until) } else { try? await Task.sleep(for: .seconds(86_400)) }
                } else {
                    await control.sleep(for: until.map { $0 - .now } ?? .seconds(86_400))
                }
                return 0
            }
            var taken = await group.next() ?? 0
            group.cancelAll()
            // A grant that raced the cancellation is kept, not lost.
            for await value in group { taken += value }
            return taken
        }
    }
}
