import DequeModule
import Synchronization

/// Delivery reports, one per batch, in the order batches ended; see ``DataProxyClient/deliveryReports()``.
///
/// None is ever dropped: the quota of an ended batch stays held until every open sequence took its report, so a
/// reader that falls behind slows acceptance (or makes `send` fail fast with the fail policy). A sequence ends
/// when its iterating task is cancelled, or when it and its iterators are no longer held.
public struct DeliveryReports: AsyncSequence, Sendable {
    public typealias Element = DeliveryReport
    public typealias Failure = Never

    let stream: AsyncStream<DeliveryReport>
    let subscription: ReportSubscription?

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: self.stream.makeAsyncIterator(), subscription: self.subscription)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<DeliveryReport>.Iterator
        let subscription: ReportSubscription?

        public mutating func next(isolation actor: isolated (any Actor)? = #isolation) async -> DeliveryReport? {
            guard let report = await self.base.next(isolation: actor) else { return nil }
            self.subscription?.took()
            return report
        }

        public mutating func next() async -> DeliveryReport? {
            await self.next(isolation: nil)
        }
    }
}

/// A report whose batch's quota is held until every sequence it was given to took it (or ended).
final class ReportHold: Sendable {
    let bytes: Int
    let records: Int
    private let remaining: Atomic<Int>
    private let release: @Sendable (ReportHold) -> Void

    init(bytes: Int, records: Int, readers: Int, release: @escaping @Sendable (ReportHold) -> Void) {
        self.bytes = bytes
        self.records = records
        self.remaining = Atomic(readers)
        self.release = release
        if readers == 0 { release(self) }
    }

    func taken() {
        if self.remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { self.release(self) }
    }
}

/// One open report sequence: its stream, and the holds of the reports it was given but has not taken yet.
final class ReportSubscription: Sendable {
    let id: Int
    private let continuation: AsyncStream<DeliveryReport>.Continuation
    private let state = Mutex<(pending: Deque<ReportHold?>, ended: Bool)>(([], false))
    private let onEnd: @Sendable (Int) -> Void

    init(id: Int, continuation: AsyncStream<DeliveryReport>.Continuation, onEnd: @escaping @Sendable (Int) -> Void) {
        self.id = id
        self.continuation = continuation
        self.onEnd = onEnd
    }

    /// Hands the report to the reader; `false` when the sequence ended (the hold is not this reader's then).
    func deliver(_ report: DeliveryReport, hold: ReportHold?) -> Bool {
        self.modifyState { state in
            guard !state.ended else { return false }
            // Under the lock, so that holds are queued in the order the stream yields their reports.
            state.pending.append(hold)
            self.continuation.yield(report)
            return true
        }
    }

    /// The reader took the oldest report it was given.
    func took() {
        let hold = self.modifyState { $0.pending.popFirst() }
        hold??.taken()
    }

    /// No more reports: the reader still gets those given before. The holds stay until taken or ended.
    func finish() {
        self.continuation.finish()
    }

    /// The reader is gone: every report it did not take counts as taken.
    func end() {
        let holds = self.modifyState { state -> Deque<ReportHold?>? in
            guard !state.ended else { return nil }
            state.ended = true
            defer { state.pending.removeAll() }
            return state.pending
        }
        guard let holds else { return }
        self.continuation.finish()
        for hold in holds { hold?.taken() }
        self.onEnd(self.id)
    }

    deinit {
        self.end()
    }

    /// The subscription's one lock site.
    private func modifyState<Value>(_ body: (inout (pending: Deque<ReportHold?>, ended: Bool)) -> Value) -> Value {
        self.state.withLock { body(&$0) }
    }
}

/// A weakly held subscription: the sequence and its iterators own it, so that a reader dropping them ends it.
struct WeakSubscription {
    weak var subscription: ReportSubscription?
}

/// The open ``DataProxyClient/deliveryReports()`` sequences; finished once the client ran to its end.
struct ReportStreams {
    var subscriptions: [Int: WeakSubscription] = [:]
    var nextID = 0
    var finished = false

    var live: [ReportSubscription] { self.subscriptions.values.compactMap(\.subscription) }
}
