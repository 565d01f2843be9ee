import NIOCore
import Synchronization

/// Items on their way from any thread to one event loop. Items added while a hop is scheduled ride on it, so many
/// threads adding at once cost one hop per batch, not one per item; the order of adding is kept. The last batch's
/// storage is kept, emptied, so that a batch allocates nothing once warm.
final class EventLoopBatch<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var spare: [Element] = []
        var scheduled = false
        var closed = false
    }

    private let eventLoop: any EventLoop
    private let state = Mutex(State())
    /// Takes a batch, in order, on the event loop.
    private let deliver: @Sendable ([Element]) -> Void

    init(eventLoop: any EventLoop, deliver: @escaping @Sendable ([Element]) -> Void) {
        self.eventLoop = eventLoop
        self.deliver = deliver
    }

    /// Adds `item` to the next batch; `false` (and nothing added) once closed.
    func append(_ item: Element) -> Bool {
        let schedule = self.state.withLock { state -> Bool? in
            guard !state.closed else { return nil }
            state.items.append(item)
            defer { state.scheduled = true }
            return !state.scheduled
        }
        guard let schedule else { return false }
        if schedule { self.eventLoop.execute { self.drain() } }
        return true
    }

    /// Delivers what is waiting; on the event loop (also called directly, to deliver before a close).
    func drain() {
        var batch: [Element] = self.state.withLock { state in
            state.scheduled = false
            var batch: [Element] = []
            swap(&batch, &state.spare)
            swap(&batch, &state.items)
            return batch
        }
        guard !batch.isEmpty else { return }
        self.deliver(batch)
        batch.removeAll(keepingCapacity: true)
        self.state.withLock { $0.spare = batch }
    }

    /// Drops what is waiting; later items are refused.
    func close() {
        self.state.withLock { state in
            state.closed = true
            state.items.removeAll()
        }
    }
}
