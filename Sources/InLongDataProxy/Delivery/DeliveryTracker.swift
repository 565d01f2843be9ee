import Synchronization

/// Records of one tracked call that ended in one outcome.
public struct DeliveryFailure: Sendable {
    public var records: DataProxyRecordIDs
    public var error: DataProxyError
}

/// How the records of one tracked `send(contentsOf:)` call ended: each acked or failed, exactly once.
public struct DeliverySummary: Sendable {
    /// Every record the call accepted.
    public var records: DataProxyRecordIDs
    public var acked: Int
    /// The failed records, by batch, with their errors.
    public var failures: [DeliveryFailure]

    public var failed: Int { self.records.count - self.acked }
    public var allAcked: Bool { self.acked == self.records.count }
}

/// The end of a set of records to wait for: one call's records, one waiter, however many records and batches.
public struct DeliveryReceipt: Sendable {
    let tracker: DeliveryTracker

    /// The records accepted by the call.
    public var records: DataProxyRecordIDs { self.tracker.records }

    /// Whether every record ended.
    public var isComplete: Bool { self.tracker.summary != nil }

    /// Waits until every record ended. A cancelled caller gets `CancellationError` at once; the records' fates
    /// are still reported.
    public func outcome() async throws -> DeliverySummary {
        try await self.tracker.wait()
    }
}

/// Counts the ends of a tracked call's records, batch by batch, and resumes whoever waits once all ended.
final class DeliveryTracker: Sendable {
    private struct State {
        var records = DataProxyRecordIDs()
        /// The call appended its last record: the set is final.
        var sealed = false
        var ended = 0
        var acked = 0
        var failures: [DeliveryFailure] = []
        var waiters: [Int: CheckedContinuation<DeliverySummary, any Error>] = [:]
        var nextWaiter = 0
        var cancelled: Set<Int> = []

        var summary: DeliverySummary? {
            guard self.sealed, self.ended == self.records.count else { return nil }
            return DeliverySummary(records: self.records, acked: self.acked, failures: self.failures)
        }
    }

    private let state = Mutex(State())

    init() {}

    var records: DataProxyRecordIDs { self.state.withLock { $0.records } }
    var summary: DeliverySummary? { self.state.withLock { $0.summary } }

    /// The call accepted these records (called after each locked run of appends).
    func accepted(_ ids: DataProxyRecordIDs) {
        self.state.withLock { $0.records.formUnion(ids) }
    }

    /// The call accepted its last record. Records may have ended already.
    func seal() {
        self.update { $0.sealed = true }
    }

    /// Records of the call, in one batch, ended.
    func ended(_ ids: DataProxyRecordIDs, _ result: Result<DataProxyAck, DataProxyError>) {
        self.update { state in
            state.ended += ids.count
            switch result {
            case .success: state.acked += ids.count
            case .failure(let error): state.failures.append(DeliveryFailure(records: ids, error: error))
            }
        }
    }

    private func update(_ body: (inout State) -> Void) {
        let (summary, waiters) = self.state.withLock { state -> (DeliverySummary?, [CheckedContinuation<DeliverySummary, any Error>]) in
            body(&state)
            guard let summary = state.summary, !state.waiters.isEmpty else { return (nil, []) }
            defer { state.waiters.removeAll() }
            return (summary, Array(state.waiters.values))
        }
        if let summary { for waiter in waiters { waiter.resume(returning: summary) } }
    }

    func wait() async throws -> DeliverySummary {
        try Task.checkCancellation()
        let id = self.state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let immediate = self.state.withLock { state -> Result<DeliverySummary, any Error>? in
                    if state.cancelled.remove(id) != nil { return .failure(CancellationError()) }
                    if let summary = state.summary { return .success(summary) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            let waiter = self.state.withLock { state in
                guard let waiter = state.waiters.removeValue(forKey: id) else {
                    // Not parked yet (or resumed already): leave a mark for the parking side.
                    if state.summary == nil { state.cancelled.insert(id) }
                    return nil as CheckedContinuation<DeliverySummary, any Error>?
                }
                return waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}

/// Who learns the outcome of a batch besides the report readers: a `sendAndWait` caller of one record, or a
/// tracked call with some of its records.
enum BatchObserver: Sendable {
    case waiter(AckWaiter)
    case tracker(DeliveryTracker, DataProxyRecordIDs)

    func ended(_ result: Result<DataProxyAck, DataProxyError>) {
        switch self {
        case .waiter(let waiter): waiter.resume(with: result)
        case .tracker(let tracker, let ids): tracker.ended(ids, result)
        }
    }
}

extension [BatchObserver] {
    /// Adds records of `tracker` to the batch, in the entry of the last append when it was the same call.
    mutating func track(_ tracker: DeliveryTracker, _ ids: Range<UInt64>) {
        if case .tracker(let last, var lastIDs) = self.last, last === tracker {
            lastIDs.append(ids)
            self[self.count - 1] = .tracker(tracker, lastIDs)
        } else {
            self.append(.tracker(tracker, DataProxyRecordIDs(ids)))
        }
    }
}
