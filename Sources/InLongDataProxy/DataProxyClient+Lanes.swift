import NIOCore
import NIOPosix
import Synchronization

/// The client's lanes (``AppendLane``), each behind its own lock. A task always appends to the same lane, so that
/// its records of a stream stay in the order it sent them; tasks on different threads mostly append to different
/// lanes.
final class AppendLanes: Sendable {
    /// A lane and its lock, on cache lines of their own.
    final class Slot: Sendable {
        let lane = Mutex(AppendLane())
        // Keeps the next slot's lock off this one's lines.
        private let padding: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    }

    /// Eight per core, from 16 to 64: tasks fall on lanes by their address, and two running at once on one lane
    /// take turns at its lock. More lanes would split a stream's records over more, smaller batches.
    static let defaultCount = max(16, min(64, 8 * System.coreCount))

    let slots: [Slot]

    init(count: Int) {
        self.slots = (0..<max(1, count)).map { _ in Slot() }
    }

    /// The calling task's lane, by the task's address: `UnsafeCurrentTask` holds only that, and its `hashValue`
    /// would run SipHash for every record.
    @inline(__always)
    var current: Slot {
        let address = withUnsafeCurrentTask { unsafeBitCast($0, to: UInt.self) }
        // Tasks are allocated 16-byte aligned; a multiplicative hash spreads the rest over the lanes.
        let hash = (address >> 4) &* 0x9E37_79B9_7F4A_7C15
        return self.slots[Int(truncatingIfNeeded: hash >> 32) % self.slots.count]
    }

    /// Runs `body` with every lane locked, from the first on, and what they hold (records and bytes, as
    /// charged). Nothing else holds two lane locks, so taking them in order cannot deadlock.
    func withEveryLaneLocked(from index: Int = 0, holding held: (records: Int, bytes: Int) = (0, 0), _ body: ((records: Int, bytes: Int)) -> Void) {
        guard index < self.slots.count else { return body(held) }
        self.slots[index].lane.withLock { lane in
            self.withEveryLaneLocked(from: index + 1, holding: (held.records + lane.records, held.bytes + lane.charged), body)
        }
    }
}

extension DataProxyClient {
    /// What a lane (or the machine's way, when the lane's turn sent the record there) made of a record.
    enum LaneAppend {
        case accepted(UInt64)
        /// The sender waits out what stopped the record, then tries again.
        case blocked(Machine.Blocked)
        /// The record does not fit a batch of the current limit.
        case tooLarge(limit: Int)
    }

    /// Appends one record of `key`, without per-record attributes or observer, to the calling task's lane, or, when
    /// the lane's turn says so, the machine's way.
    @inline(never)
    func appendToLane(_ body: ByteBuffer, key: BatchKey, lanes: AppendLanes) -> LaneAppend {
        let recordBytes = BatchAccumulator.blockBytes(bodyLength: body.readableBytes, attributesLength: nil)
        let charge = BatchAccumulator.charge(bodyLength: body.readableBytes, attributesLength: nil)
        var deferred: (DeferredActions?, DeferredActions?)
        let result = lanes.current.lane.withLock { lane -> LaneAppend in
            var appended = lane.append(body, key: key, recordBytes: recordBytes, charge: charge, ids: self.recordIDs)
            if appended == .needsTurn {
                let turn: Machine.LaneTurn
                (turn, deferred.0) = self.modifyStateDeferringActions { state in
                    state.machine.laneTurn(&lane, next: (body, key, recordBytes, charge), now: .now, wallSeconds: wallClockSeconds())
                }
                switch turn {
                case .leased: break
                case .backlogged: return .blocked(.backlogged)
                case .appendedHere(.accepted(let id)): return .accepted(id)
                case .appendedHere(.blocked(let blocked)): return .blocked(blocked)
                case .appendedHere(.tooLarge(let limit)): return .tooLarge(limit: limit)
                }
                appended = lane.append(body, key: key, recordBytes: recordBytes, charge: charge, ids: self.recordIDs)
            }
            guard case .appended(let id, let full) = appended else {
                preconditionFailure("a lane's new lease did not take the record it was leased for")
            }
            if full {
                // Sealed now, when the backlog has room; otherwise by the next record of its key, or at its linger.
                (_, deferred.1) = self.modifyStateDeferringActions { state in ((), state.machine.laneFilled(&lane, key: key)) }
            }
            return .accepted(id)
        }
        if let first = deferred.0 { self.runDeferred(first) }
        if let second = deferred.1 { self.runDeferred(second) }
        return result
    }

    /// Before records of `key` go the machine's way from a call that does not use the lanes (`sendAndWait`, a call
    /// of many records): the calling task's lane hands in its batch of the key (whatever room the backlog has, as
    /// a flush does), so that the task's earlier records of the stream are sealed first.
    func handInLaneBatch(of key: BatchKey) {
        guard let lanes = self.lanes else { return }
        // Lanes hold records without attributes of their own.
        var laneKey = key
        laneKey.perRecordAttributes = false
        let deferred = lanes.current.lane.withLock { lane -> DeferredActions? in
            guard lane.index(of: laneKey) != nil else { return nil }
            return self.modifyStateDeferringActions { state in ((), state.machine.handInLane(&lane, key: laneKey)) }.1
        }
        if let deferred { self.runDeferred(deferred) }
    }

    /// Has the lanes hand their batches in: those past their linger at `now`, or all of them (`nil`: a flush, a
    /// sender that needs the quota they leased). `close`: the lanes close too (the client closes).
    func handInLanes(dueAt now: ContinuousClock.Instant? = nil, close: Bool = false) {
        guard let lanes = self.lanes else { return }
        let linger = self.configuration.batching.linger
        for slot in lanes.slots {
            let deferred = slot.lane.withLock { lane -> DeferredActions? in
                if let now, !lane.isDue(at: now, linger: linger) { return nil }
                guard lane.isOpen || (close && !lane.isClosed) else { return nil }
                return self.modifyStateDeferringActions { state in ((), state.machine.handInLane(&lane, dueAt: now, close: close)) }.1
            }
            if let deferred { self.runDeferred(deferred) }
        }
    }

    /// Runs `body` with what the lanes hold (records and bytes, as charged), every lane locked meanwhile: no
    /// batch moves from a lane to the machine while `body` reads the machine, so statistics count it once.
    func withLaneHoldings(_ body: ((records: Int, bytes: Int)) -> Void) {
        guard let lanes = self.lanes else { return body((0, 0)) }
        lanes.withEveryLaneLocked(body)
    }
}
