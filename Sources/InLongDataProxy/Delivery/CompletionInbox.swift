import Synchronization

/// Answers to submitted batches on their way from the event loops to the one task that tells the machine, in bulk.
/// A child task per batch in flight cost a task, and its removal from the task group walked the group's list of
/// children, as long as the batches in flight (7 % of the sender's CPU with records of 1 KiB).
///
/// A value with no lock and no clock: the answers in the order they were posted, how many are still owed, and the
/// reader parked for them. `Waiter` is what the driver resumes.
struct CompletionInbox<Item, Waiter> {
    enum Next {
        /// Every answer posted since the last take, in order.
        case items([Item])
        /// The reader waits: resumed by ``post(_:)`` or ``close()``.
        case parked
        /// Closed, and every answer owed was taken: the reader stops.
        case finished
    }

    private(set) var items: [Item] = []
    /// Answers expected and not taken yet (posted ones included).
    private(set) var owed = 0
    private(set) var isClosed = false
    private var waiter: Waiter?

    var hasParkedReader: Bool { self.waiter != nil }

    /// A batch was submitted: its answer will be posted, and the reader does not stop before it took it.
    mutating func expect() {
        // The reader may have stopped: an answer expected now would never reach the machine.
        precondition(!self.isClosed, "a batch submitted after the close")
        self.owed += 1
    }

    /// An answer came: the parked reader to resume with every answer waiting, if one is parked.
    mutating func post(_ item: Item) -> (Waiter, [Item])? {
        precondition(self.owed > self.items.count, "an answer that was not expected")
        self.items.append(item)
        guard let waiter = self.waiter else { return nil }
        self.waiter = nil
        return (waiter, self.take())
    }

    /// The reader asks for answers; it parks with `waiter` when none waits and more are owed or may come.
    mutating func next(_ waiter: Waiter) -> Next {
        precondition(self.waiter == nil, "one reader at a time")
        if !self.items.isEmpty { return .items(self.take()) }
        if self.isClosed, self.owed == 0 { return .finished }
        self.waiter = waiter
        return .parked
    }

    /// No batch will be submitted any more: the parked reader to resume with nothing when nothing more is owed.
    mutating func close() -> Waiter? {
        self.isClosed = true
        guard self.owed == 0, let waiter = self.waiter else { return nil }
        self.waiter = nil
        return waiter
    }

    private mutating func take() -> [Item] {
        self.owed -= self.items.count
        defer { self.items = [] }
        return self.items
    }
}

/// The inbox's driver: posts come from any thread (an event loop's promise callbacks), one task reads.
final class CompletionQueue<Item: Sendable>: Sendable {
    private typealias Reader = CheckedContinuation<[Item]?, Never>
    private let inbox = Mutex(CompletionInbox<Item, Reader>())

    func expect() {
        self.inbox.withLock { $0.expect() }
    }

    func post(_ item: Item) {
        guard let (reader, items) = self.inbox.withLock({ $0.post(item) }) else { return }
        reader.resume(returning: items)
    }

    /// Every answer posted since the last call, waiting for one when none is; `nil` once closed and every answer
    /// owed was taken. Not cancellable: answers owed always come (the transport fails what it cannot answer), and
    /// a reader that stopped early would leave their records unended.
    func next() async -> [Item]? {
        await withCheckedContinuation { (reader: Reader) in
            switch self.inbox.withLock({ $0.next(reader) }) {
            case .items(let items): reader.resume(returning: items)
            case .finished: reader.resume(returning: nil)
            case .parked: break
            }
        }
    }

    func close() {
        self.inbox.withLock { $0.close() }?.resume(returning: nil)
    }
}
