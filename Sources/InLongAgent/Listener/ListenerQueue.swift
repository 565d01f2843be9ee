import DequeModule
import NIOCore
import Synchronization

/// The messages a listener received and its instance has not read yet, bounded in bytes: TCP connections that find
/// it full stop being read until the instance makes room (their senders wait); UDP datagrams are dropped.
final class ListenerQueue: Sendable {
    private struct State {
        var messages = Deque<ByteBuffer>()
        var bytes = 0
        /// TCP connections not read while the queue is full; read again once it is half empty.
        var paused: [ObjectIdentifier: any Channel] = [:]
        var closed = false
    }

    private let state = Mutex(State())
    let maxBytes: Int
    let received = Atomic<Int>(0)
    let dropped = Atomic<Int>(0)
    let pauses = Atomic<Int>(0)
    let cut = Atomic<Int>(0)

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    /// Queues `messages` from a TCP connection; `true` when the connection must stop reading (it is resumed when
    /// there is room).
    func push(_ messages: [ByteBuffer], from channel: any Channel) -> Bool {
        self.received.add(messages.count, ordering: .relaxed)
        return self.state.withLock { state in
            for message in messages {
                state.bytes += message.readableBytes
                state.messages.append(message)
            }
            guard state.bytes >= self.maxBytes, !state.closed else { return false }
            state.paused[ObjectIdentifier(channel)] = channel
            return true
        }
    }

    /// Queues a datagram's message, or drops it when the queue is full.
    func push(datagram message: ByteBuffer) {
        let queued = self.state.withLock { state in
            guard state.bytes + message.readableBytes <= self.maxBytes, !state.closed else { return false }
            state.bytes += message.readableBytes
            state.messages.append(message)
            return true
        }
        if queued {
            self.received.add(1, ordering: .relaxed)
        } else {
            self.dropped.add(1, ordering: .relaxed)
        }
    }

    /// Up to `maxCount` messages of at most `maxBytes` together (at least one, if any), and their bytes.
    func take(maxBytes: Int, maxCount: Int = .max) -> (messages: [ByteBuffer], bytes: Int) {
        let (messages, bytes, resume) = self.state.withLock { state -> ([ByteBuffer], Int, [any Channel]) in
            var messages: [ByteBuffer] = []
            var bytes = 0
            while messages.count < maxCount, let next = state.messages.first, messages.isEmpty || bytes + next.readableBytes <= maxBytes {
                messages.append(state.messages.removeFirst())
                bytes += next.readableBytes
            }
            state.bytes -= bytes
            guard state.bytes <= self.maxBytes / 2, !state.paused.isEmpty else { return (messages, bytes, []) }
            defer { state.paused = [:] }
            return (messages, bytes, Array(state.paused.values))
        }
        for channel in resume { channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in } }
        return (messages, bytes)
    }

    /// No more messages come: what is queued is still read.
    func close() {
        self.state.withLock { $0.closed = true }
    }

    /// Closed and every message read.
    var isDrained: Bool { self.state.withLock { $0.closed && $0.messages.isEmpty } }
}

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

    func isExhausted(now: ContinuousClock.Instant) -> Bool { self.queue.isDrained }
}
