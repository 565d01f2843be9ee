import InLongWire
import NIOCore
import Testing

@testable import InLongAgent

/// The listener queue's rules: its byte bound, back-pressure on connections (paused when it is full, resumed below
/// the low mark), datagrams dropped when full, and the drain that a stop waits for.
@Suite struct ListenerQueueStateTests {
    typealias State = ListenerQueueState<Int, Int, String>

    struct Violation: Error, CustomStringConvertible {
        let description: String
    }

    func message(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    @Test func aConnectionThatFillsTheQueueKeepsWhatDoesNotFitAndIsResumedBelowTheLowMark() {
        var state = State(maxBytes: 10)
        let first = state.push([self.message("aaaa"), self.message("bbbb"), self.message("cccc")], from: 1, 1)
        #expect(first.queued == 2)
        #expect(first.pause)
        #expect(state.bytes == 8)
        // A datagram that does not fit is dropped; one that does is queued.
        let tooLong = state.push(datagram: self.message("ddd"))
        let fits = state.push(datagram: self.message("dd"))
        #expect(!tooLong && fits)
        #expect(state.bytes == 10)
        // 6 bytes left: above the low mark (5), still paused.
        let taken = state.take(maxBytes: 4)
        #expect(taken.messages.map { String(buffer: $0) } == ["aaaa"])
        #expect(taken.resume.isEmpty)
        let more = state.take(maxBytes: 4)
        #expect(more.messages.map { String(buffer: $0) } == ["bbbb"])
        #expect(more.resume == [1])
        #expect(state.paused.isEmpty)
        // The connection queues what it kept.
        let again = state.push([self.message("cccc")], from: 1, 1)
        #expect(again.queued == 1)
        #expect(!again.pause)
    }

    @Test func aMessageLongerThanTheBoundGoesAloneAndACountLimitsATake() {
        var state = State(maxBytes: 4)
        let pushed = state.push([self.message("long message"), self.message("x")], from: 1, 1)
        #expect(pushed.queued == 1)
        #expect(pushed.pause)
        let datagram = state.push(datagram: self.message("y"))
        #expect(!datagram)
        let taken = state.take(maxBytes: 100, maxCount: 1)
        #expect(taken.messages.count == 1)
        #expect(taken.resume == [1])
    }

    @Test func theDrainWaitsForTheLastMessageOrTheReadersEnd() {
        var state = State(maxBytes: 100)
        _ = state.push([self.message("a"), self.message("b")], from: 1, 1)
        let waits = state.waitUntilDrained(id: 0, "stop")
        #expect(waits)
        let atClose = state.close()
        #expect(atClose.isEmpty)
        // The connection's last frame comes after the close: queued, not lost.
        let last = state.push([self.message("c")], from: 1, 1, last: true)
        #expect(last.queued == 1)
        let first = state.take(maxBytes: 1)
        #expect(first.drained.isEmpty)
        let rest = state.take(maxBytes: 100)
        // The reader holds the last messages until it handed them on.
        #expect(rest.messages.count == 2 && rest.drained.isEmpty && !state.isDrained)
        #expect(state.handedOn() == ["stop"])
        #expect(state.isDrained)
        let late = state.waitUntilDrained(id: 1, "late")
        #expect(!late)

        var abandoned = State(maxBytes: 100)
        _ = abandoned.push(datagram: self.message("never read"))
        let waiting = abandoned.waitUntilDrained(id: 0, "stop")
        #expect(waiting)
        let closed = abandoned.close()
        #expect(closed.isEmpty)
        let stopped = abandoned.readerStopped()
        #expect(stopped == ["stop"])
        let another = abandoned.waitUntilDrained(id: 1, "w")
        #expect(!another)
    }

    /// Connections that read messages (a paused one still gets a few reads, as an event loop reads ahead), that keep
    /// what the queue did not take and push it first when resumed; datagrams; takes of random sizes; drain waiters;
    /// the close, then every connection's last frame. After every step: the queue holds exactly the bytes of its
    /// messages, never more than its bound before the close (a lone longer message aside); a paused connection
    /// has a queue to wait for and is paused only above the low mark or with a message that does not fit; after a
    /// take nothing stays paused at or below the low mark; each connection's messages are taken in order, none
    /// lost or twice; waiters are resumed exactly when the queue drained. At the end every message pushed was
    /// taken or (datagrams only) dropped.
    @Test(arguments: 0..<200)
    func seededSchedulesKeepTheBoundAndLoseNothing(seed: UInt64) throws {
        var random = SplitMix64(seed: 0x11_57E4 + seed)
        let maxBytes = Int.random(in: 1...64, using: &random)
        var state = State(maxBytes: maxBytes)
        let connections = Int.random(in: 1...4, using: &random)
        var kept = Array(repeating: [ByteBuffer](), count: connections)
        var paused = Array(repeating: false, count: connections)
        // Reads a paused connection still gets before the pause takes hold.
        var readsAhead = Array(repeating: 0, count: connections)
        var sent = Array(repeating: 0, count: connections)
        var takenFrom = Array(repeating: 0, count: connections)
        var datagramsSent = 0
        var datagramsDropped = 0
        var datagramsTaken = Set<Int>()
        var waiting = Set<String>()
        var nextWaiter = 0
        var closed = false
        func fail(_ step: Int, _ what: String) -> Violation { Violation(description: "seed \(seed) step \(step): \(what)") }
        func messages(of connection: Int, count: Int) -> [ByteBuffer] {
            (0..<count).map { _ in
                defer { sent[connection] += 1 }
                let padding = String(repeating: "x", count: Int.random(in: 0...(maxBytes + 4), using: &random))
                return ByteBuffer(string: "c\(connection)-\(sent[connection])|\(padding)")
            }
        }
        func push(_ connection: Int, step: Int) throws {
            guard !kept[connection].isEmpty else { return }
            let pushed = state.push(kept[connection], from: connection, connection)
            kept[connection].removeFirst(pushed.queued)
            if pushed.pause {
                paused[connection] = true
                readsAhead[connection] = Int.random(in: 0...2, using: &random)
            } else if !kept[connection].isEmpty {
                throw fail(step, "connection \(connection) kept \(kept[connection].count) messages and was not paused")
            }
        }
        func take(step: Int) throws {
            let taken = state.take(maxBytes: Int.random(in: 1...(2 * maxBytes), using: &random), maxCount: Int.random(in: 1...5, using: &random))
            for message in taken.messages {
                let text = String(buffer: message)
                let name = text.prefix { $0 != "|" }
                if name.hasPrefix("d") {
                    let number = Int(name.dropFirst())!
                    guard datagramsTaken.insert(number).inserted else { throw fail(step, "datagram \(number) taken twice") }
                } else {
                    let parts = name.dropFirst().split(separator: "-")
                    let connection = Int(parts[0])!
                    guard Int(parts[1])! == takenFrom[connection] else { throw fail(step, "took \(name), expected c\(connection)-\(takenFrom[connection])") }
                    takenFrom[connection] += 1
                }
            }
            if !closed, state.bytes <= state.lowMark, !state.paused.isEmpty { throw fail(step, "paused at \(state.bytes) bytes after a take") }
            if !taken.resume.isEmpty, state.bytes > state.lowMark { throw fail(step, "resumed at \(state.bytes) bytes, above the low mark") }
            for connection in taken.resume {
                // The resume event reaches the connection: it pushes what it kept first.
                paused[connection] = false
                try push(connection, step: step)
                if !paused[connection] { readsAhead[connection] = 0 }
            }
            if !taken.drained.isEmpty {
                guard state.isDrained, Set(taken.drained) == waiting else { throw fail(step, "waiters \(taken.drained) resumed, \(waiting) waiting") }
                waiting = []
            }
            // Messages in the reader's hands: not drained until it handed them on.
            if !taken.messages.isEmpty, state.isDrained { throw fail(step, "drained while the reader holds what it took") }
        }

        for step in 0..<300 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4 where !closed:
                let connection = Int.random(in: 0..<connections, using: &random)
                if paused[connection] {
                    guard readsAhead[connection] > 0 else { break }
                    readsAhead[connection] -= 1
                    kept[connection] += messages(of: connection, count: Int.random(in: 1...3, using: &random))
                } else {
                    kept[connection] += messages(of: connection, count: Int.random(in: 1...4, using: &random))
                    try push(connection, step: step)
                }
            case 4 where !closed:
                let padding = String(repeating: "z", count: Int.random(in: 0...maxBytes, using: &random))
                if !state.push(datagram: ByteBuffer(string: "d\(datagramsSent)|\(padding)")) { datagramsDropped += 1 }
                datagramsSent += 1
            case 5, 6:
                try take(step: step)
            case 7:
                // The reader handed what it took on (sent it).
                let resumed = state.handedOn()
                guard resumed.isEmpty || (state.isDrained && Set(resumed) == waiting) else { throw fail(step, "the hand-on resumed \(resumed)") }
                if !resumed.isEmpty { waiting = [] }
            case 8:
                let name = "w\(nextWaiter)"
                nextWaiter += 1
                if state.waitUntilDrained(id: nextWaiter, name) {
                    waiting.insert(name)
                } else if !state.isDrained {
                    throw fail(step, "a waiter was sent away before the drain")
                }
            default:
                guard !closed, step > 200 else { break }
                closed = true
                let resumed = state.close()
                guard resumed.isEmpty || (state.isDrained && Set(resumed) == waiting) else { throw fail(step, "the close resumed \(resumed)") }
                if !resumed.isEmpty { waiting = [] }
                // Each connection ends: what it kept and its last frame are queued, whatever the bound.
                for connection in 0..<connections {
                    kept[connection] += messages(of: connection, count: 1)
                    let pushed = state.push(kept[connection], from: connection, connection, last: true)
                    guard pushed.queued == kept[connection].count, !pushed.pause else { throw fail(step, "a last push was not queued whole") }
                    kept[connection] = []
                }
            }
            let sum = state.messages.reduce(0) { $0 + $1.readableBytes }
            guard sum == state.bytes else { throw fail(step, "\(state.bytes) bytes counted, \(sum) held") }
            if !closed, state.bytes > maxBytes, state.messages.count > 1 { throw fail(step, "\(state.bytes) bytes held, bound \(maxBytes)") }
            if !state.paused.isEmpty, state.messages.isEmpty { throw fail(step, "paused with nothing to take") }
            for connection in state.paused.keys {
                let next = kept[connection].first?.readableBytes ?? 0
                guard state.bytes > state.lowMark || state.bytes + next > maxBytes else {
                    throw fail(step, "connection \(connection) paused at \(state.bytes) bytes with room for its next message")
                }
            }
            guard waiting.isEmpty || !state.isDrained else { throw fail(step, "drained with \(waiting) still waiting") }
        }
        // The end: closed, then everything taken.
        if !closed {
            closed = true
            _ = state.close()
            for connection in 0..<connections where !kept[connection].isEmpty {
                _ = state.push(kept[connection], from: connection, connection, last: true)
                kept[connection] = []
            }
        }
        var steps = 0
        while !state.messages.isEmpty, steps < 100_000 {
            try take(step: 300 + steps)
            steps += 1
        }
        // The reader hands the last messages on.
        let resumed = state.handedOn()
        #expect(Set(resumed) == waiting, "seed \(seed)")
        waiting = []
        #expect(state.isDrained, "seed \(seed)")
        #expect(waiting.isEmpty, "seed \(seed)")
        #expect(takenFrom == sent, "seed \(seed)")
        #expect(datagramsTaken.count + datagramsDropped == datagramsSent, "seed \(seed)")
    }
}
