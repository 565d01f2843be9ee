import DequeModule
import Foundation
import InLongTransport

/// The audit reporter's logic, with no I/O and no clock of its own: counts are summed per ``AuditKey``; a flush
/// turns the sums into requests of at most ``Configuration/maxEntriesPerRequest`` entries, queued in a bounded
/// backlog (the oldest request waiting is dropped, and counted, when it is full); requests are sent a few at a
/// time and retried with backoff until answered with success or dropped.
///
/// Every count added is, at any moment, in exactly one place: a sum, a waiting request, a request in flight, the
/// acknowledged total or the dropped total (``Totals``).
struct AuditStateMachine {
    struct Configuration {
        /// Entries per request (the Java SDK's `BATCH_NUM`, 100).
        var maxEntriesPerRequest = 100
        /// Requests waiting to be sent (retries included); beyond it the oldest is dropped.
        var maxPendingRequests = 1000
        /// Requests in flight at once.
        var maxInFlight = 4
        var retryBackoff = ExponentialBackoff(initial: .seconds(1), maximum: .seconds(60))
        /// Picks the backoff's jitter factor; a test injects a seeded one.
        var random: @Sendable (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
    }

    /// One audit request: entries and the header fields the machine decides.
    struct Request: Sendable, Equatable {
        var id: UInt64
        /// The request's number within its flush, from 1 (the header's `packet_id`).
        var packetID: UInt64
        /// When it was flushed, milliseconds since the epoch (the header's `sdk_ts`).
        var sdkTime: Int64
        var entries: [AuditEntry]
        /// Attempts that failed.
        var failures = 0
        /// Not sent again before this instant.
        var notBefore: ContinuousClock.Instant?

        var records: UInt64 { self.entries.reduce(0) { $0 &+ $1.counts.count } }

        static func == (lhs: Request, rhs: Request) -> Bool { lhs.id == rhs.id && lhs.entries == rhs.entries }
    }

    /// Where the counts are; their sum is every count added.
    struct Totals: Equatable {
        var summed: UInt64 = 0
        var waiting: UInt64 = 0
        var inFlight: UInt64 = 0
        var acknowledged: UInt64 = 0
        var dropped: UInt64 = 0

        var all: UInt64 { self.summed + self.waiting + self.inFlight + self.acknowledged + self.dropped }
    }

    let configuration: Configuration
    private(set) var sums: [AuditKey: AuditCounts] = [:]
    /// Requests to send, oldest (lowest id) first.
    private(set) var waiting: Deque<Request> = []
    private(set) var inFlight: [UInt64: Request] = [:]
    private var nextRequestID: UInt64 = 1
    private(set) var acknowledgedRecords: UInt64 = 0
    private(set) var acknowledgedRequests = 0
    private(set) var droppedRecords: UInt64 = 0
    private(set) var droppedRequests = 0
    private(set) var failedAttempts = 0

    init(configuration: Configuration = Configuration()) {
        precondition(configuration.maxEntriesPerRequest > 0 && configuration.maxPendingRequests > 0 && configuration.maxInFlight > 0)
        self.configuration = configuration
    }

    /// Adds counts to a key's sum.
    mutating func add(_ key: AuditKey, _ counts: AuditCounts) {
        guard counts.count > 0 || counts.size > 0 else { return }
        self.sums[key, default: AuditCounts()] += counts
    }

    /// Turns every sum into requests at the back of the backlog, dropping the oldest waiting requests beyond its
    /// bound. Returns the number of requests made.
    @discardableResult
    mutating func flush(wallMillis: Int64) -> Int {
        guard !self.sums.isEmpty else { return 0 }
        // Sorted, so that the requests of a flush (and a test's expectations) do not depend on hashing.
        let entries = self.sums.map { AuditEntry(key: $0.key, counts: $0.value) }.sorted(by: Self.order)
        self.sums.removeAll(keepingCapacity: true)
        var packet: UInt64 = 1
        var made = 0
        for start in stride(from: 0, to: entries.count, by: self.configuration.maxEntriesPerRequest) {
            let end = min(start + self.configuration.maxEntriesPerRequest, entries.count)
            self.waiting.append(Request(id: self.takeRequestID(), packetID: packet, sdkTime: wallMillis, entries: Array(entries[start..<end])))
            packet += 1
            made += 1
        }
        while self.waiting.count > self.configuration.maxPendingRequests {
            let dropped = self.waiting.removeFirst()
            self.droppedRequests += 1
            self.droppedRecords &+= dropped.records
        }
        return made
    }

