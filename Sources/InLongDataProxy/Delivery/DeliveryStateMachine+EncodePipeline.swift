import DequeModule
import NIOCore

extension DeliveryStateMachine {
    /// Sealed jobs being encoded (compressed and framed) by encoders beside the dispatcher, so that one core does
    /// not compress every batch. Jobs start in the order they were sealed, at most ``limit`` ahead of the oldest one
    /// not encoded yet, and leave for the ready queue only in that order: once a job and every job sealed before it
    /// are encoded. The dispatcher therefore takes batches in the order they were sealed, as without encoders.
    ///
    /// Invariants: entries keep the order they were appended in; the first ``started`` are encoding or encoded, the
    /// rest waiting; `started <= limit`; the first entry is never encoded (it would have left).
    struct EncodePipeline: Sendable {
        enum Stage: Equatable, Sendable {
            case waiting
            case encoding
            case encoded
        }

        struct Entry: Sendable {
            var job: DeliveryJob
            var stage: Stage
        }

        /// Jobs started (encoding, or encoded behind one still encoding) at most; 0 turns the pipeline off (the
        /// dispatcher encodes, as the HTTP transport does per attempt).
        let limit: Int
        /// In seal order.
        private(set) var entries = Deque<Entry>()
        /// Entries before this index started.
        private(set) var started = 0

        init(limit: Int) {
            self.limit = max(limit, 0)
        }

        var isEnabled: Bool { self.limit > 0 }
        var count: Int { self.entries.count }
        var isEmpty: Bool { self.entries.isEmpty }
        /// Jobs being encoded now.
        var encodingCount: Int { self.entries.prefix(self.started).reduce(0) { $0 + ($1.stage == .encoding ? 1 : 0) } }

        /// Queues a sealed job behind the others.
        mutating func append(_ job: DeliveryJob) {
            self.entries.append(Entry(job: job, stage: .waiting))
        }

        /// The oldest waiting job, now encoding with `uniq` as its request's id; `nil` when `limit` jobs started
        /// already or none waits.
        mutating func start(uniq: UInt32) -> DeliveryJob? {
            guard self.started < self.limit, self.started < self.entries.count else { return nil }
            self.entries[self.started].stage = .encoding
            self.entries[self.started].job.uniq = uniq
            self.started += 1
            return self.entries[self.started - 1].job
        }

        /// Job `id` is encoded into `frame`: its block is given back (the frame holds its records now), and the jobs
        /// that may go to the dispatcher now, in seal order. `nil` when the job is not encoding here (it ended).
        mutating func encoded(_ id: Int, frame: ByteBuffer) -> (block: ByteBuffer, ready: [DeliveryJob])? {
            guard let index = self.startedIndex(of: id), self.entries[index].stage == .encoding else { return nil }
            let block = self.entries[index].job.batch.block
            self.entries[index].job.frame = frame
            self.entries[index].job.batch.block = ByteBuffer()
            self.entries[index].stage = .encoded
            return (block, self.popEncoded())
        }

        /// Takes job `id` out while it is encoding (its encoding failed), with the jobs that may go to the
        /// dispatcher now; `nil` when the job is not encoding here.
        mutating func remove(_ id: Int) -> (job: DeliveryJob, ready: [DeliveryJob])? {
            guard let index = self.startedIndex(of: id), self.entries[index].stage == .encoding else { return nil }
            let job = self.entries.remove(at: index).job
            self.started -= 1
            return (job, self.popEncoded())
        }

        /// Takes every job out, in seal order (everything fails); late reports of those encoding are ignored.
        mutating func removeAll() -> [DeliveryJob] {
            let jobs = self.entries.map(\.job)
            self.entries.removeAll()
            self.started = 0
            return jobs
        }

        private func startedIndex(of id: Int) -> Int? {
            self.entries.prefix(self.started).firstIndex { $0.job.id == id }
        }

        private mutating func popEncoded() -> [DeliveryJob] {
            var ready: [DeliveryJob] = []
            while let first = self.entries.first, first.stage == .encoded {
                ready.append(self.entries.removeFirst().job)
                self.started -= 1
            }
            return ready
        }
    }
}
