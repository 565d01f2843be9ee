import Logging
import NIOCore

/// Spilling: with a spool, records the memory quota has no room for are accepted onto disk only, up to the
/// spool's ``DataProxyClient/Configuration/Spool/maxBytes``, and read back into batches as memory frees.
extension DataProxyClient {
    /// The most bytes of records one spill writes (and the drainer holds in memory once it read them back): a
    /// sixteenth of the spool's maximum, so that the last spills before it fill it closely, and at most 1 MiB.
    static func spillEntryBytes(_ spool: Configuration.Spool) -> Int {
        min(1 << 20, spool.maxBytes / 16)
    }

    /// Writes records from `start` on (as many of one key as make an entry) to the spool only, as accepted: their
    /// ids, or `nil` when the spool is at its maximum or the client no longer accepts records.
    func spill(
        from start: Int,
        count: Int,
        observer: RecordObserver,
        record: (Int) -> (body: ByteBuffer, key: BatchKey, attributes: String?)
    ) throws(DataProxyError) -> Range<UInt64>? {
        guard let spool = self.spool, start < count else { return nil }
        let key = record(start).key
        var end = start
        var bytes = 0
        let entryBytes = Self.spillEntryBytes(spool.configuration)
        while end < count, end == start || bytes < entryBytes {
            let next = record(end)
            guard next.key == key else { break }
            bytes += next.body.readableBytes + (next.attributes?.utf8.count ?? 0)
            end += 1
        }
        guard let (seq, ids) = self.withMachineState({ $0.reserveSpill(count: end - start, key: key, observer: observer) }) else { return nil }
        let location: SpillLocation?
        do {
            location = try spool.write(ids: DataProxyRecordIDs(ids), limit: spool.configuration.maxBytes) { record(start + $0) }
        } catch {
            self.withMachine { ((), $0.spillAbandoned(seq, now: .now)) }
            throw error
        }
        guard let location else {
            self.withMachine { ((), $0.spillAbandoned(seq, now: .now)) }
            return nil
        }
        self.withMachine { ((), $0.spillWritten(seq, at: location, now: .now)) }
        return ids
    }

    /// Reads spilled records back into batches, oldest first, as the quota has room; runs beside the dispatcher
    /// until the client closed.
    func drainSpill(_ spool: Spool) async {
        var pending: (seq: Int, records: ArraySlice<SpoolRecord>)?
        while true {
            if pending == nil {
                switch self.withMachineState({ $0.nextSpill() }) {
                case .stop:
                    return
                case .wait:
                    guard await self.parkDrainer(bytes: nil) else { return }
                    continue
                case .read(let seq, let ids, let location, let skip):
                    do throws(DataProxyError) {
                        let records = try spool.read(location)
                        guard records.count == ids.count, records.first?.id == ids.lowerBound, records.last?.id == ids.upperBound - 1 else {
                            throw DataProxyError(.spoolFailed, "spool: records read back from segment \(location.segment) at \(location.offset) are not the ones written there")
                        }
                        pending = (seq, records[(records.startIndex + skip)...])
                    } catch {
                        self.logger.error("spilled records cannot be read back: they fail", metadata: ["inlong.error": "\(error)"])
                        self.withMachine { ((), $0.spillUnreadable(seq, error: error, now: .now)) }
                        continue
                    }
                }
            }
            guard let (seq, records) = pending else { continue }
            let (appended, current) = self.withMachine { machine in
                let (appended, current, actions) = machine.drainSpill(seq, records, now: .now, wallSeconds: wallClockSeconds())
                return ((appended, current), actions)
            }
            let rest = records.dropFirst(appended)
            guard current, let next = rest.first else {
                pending = nil
                continue
            }
            pending = (seq, rest)
            let bytes = BatchAccumulator.quotaBytes(bodyLength: next.body.readableBytes, attributesLength: next.attributes?.utf8.count)
            guard await self.parkDrainer(bytes: bytes) else { return }
        }
    }

    /// Parks the drainer until there may be work; `false` once its task was cancelled.
    private func parkDrainer(bytes: Int?) async -> Bool {
        await withTaskCancellationHandler {
            _ = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                // Cancellation is checked under the lock its handler takes: it cannot slip between.
                let parked = self.withMachineState { machine in
                    Task.isCancelled ? false : machine.parkDrainer(continuation, bytes: bytes)
                }
                if !parked { continuation.resume(returning: true) }
            }
            return !Task.isCancelled
        } onCancel: {
            self.withMachineState { $0.cancelDrainer() }?.resume(returning: true)
        }
    }
}
