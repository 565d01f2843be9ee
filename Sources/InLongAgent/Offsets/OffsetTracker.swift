import DequeModule

/// Which part of a file is delivered, when acks arrive out of order: lines are registered in file order as they
/// are read, acked in any order, and the committed offset is the end of the longest prefix of acked lines.
/// Pure: no I/O and no clock.
///
/// A checkpoint written from ``committedOffset`` never skips an unacked line, so a restart resends at most the
/// lines read after it (at-least-once).
struct OffsetTracker: Sendable {
    /// One read range of the file, as it was handed to the sink.
    struct Ticket: Sendable, Hashable {
        /// The sequence number of the range, for ``OffsetTracker/ack(_:)``.
        var sequence: UInt64
        /// Where the range ends in the file (one past its last byte, newline included).
        var end: Int64
    }

    /// Ranges read but not committed yet, in file order, with whether each is acked.
    private var outstanding: Deque<(end: Int64, acked: Bool)> = []
    /// The sequence number of `outstanding.first`.
    private var firstSequence: UInt64 = 0
    /// The end of the acked prefix.
    private(set) var committedOffset: Int64
    /// Where reading has got to: the end of the last registered range.
    private(set) var readOffset: Int64

    /// Starts at `offset`, a committed position (0 for a new file, a checkpoint's offset on restart).
    init(committedOffset offset: Int64 = 0) {
        precondition(offset >= 0, "a file offset is never negative")
        self.committedOffset = offset
        self.readOffset = offset
    }

    /// Ranges read and not yet acked, or acked behind an unacked one.
    var outstandingCount: Int { self.outstanding.count }

    /// Registers the range read after the previous one, ending at `end`.
    mutating func read(upTo end: Int64) -> Ticket {
        precondition(end > self.readOffset, "ranges are registered in file order, each non-empty")
        self.outstanding.append((end, false))
        self.readOffset = end
        return Ticket(sequence: self.firstSequence + UInt64(self.outstanding.count - 1), end: end)
    }

    /// Marks a range acked; returns whether the committed offset moved. Acking twice, or a range of an earlier
    /// generation of the file (see ``restart(at:)``), changes nothing.
    @discardableResult
    mutating func ack(_ ticket: Ticket) -> Bool {
        guard ticket.sequence >= self.firstSequence else { return false }
        let index = Int(ticket.sequence - self.firstSequence)
        guard index < self.outstanding.count, self.outstanding[index].end == ticket.end else { return false }
        self.outstanding[index].acked = true
        guard index == 0 else { return false }
        while let first = self.outstanding.first, first.acked {
            self.committedOffset = first.end
            self.outstanding.removeFirst()
            self.firstSequence += 1
        }
        return true
    }

    /// Starts over at `offset` (a truncated file read again from 0): ranges still outstanding are forgotten, and
    /// their late acks are ignored.
    mutating func restart(at offset: Int64) {
        precondition(offset >= 0, "a file offset is never negative")
        self.firstSequence += UInt64(self.outstanding.count)
        self.outstanding.removeAll()
        self.committedOffset = offset
        self.readOffset = offset
    }
}
