import DequeModule
import InLongDataProxy
import Logging
import NIOCore
import Synchronization

/// Moves one source's records to the sink (InLong Agent's Instance; one per file): reads while the byte budgets
/// allow, sends each read with one receipt, and acks a read's position once every record of it ended, acked or
/// set aside; records that failed retriably are sent again. On stop it reads no more and waits for what was sent
/// until the stop deadline: unacked positions are never committed, so a restart sends them again.
struct Instance<Source: AgentSource> {
    struct Limits: Sendable {
        var readSize: Int
        var maxUnackedBytes: Int
        var pollInterval: Duration
        var resendDelay: Duration
    }

    let source: Source
    let sink: DataProxySink
    let budget: ByteBudget
    let limits: Limits
    let control: AgentControl
    let counters: AgentCounters
    let origin: String
    let logger: Logger
    /// Called after reads, acks and idle looks (the agent records the committed offset and the counts).
    let onProgress: () -> Void

    /// One read on its way.
    private final class Pending {
        let position: Source.Position
        let bytes: Int
        var deliveries: [DataProxySink.Delivery]
        var resend: [ByteBuffer] = []
        var resendAt: ContinuousClock.Instant?

        init(position: Source.Position, bytes: Int, deliveries: [DataProxySink.Delivery]) {
            self.position = position
            self.bytes = bytes
            self.deliveries = deliveries
        }

        var isDone: Bool { self.deliveries.isEmpty && self.resend.isEmpty }
    }

    /// How the instance ended.
    enum End: Equatable {
        /// The source is exhausted and every record ended.
        case released
        /// Stopped (or the client closed): unacked positions stay uncommitted.
        case stopped
    }

    func run() async -> End {
        var pending = Deque<Pending>()
        var unacked = 0
        defer {
            // What is still pending is not committed; its budget goes back.
            for entry in pending { self.budget.release(entry.bytes) }
        }
        self.onProgress()
        while !Task.isCancelled {
            _ = await self.settle(&pending, unacked: &unacked)
            self.onProgress()
            if self.control.isStopping { break }
            if unacked < self.limits.maxUnackedBytes {
                guard await self.budget.acquire(self.limits.readSize) else { break }
                let data: SourceData<Source.Position>?
                do {
                    data = try self.source.read(maxBytes: self.limits.readSize)
                } catch {
                    self.budget.release(self.limits.readSize)
                    self.counters.readErrors.add(1, ordering: .relaxed)
                    self.logger.warning("cannot read", metadata: ["inlong.source": "\(self.origin)", "inlong.error": "\(error)"])
                    // A file that cannot be read and is gone (deleted, rotated away, a stale NFS handle) is released
                    // as one read to its end would be: it holds a slot and a descriptor otherwise.
                    if pending.isEmpty, self.source.isExhausted(now: .now) { return .released }
                    await self.control.sleep(for: self.limits.pollInterval * 10)
                    continue
                }
                if let data {
                    if data.bytes > self.limits.readSize {
                        self.budget.overdraw(data.bytes - self.limits.readSize)
                    } else {
                        self.budget.release(self.limits.readSize - data.bytes)
                    }
                    self.counters.read(lines: data.records.count, bytes: data.bytes)
                    let deliveries: [DataProxySink.Delivery]
                    do {
                        deliveries = try await self.sink.send(data.records, origin: self.origin)
                    } catch {
                        // The client closed: nothing more can be sent.
                        self.budget.release(data.bytes)
                        return .stopped
                    }
                    pending.append(Pending(position: data.position, bytes: data.bytes, deliveries: deliveries))
                    unacked += data.bytes
                    continue
                }
                self.budget.release(self.limits.readSize)
            }
            // Nothing read: wait for an ack when a read is in flight, else look again shortly.
            if let receipt = pending.lazy.compactMap({ $0.deliveries.first?.receipt }).first {
                await self.waitForOutcome(of: receipt)
            } else if pending.isEmpty, self.source.isExhausted(now: .now) {
                return .released
            } else {
                await self.control.sleep(for: self.limits.pollInterval)
            }
        }
        // Stopping: no more reads or resends; wait for what was sent, until the stop deadline.
        while !Task.isCancelled, let receipt = pending.lazy.compactMap({ $0.deliveries.first?.receipt }).first {
            if let deadline = self.control.deadline, ContinuousClock.now >= deadline { break }
            await self.waitForOutcome(of: receipt)
            _ = await self.settle(&pending, unacked: &unacked)
            self.onProgress()
        }
        return .stopped
    }

    /// Takes the outcomes of deliveries that ended, sends again what failed retriably once due, and acks reads
    /// whose records all ended. Returns whether a position was acked.
    private func settle(_ pending: inout Deque<Pending>, unacked: inout Int) async -> Bool {
        var acked = false
        let now = ContinuousClock.now
        for entry in pending {
            var index = 0
            while index < entry.deliveries.count {
                let delivery = entry.deliveries[index]
                guard delivery.receipt.isComplete, let summary = try? await delivery.receipt.outcome() else {
                    index += 1
                    continue
                }
                entry.deliveries.remove(at: index)
                let resend = self.sink.settle(delivery, summary, origin: self.origin)
                if !resend.isEmpty {
                    entry.resend += resend
                    entry.resendAt = now + self.limits.resendDelay
                    self.logger.debug(
                        "records failed; sending again",
                        metadata: ["inlong.source": "\(self.origin)", "inlong.records": "\(resend.count)", "inlong.error": "\(summary.failures.first.map { "\($0.error)" } ?? "")"]
                    )
                }
            }
            if !entry.resend.isEmpty, let due = entry.resendAt, now >= due, !self.control.isStopping {
                let records = entry.resend
                entry.resend = []
                entry.resendAt = nil
                self.counters.resent.add(records.count, ordering: .relaxed)
                do {
                    entry.deliveries += try await self.sink.send(records, origin: self.origin)
                } catch {
                    // The client closed: the records stay unsent, so the read is never acked.
                    entry.resend = records
                }
            }
        }
        while let first = pending.first, first.isDone {
            pending.removeFirst()
            self.source.ack(first.position)
            self.budget.release(first.bytes)
            unacked -= first.bytes
            self.counters.acked(bytes: first.bytes)
            acked = true
        }
        return acked
    }

    /// Waits until `receipt` ended, or the stop deadline passed.
    private func waitForOutcome(of receipt: DeliveryReceipt) async {
        let control = self.control
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = try? await receipt.outcome() }
            group.addTask { await control.waitForStopDeadline() }
            await group.next()
            group.cancelAll()
        }
    }
}