    /// The requests to send now (due, oldest first, while fewer than ``Configuration/maxInFlight`` are in
    /// flight); they are in flight from here on.
    mutating func nextSends(now: ContinuousClock.Instant) -> [Request] {
        var sends: [Request] = []
        var index = self.waiting.startIndex
        while self.inFlight.count < self.configuration.maxInFlight, index < self.waiting.endIndex {
            if let notBefore = self.waiting[index].notBefore, notBefore > now {
                index += 1
                continue
            }
            let request = self.waiting.remove(at: index)
            self.inFlight[request.id] = request
            sends.append(request)
        }
        return sends
    }

    /// A request in flight was answered with success (`true`), or failed (no answer, an error, or a reply that
    /// is not success): then it waits again, after a backoff. An unknown id (answered twice) is ignored.
    mutating func answered(_ id: UInt64, success: Bool, now: ContinuousClock.Instant) {
        guard var request = self.inFlight.removeValue(forKey: id) else { return }
        if success {
            self.acknowledgedRequests += 1
            self.acknowledgedRecords &+= request.records
            return
        }
        self.failedAttempts += 1
        request.failures += 1
        request.notBefore = now + self.delay(afterFailures: request.failures)
        // Back in id order: the backlog drops its oldest first.
        let index = self.waiting.firstIndex { $0.id > request.id } ?? self.waiting.endIndex
        self.waiting.insert(request, at: index)
        while self.waiting.count > self.configuration.maxPendingRequests {
            let dropped = self.waiting.removeFirst()
            self.droppedRequests += 1
            self.droppedRecords &+= dropped.records
        }
    }

    /// Gives up on everything not acknowledged (the reporter closed): sums, waiting and in-flight requests count
    /// as dropped, and answers that come later are ignored.
    mutating func abandonAll() {
        let totals = self.totals
        self.droppedRecords &+= totals.summed + totals.waiting + totals.inFlight
        self.droppedRequests += self.waiting.count + self.inFlight.count
        self.sums.removeAll()
        self.waiting.removeAll()
        self.inFlight.removeAll()
    }

    /// When the earliest waiting request becomes due, if one waits for its backoff.
    var nextRetryDue: ContinuousClock.Instant? {
        self.waiting.compactMap(\.notBefore).min()
    }

    /// Nothing summed, waiting or in flight.
    var isIdle: Bool { self.sums.isEmpty && self.waiting.isEmpty && self.inFlight.isEmpty }

    var totals: Totals {
        Totals(
            summed: self.sums.values.reduce(0) { $0 &+ $1.count },
            waiting: self.waiting.reduce(0) { $0 &+ $1.records },
            inFlight: self.inFlight.values.reduce(0) { $0 &+ $1.records },
            acknowledged: self.acknowledgedRecords,
            dropped: self.droppedRecords
        )
    }

    private func delay(afterFailures failures: Int) -> Duration {
        let backoff = self.configuration.retryBackoff
        let initial = Double(backoff.initial.components.seconds) + Double(backoff.initial.components.attoseconds) / 1e18
        let maximum = Double(backoff.maximum.components.seconds) + Double(backoff.maximum.components.attoseconds) / 1e18
        let base = min(initial * pow(backoff.multiplier, Double(min(failures - 1, 64))), maximum)
        let factor = backoff.jitter == 0 ? 1 : self.configuration.random((1 - backoff.jitter)...(1 + backoff.jitter))
        return .nanoseconds(Int64(base * factor * 1e9))
    }

    /// Request ids as the Java SDK's: counting up, back to 0 past 1,000,000,000.
    private mutating func takeRequestID() -> UInt64 {
        defer { self.nextRequestID = self.nextRequestID >= 1_000_000_000 ? 0 : self.nextRequestID + 1 }
        return self.nextRequestID
    }

    static func order(_ lhs: AuditEntry, _ rhs: AuditEntry) -> Bool {
        let (l, r) = (lhs.key, rhs.key)
        if l.minute != r.minute { return l.minute < r.minute }
        if l.group != r.group { return l.group < r.group }
        if l.stream != r.stream { return l.stream < r.stream }
        if l.auditID != r.auditID { return l.auditID < r.auditID }
        if l.auditTag != r.auditTag { return l.auditTag < r.auditTag }
        return l.auditVersion < r.auditVersion
    }
}
