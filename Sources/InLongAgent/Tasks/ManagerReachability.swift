/// Whether the Manager the agent takes its tasks from answers, with no I/O and the time passed in: any answer
/// (tasks or heartbeat) counts; a Manager with no answer for longer than the timeout (from the start, or from its
/// last answer) is a health problem, named with its address and the last failure's cause.
struct ManagerReachability: Sendable {
    let managerURL: String
    let timeout: Duration
    /// The last answer, or the start while there was none.
    private(set) var lastAnswer: ContinuousClock.Instant
    /// Why the last request failed; `nil` once one was answered again.
    private(set) var lastFailure: String?

    init(managerURL: String, timeout: Duration, now: ContinuousClock.Instant) {
        self.managerURL = managerURL
        self.timeout = timeout
        self.lastAnswer = now
    }

    /// The Manager answered a request.
    mutating func answered(now: ContinuousClock.Instant) {
        self.lastAnswer = max(self.lastAnswer, now)
        self.lastFailure = nil
    }

    /// A request failed with `cause`.
    mutating func failed(_ cause: String) {
        self.lastFailure = cause
    }

    /// What `/health` says while the Manager has not answered for longer than the timeout, or `nil`.
    func problem(now: ContinuousClock.Instant) -> String? {
        guard let failure = self.lastFailure, now - self.lastAnswer > self.timeout else { return nil }
        let seconds = (now - self.lastAnswer).components.seconds
        return "the Manager \(self.managerURL) has not answered for \(seconds) s: \(failure)"
    }
}
