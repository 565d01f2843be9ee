import DequeModule

extension DeliveryStateMachine {
    /// Which jobs have not ended, by id, wherever they wait: ids are given in acceptance order, so a flush waits
    /// until the oldest job not ended is at or past the first id given after it.
    ///
    /// Invariants: ids are given once, increasing; `oldest` is the smallest id given and not ended (`nil` when
    /// every job ended), and `oldestLive` that or else the next id; ending jobs out of order keeps only what is
    /// needed to find the next oldest.
    struct LiveJobs: Sendable {
        /// The id the next job takes.
        private(set) var nextID = 0
        /// Ids from the oldest not ended on, and those among them that ended out of order.
        private var ids = Deque<Int>()
        private var endedOutOfOrder = Set<Int>()

        /// The oldest job not ended.
        var oldest: Int? { self.ids.first }
        /// The oldest job not ended, or the next id when every job ended: what a flush's target is compared with.
        var oldestLive: Int { self.ids.first ?? self.nextID }
        /// Jobs not ended.
        var count: Int { self.ids.count - self.endedOutOfOrder.count }

        /// Gives the next job its id.
        mutating func add() -> Int {
            let id = self.nextID
            self.ids.append(id)
            self.nextID += 1
            return id
        }

        /// Job `id` ended.
        mutating func ended(_ id: Int) {
            if self.ids.first == id {
                self.ids.removeFirst()
                while let oldest = self.ids.first, self.endedOutOfOrder.remove(oldest) != nil {
                    self.ids.removeFirst()
                }
            } else {
                self.endedOutOfOrder.insert(id)
            }
        }
    }
}
