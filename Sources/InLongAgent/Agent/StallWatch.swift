/// Which groups are stalled: lines read and not yet ended, and no line of theirs ended for ``after``. Pure: fed the
/// groups' counts and the time on the agent's tick, it says when a group stalls and when it moves again.
struct StallWatch {
    enum Change: Equatable {
        case stalled(group: String, since: ContinuousClock.Instant)
        case moving(group: String)
    }

    private struct Group {
        var ended: Int
        /// Since when nothing ended while lines waited.
        var quietSince: ContinuousClock.Instant?
        var stalled = false
    }

    let after: Duration
    private var groups: [String: Group] = [:]

    init(after: Duration) {
        self.after = after
    }

    /// Groups stalled now, with since when.
    var stalled: [String: ContinuousClock.Instant] {
        var result: [String: ContinuousClock.Instant] = [:]
        for (name, group) in self.groups where group.stalled { result[name] = group.quietSince }
        return result
    }

    /// A group's lines that ended so far (acked or set aside) and how many wait.
    mutating func observe(group name: String, ended: Int, waiting: Int, now: ContinuousClock.Instant) -> Change? {
        var group = self.groups[name] ?? Group(ended: ended)
        defer { self.groups[name] = group }
        if ended != group.ended || waiting == 0 {
            group.ended = ended
            group.quietSince = nil
            guard group.stalled else { return nil }
            group.stalled = false
            return .moving(group: name)
        }
        let since = group.quietSince ?? now
        group.quietSince = since
        guard !group.stalled, now - since >= self.after else { return nil }
        group.stalled = true
        return .stalled(group: name, since: since)
    }
}
