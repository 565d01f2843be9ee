/// A `ContinuousClock.Instant` held as its offset from one instant of the process. The standard library's
/// instant has a resilient layout, so that every value holding one (a batch, open or sealed, a delivery job) is
/// copied, stored and wrapped in an enum through the runtime's value witnesses; `Duration`'s layout is fixed, and
/// with it theirs, on the per-record append path and the dispatcher's.
struct BatchInstant: Comparable, Sendable {
    /// The instant the offsets count from.
    private static let origin = ContinuousClock.Instant.now
    private let offset: Duration

    init(_ instant: ContinuousClock.Instant) {
        self.offset = instant - Self.origin
    }

    var instant: ContinuousClock.Instant { Self.origin + self.offset }

    static func < (lhs: Self, rhs: Self) -> Bool { lhs.offset < rhs.offset }
}
