public import NIOCore
public import Synchronization

/// Items on their way from any thread to one event loop. Items added while a hop is scheduled ride on it, so many
/// threads adding at once cost one hop per batch, not one per item; the order of adding is kept. Two arrays take
/// turns, one filling while the other's batch is delivered, so that a batch allocates nothing once warm.
@usableFromInline
final class EventLoopBatch<Element: Sendable>: Sendable {
    @usableFromInline let eventLoop: any EventLoop
    @usableFromInline let state = Mutex(EventLoopBatchState<Element>())
    /// The array of the last batch delivered, emptied: the next batch is taken into it. Batches are delivered on
    /// the event loop, so it lives there, with no lock.
    @usableFromInline let spare: NIOLoopBoundBox<[Element]>
    /// Takes a batch, in order, on the event loop.
    @usableFromInline let deliver: @Sendable ([Element]) -> Void

    @inlinable
    init(eventLoop: any EventLoop, deliver: @escaping @Sendable ([Element]) -> Void) {
        self.eventLoop = eventLoop
        self.spare = .makeBoxSendingValue([], eventLoop: eventLoop)
        self.deliver = deliver
    }

    /// Adds `item` to the next batch; `false` (and nothing added) once closed.
    @inlinable
    func append(_ item: Element) -> Bool {
        switch self.modifyState({ $0.append(item) }) {
        case .scheduleDelivery:
            self.eventLoop.execute { self.drain() }
            return true
        case .joinedBatch:
            return true
        case .refused:
            return false
        }
    }

    /// Delivers what is waiting; on the event loop (also called directly, to deliver before a close).
    @inlinable
    func drain() {
        var batch: [Element] = []
        swap(&batch, &self.spare.value)
        self.modifyState { $0.take(into: &batch) }
        if !batch.isEmpty {
            self.deliver(batch)
            batch.removeAll(keepingCapacity: true)
        }
        self.spare.value = batch
    }

    /// Drops what is waiting; later items are refused.
    @inlinable
    func close() {
        self.modifyState { $0.close() }
    }

    /// The one place the batch's state is changed: lock, one event, unlock; the caller acts on what it returns.
    @inlinable
    func modifyState<Outcome>(
        _ event: (inout sending EventLoopBatchState<Element>) -> sending Outcome
    ) -> sending Outcome {
        self.state.withLock { event(&$0) }
    }
}

/// What waits for the next hop of an ``EventLoopBatch``. Pure: its driver locks, calls one event, unlocks, and
/// schedules the hop when told to.
@usableFromInline
struct EventLoopBatchState<Element> {
    @usableFromInline
    enum Appended: Equatable {
        /// The first item since the last delivery: schedule the hop that delivers it.
        case scheduleDelivery
        /// A hop is scheduled already: the item rides on it.
        case joinedBatch
        /// Closed: the item is not added.
        case refused
    }

    // Set by the inlinable append(_:) too, so not private(set).
    @usableFromInline var items: [Element] = []
    @usableFromInline var isDeliveryScheduled = false
    @usableFromInline var isClosed = false

    @inlinable
    mutating func append(_ item: Element) -> Appended {
        guard !self.isClosed else { return .refused }
        self.items.append(item)
        guard !self.isDeliveryScheduled else { return .joinedBatch }
        self.isDeliveryScheduled = true
        return .scheduleDelivery
    }

    /// The hop runs: every waiting item moves into `batch` (empty), whose room the next items fill.
    @inlinable
    mutating func take(into batch: inout [Element]) {
        assert(batch.isEmpty, "a batch is taken into an empty array")
        self.isDeliveryScheduled = false
        swap(&batch, &self.items)
    }

    /// Drops what is waiting; later items are refused.
    @inlinable
    mutating func close() {
        self.isClosed = true
        self.items.removeAll()
    }
}
