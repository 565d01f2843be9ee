extension DeliveryStateMachine {
    /// What the driver does: tell the quota gauge while it still holds the lock (so that reports keep their
    /// order), then, once the lock is released, in this order: wake the dispatcher, finish jobs (quota already
    /// released), resume senders, resume flush callers (last, so that they see the finished records counted).
    struct Actions {
        var wakeDispatcher = false
        /// Jobs that ended; `reportHolds` when their quota stays held until report readers took the report
        /// (``reportsTaken(bytes:records:)``).
        var finish: [(job: DeliveryJob, result: Result<DataProxyAck, DataProxyError>, reportHolds: Bool)] = []
        var resumeSenders: [Waiter] = []
        var resumeFlushes: [(waiter: Waiter, allEnded: Bool)] = []
        /// Batches sealed, for per-stream metrics.
        var sealed: [(key: BatchKey, records: Int, bytes: Int, dataTime: UInt32)] = []
        typealias Retried = (key: BatchKey, attempts: Int, error: DataProxyError, delay: Duration)

        /// Retries scheduled, each counted and logged. An array (one word) rather than inline: the error makes a
        /// retry hundreds of bytes, which every append would otherwise copy, and retries are rare.
        private(set) var retried: [Retried] = []
        /// The quota in use after the change, when it changed.
        var heldBytes: Int?

        init() {}

        init(_ sealed: Sealed) {
            self.merge(sealed)
        }

        mutating func merge(_ sealed: Sealed) {
            self.wakeDispatcher = true
            self.sealed += sealed.batches
            self.heldBytes = sealed.heldBytes
        }

        /// Adds `other`'s actions after these.
        mutating func merge(_ other: Actions) {
            guard !other.isEmpty else { return }
            self.wakeDispatcher = self.wakeDispatcher || other.wakeDispatcher
            self.finish += other.finish
            self.resumeSenders += other.resumeSenders
            self.resumeFlushes += other.resumeFlushes
            self.sealed += other.sealed
            self.retried += other.retried
            self.heldBytes = other.heldBytes ?? self.heldBytes
        }

        mutating func retrying(_ retry: Retried) {
            self.retried.append(retry)
        }

        var isEmpty: Bool {
            !self.wakeDispatcher && self.finish.isEmpty && self.resumeSenders.isEmpty && self.resumeFlushes.isEmpty
                && self.sealed.isEmpty && self.retried.isEmpty && self.heldBytes == nil
        }
    }

    /// What appending asks of the driver when it sealed batches: wake the dispatcher, count them. Small, so that
    /// the per-record path returns little.
    struct Sealed {
        var batches: [(key: BatchKey, records: Int, bytes: Int, dataTime: UInt32)]
        var heldBytes: Int
    }

    /// Why an append stopped before the end of its records.
    enum Blocked: Equatable {
        /// The byte or record quota is used up.
        case full
        /// The quota has room for the record once the fills under way end (their reservations hold it): wait for
        /// them; never fail fast nor spill, as for a full buffer.
        case reserved
        /// The quota has room for the record once the lanes hand in their batches and give back the quota they
        /// leased and did not use: the client has them do so, and tries again at once.
        case leased
        /// The dispatcher is behind: wait for it.
        case backlogged
        /// The client is closing or closed.
        case closed

        init(_ noRoom: BatchAccumulator.NoRoom) {
            switch noRoom {
            case .leased: self = .leased
            case .reserved: self = .reserved
            case .full: self = .full
            }
        }
    }

    enum AppendResult: Equatable {
        /// Accepted with this id.
        case accepted(UInt64)
        case blocked(Blocked)
        /// The record does not fit a frame of the current limit.
        case tooLarge(limit: Int)
    }

    enum Wait: Equatable {
        /// Try again now.
        case retryNow
        /// Parked under this id until resumed (or cancelled with ``cancelWait(_:)``).
        case parked(id: Int)
    }

    enum FlushResult {
        case ended
        case parked(id: Int)
    }
}

extension DeliveryStateMachine.Actions: Sendable where Waiter: Sendable {}
