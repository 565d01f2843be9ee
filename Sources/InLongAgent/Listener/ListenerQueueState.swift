import DequeModule
import NIOCore

/// The rules of a listener's queue with no lock and no I/O (``ListenerQueue`` drives it): messages in arrival
/// order, bounded in bytes; back-pressure on the connections that fill it; who waits for it to drain.
///
/// - The queue never holds more than `maxBytes` (a single message may, alone, when it is longer). A connection's
///   messages that do not fit are handed back to it (it keeps them, in order) and it is paused: it stops reading.
///   A connection that fills the queue to its bound is paused too.
/// - Paused connections are resumed together once a take leaves at most half the bound (the low mark); a resumed
///   connection pushes what it kept first.
/// - A datagram that does not fit is dropped (its sender cannot be paused).
/// - Once closed, a connection's last messages (those it kept, and its last frame) are queued whatever the bound, so
///   that none is lost; nothing is paused any more.
/// - It is drained once closed, every message was taken and the reader handed the last ones on (until then, a
///   close of the client they go through would cut their send short), or once closed and its reader ended
///   (nothing more will be taken): whoever waits for that is resumed then, never by a timer.
struct ListenerQueueState<ConnectionID: Hashable, Connection, Waiter> {
    let maxBytes: Int
    /// Paused connections are resumed once the queue holds at most this.
    var lowMark: Int { self.maxBytes / 2 }

    private(set) var messages = Deque<ByteBuffer>()
    private(set) var bytes = 0
    private(set) var paused: [ConnectionID: Connection] = [:]
    private(set) var closed = false
    private(set) var readerEnded = false
    /// The reader took messages and has not handed them on yet.
    private(set) var inHand = false
    private var waiters: [Int: Waiter] = [:]

    init(maxBytes: Int) {
        precondition(maxBytes > 0)
        self.maxBytes = maxBytes
    }

    var isDrained: Bool { self.closed && ((self.messages.isEmpty && !self.inHand) || self.readerEnded) }
    var waiting: Int { self.waiters.count }

    /// What a connection's push came to.
    struct Pushed {
        /// Messages queued, from the first.
        var queued: Int
        /// Whether the connection must stop reading (it keeps the messages not queued, and is resumed later).
        var pause: Bool
    }

    /// A connection's messages, in order: as many as fit are queued. `last` (the connection ended): all of them.
    mutating func push(_ messages: [ByteBuffer], from id: ConnectionID, _ connection: Connection, last: Bool = false) -> Pushed {
        var queued = 0
        for message in messages {
            guard last || self.closed || self.fits(message) else { break }
            self.append(message)
            queued += 1
        }
        guard !self.closed, !last, queued < messages.count || self.bytes >= self.maxBytes else { return Pushed(queued: queued, pause: false) }
        self.paused[id] = connection
        return Pushed(queued: queued, pause: true)
    }

    /// A datagram's message: `false` when it is dropped (the queue is full or closed).
    mutating func push(datagram message: ByteBuffer) -> Bool {
        guard !self.closed, self.fits(message) else { return false }
        self.append(message)
        return true
    }

    /// What a take hands out and sets going.
    struct Taken {
        var messages: [ByteBuffer] = []
        var bytes = 0
        /// Connections to resume (they push what they kept, then read again).
        var resume: [Connection] = []
        /// Waiters to resume: the queue drained.
        var drained: [Waiter] = []
    }

    /// Up to `maxCount` messages of at most `maxBytes` together (at least one, if any).
    mutating func take(maxBytes: Int, maxCount: Int = .max) -> Taken {
        var taken = Taken()
        while taken.messages.count < maxCount, let next = self.messages.first, taken.messages.isEmpty || taken.bytes + next.readableBytes <= maxBytes {
            taken.messages.append(self.messages.removeFirst())
            taken.bytes += next.readableBytes
        }
        self.bytes -= taken.bytes
        self.inHand = !taken.messages.isEmpty
        if self.bytes <= self.lowMark, !self.paused.isEmpty {
            taken.resume = Array(self.paused.values)
            self.paused = [:]
        }
        taken.drained = self.drainedWaiters()
        return taken
    }

    /// No more messages come (but connections' last ones): what is queued is still taken. Paused connections are
    /// forgotten (they are being closed).
    mutating func close() -> [Waiter] {
        self.closed = true
        self.paused = [:]
        return self.drainedWaiters()
    }

    /// The reader handed what it took last on.
    mutating func handedOn() -> [Waiter] {
        self.inHand = false
        return self.drainedWaiters()
    }

    /// The reader stopped: nothing more will be taken.
    mutating func readerStopped() -> [Waiter] {
        self.readerEnded = true
        return self.drainedWaiters()
    }

    /// Queues `waiter` until the queue drained; `false` when it is drained already (resume it at once).
    mutating func waitUntilDrained(id: Int, _ waiter: Waiter) -> Bool {
        guard !self.isDrained else { return false }
        self.waiters[id] = waiter
        return true
    }

    /// The waiter of `id`, if it still waits (it is removed).
    mutating func cancelWait(id: Int) -> Waiter? {
        self.waiters.removeValue(forKey: id)
    }

    private func fits(_ message: ByteBuffer) -> Bool {
        self.messages.isEmpty || self.bytes + message.readableBytes <= self.maxBytes
    }

    private mutating func append(_ message: ByteBuffer) {
        self.bytes += message.readableBytes
        self.messages.append(message)
    }

    private mutating func drainedWaiters() -> [Waiter] {
        guard self.isDrained, !self.waiters.isEmpty else { return [] }
        defer { self.waiters = [:] }
        return Array(self.waiters.values)
    }
}
