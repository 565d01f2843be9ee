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

    private typealias Waiter = CheckedContinuation<DeliverySummary, any Error>

    private let state = Mutex(State())

    init() {}

    /// The tracker's one lock site: changes the state, then resumes whoever the change released.
    private func modifyState<Value>(_ body: (inout State) -> (Value, [Waiter], Result<DeliverySummary, any Error>?)) -> Value {
        let (value, waiters, resumption) = self.state.withLock { body(&$0) }
        if let resumption { for waiter in waiters { waiter.resume(with: resumption) } }
        return value
    }

    var records: DataProxyRecordIDs { self.modifyState { ($0.records, [], nil) } }
    var summary: DeliverySummary? { self.modifyState { ($0.summary, [], nil) } }

    /// The call accepted these records (called after each locked run of appends).
    func accepted(_ ids: DataProxyRecordIDs) {
        self.modifyState { state in
            state.records.formUnion(ids)
            return ((), [], nil)
        }
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

    /// Changes the counts; every waiter resumes once all records ended.
    private func update(_ body: (inout State) -> Void) {
        self.modifyState { state in
            body(&state)
            guard let summary = state.summary, !state.waiters.isEmpty else { return ((), [], nil) }
            defer { state.waiters.removeAll() }
            return ((), Array(state.waiters.values), .success(summary))
        }
    }

    func wait() async throws -> DeliverySummary {
        try Task.checkCancellation()
        let id = self.modifyState { state in
            defer { state.nextWaiter += 1 }
            return (state.nextWaiter, [], nil)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                self.modifyState { state in
                    if state.cancelled.remove(id) != nil { return ((), [continuation], .failure(CancellationError())) }
                    if let summary = state.summary { return ((), [continuation], .success(summary)) }
                    state.waiters[id] = continuation
                    return ((), [], nil)
                }
            }
        } onCancel: {
            self.modifyState { state in
                guard let waiter = state.waiters.removeValue(forKey: id) else {
                    // Not parked yet (or resumed already): leave a mark for the parking side.
                    if state.summary == nil { state.cancelled.insert(id) }
                    return ((), [], nil)
                }
                return ((), [waiter], .failure(CancellationError()))
            }
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
