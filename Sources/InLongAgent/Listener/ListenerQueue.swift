import NIOCore
import Synchronization

/// The messages a listener received and its instance has not read yet, bounded in bytes: TCP connections that find
/// it full stop being read until the instance makes room (their senders wait); UDP datagrams are dropped. The driver
/// of a ``ListenerQueueState``: it locks, calls it, unlocks and runs what it hands back.
final class ListenerQueue: Sendable {
    private typealias State = ListenerQueueState<ObjectIdentifier, any Channel, AsyncStream<Void>.Continuation>

    private let state: Mutex<State>
    private let nextWaiter = Atomic(0)
    let maxBytes: Int
    let received = Atomic<Int>(0)
    let dropped = Atomic<Int>(0)
    let pauses = Atomic<Int>(0)
    let cut = Atomic<Int>(0)

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
        self.state = Mutex(State(maxBytes: maxBytes))
    }

    /// Queues what fits of a TCP connection's `messages`; the connection keeps the rest and stops reading when told
    /// (it is resumed by a ``ListenerResume`` event once there is room). `last`: the connection ended, all are queued.
    func push(_ messages: [ByteBuffer], from channel: any Channel, last: Bool = false) -> (queued: Int, pause: Bool) {
        let pushed = self.state.withLock { $0.push(messages, from: ObjectIdentifier(channel), channel, last: last) }
        self.received.add(pushed.queued, ordering: .relaxed)
        if pushed.pause { self.pauses.add(1, ordering: .relaxed) }
        return (pushed.queued, pushed.pause)
    }

    /// Queues a datagram's message, or drops it when the queue is full.
    func push(datagram message: ByteBuffer) {
        if self.state.withLock({ $0.push(datagram: message) }) {
            self.received.add(1, ordering: .relaxed)
        } else {
            self.dropped.add(1, ordering: .relaxed)
        }
    }

    /// Up to `maxCount` messages of at most `maxBytes` together (at least one, if any), and their bytes.
    func take(maxBytes: Int, maxCount: Int = .max) -> (messages: [ByteBuffer], bytes: Int) {
        let taken = self.state.withLock { $0.take(maxBytes: maxBytes, maxCount: maxCount) }
        for channel in taken.resume { channel.pipeline.fireUserInboundEventTriggered(ListenerResume()) }
        Self.resume(taken.drained)
        return (taken.messages, taken.bytes)
    }

    /// Every message queued (what a stopped reader leaves).
    func takeAll() -> [ByteBuffer] {
        var messages: [ByteBuffer] = []
        while true {
            let taken = self.take(maxBytes: .max)
            if taken.messages.isEmpty { return messages }
            messages += taken.messages
        }
    }

    /// No more messages come: what is queued is still read.
    func close() {
        Self.resume(self.state.withLock { $0.close() })
    }

    /// The reader handed what it took last to the client (or accounted for it otherwise).
    func handedOn() {
        Self.resume(self.state.withLock { $0.handedOn() })
    }

    /// Its instance ended: nothing more is read (so the queue counts as drained once closed).
    func readerStopped() {
        Self.resume(self.state.withLock { $0.readerStopped() })
    }

    /// Closed and every message read (or its reader ended).
    var isDrained: Bool { self.state.withLock { $0.isDrained } }

    /// Returns once the queue is drained (at once when it is), or when the task is cancelled.
    func waitUntilDrained() async {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        let id = self.nextWaiter.wrappingAdd(1, ordering: .relaxed).oldValue
        // A cancelled waiter leaves the state; one resumed by the state left it already.
        continuation.onTermination = { _ in _ = self.state.withLock { $0.cancelWait(id: id) } }
        if !self.state.withLock({ $0.waitUntilDrained(id: id, continuation) }) { continuation.finish() }
        for await _ in stream {}
    }

    private static func resume(_ waiters: [AsyncStream<Void>.Continuation]) {
        for waiter in waiters { waiter.finish() }
    }
}

/// Sent through a paused connection's pipeline once its queue has room: it queues what it kept, then reads again.
struct ListenerResume: Sendable {}

/// A listener's queue as the source of an ``Instance``: records in arrival order; nothing to commit (a message
/// acked is gone, one lost in a crash was never acknowledged to its sender either).
final class ListenerSource: AgentSource {
    let queue: ListenerQueue
    /// Whether each message's syslog header becomes its attributes.
    let syslogAttributes: Bool
    private var reads = 0

    init(queue: ListenerQueue, syslogAttributes: Bool = false) {
        self.queue = queue
        self.syslogAttributes = syslogAttributes
    }

    func read(maxBytes: Int, maxRecords: Int?, now: ContinuousClock.Instant) throws -> SourceData<Int>? {
        let (messages, bytes) = self.queue.take(maxBytes: maxBytes, maxCount: maxRecords ?? .max)
        guard !messages.isEmpty else { return nil }
        self.reads += 1
        var data = SourceData(records: messages, position: self.reads, bytes: bytes)
        if self.syslogAttributes {
            // A message without a valid `<PRI>` goes as it is, without attributes.
            data.attributes = messages.map { SyslogMessage($0.readableBytesView)?.attributes ?? [] }
        }
        return data
    }

    func ack(_ position: Int) {}

    func handedOn() { self.queue.handedOn() }

    func isExhausted(now: ContinuousClock.Instant) -> Bool { self.queue.isDrained }
}
