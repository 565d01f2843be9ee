extension DeliveryStateMachine {
    /// The quota of ended jobs held for the delivery reports: while some ``DataProxyClient/deliveryReports()``
    /// sequences are open, an ended job's bytes and records stay charged until every reader took its report, so
    /// that a reader falling behind slows acceptance instead of losing reports.
    ///
    /// Invariants: what is held is what was held and not taken yet, never negative when each hold is taken once;
    /// a job holds only while readers are open (it releases its quota at once otherwise).
    struct ReportQuota: Sendable {
        /// Open report sequences.
        private(set) var readers = 0
        /// Quota of ended jobs whose reports are not taken yet.
        private(set) var heldRecords = 0
        private(set) var heldBytes = 0

        /// Whether an ended job's quota is held for its report now.
        var holds: Bool { self.readers > 0 }

        /// Report sequences were opened or ended; `count` are open now.
        mutating func readersChanged(_ count: Int) {
            self.readers = count
        }

        /// A job ended: its quota is held for its report when readers are open (`true`); otherwise nothing is
        /// held and the caller releases it (`false`).
        mutating func hold(bytes: Int, records: Int) -> Bool {
            guard self.holds else { return false }
            self.heldRecords += records
            self.heldBytes += bytes
            return true
        }

        /// Every open reader took (or dropped) the report of a job that held this quota.
        mutating func taken(bytes: Int, records: Int) {
            self.heldRecords -= records
            self.heldBytes -= bytes
        }
    }
}
