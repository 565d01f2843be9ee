import InLongWire
import Testing

@testable import InLongAgent

/// When the Manager that gives the agent its tasks counts as unreachable for `/health`: no answer for longer than
/// the timeout, since the start or its last answer, while its last request failed.
@Suite struct ManagerReachabilityTests {
    let url = "http://manager:8083"

    @Test func aManagerSilentPastTheTimeoutIsNamedUntilItAnswers() {
        let start = ContinuousClock.now
        var reachability = ManagerReachability(managerURL: self.url, timeout: .seconds(10), now: start)
        // Failing, but not for long yet.
        reachability.failed("connection refused")
        #expect(reachability.problem(now: start + .seconds(10)) == nil)
        // Past the timeout from the start: named, with the last cause.
        reachability.failed("timed out")
        #expect(reachability.problem(now: start + .seconds(11)) == "the Manager http://manager:8083 has not answered for 11 s: timed out")
        // An answer ends it; the next failure counts from that answer.
        reachability.answered(now: start + .seconds(12))
        #expect(reachability.problem(now: start + .seconds(12)) == nil)
        reachability.failed("connection refused")
        #expect(reachability.problem(now: start + .seconds(20)) == nil)
        #expect(reachability.problem(now: start + .seconds(23)) == "the Manager http://manager:8083 has not answered for 11 s: connection refused")
    }

    @Test func aManagerThatAnswersIsNeverAProblem() {
        let start = ContinuousClock.now
        var reachability = ManagerReachability(managerURL: self.url, timeout: .seconds(1), now: start)
        reachability.answered(now: start + .seconds(5))
        #expect(reachability.problem(now: start + .seconds(100)) == nil)
    }

    /// Random answers, failures and time on a simulated clock, against a model kept apart: after every step, a
    /// problem is said exactly when the last request failed and the last answer (or the start) is older than the
    /// timeout, and it names the address and the last cause.
    @Test(arguments: 0..<64)
    func randomSchedulesSayAProblemExactlyWhenTheManagerIsSilentTooLong(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let start = ContinuousClock.now
        let timeout = Duration.milliseconds(Int64(random.next() % 5_000) + 1)
        var reachability = ManagerReachability(managerURL: self.url, timeout: timeout, now: start)
        var now = start
        var lastAnswer = start
        var lastFailure: String?
        for step in 0..<300 {
            switch random.next() % 3 {
            case 0:
                reachability.answered(now: now)
                lastAnswer = now
                lastFailure = nil
            case 1:
                let cause = "cause \(step)"
                reachability.failed(cause)
                lastFailure = cause
            default:
                now += .milliseconds(Int64(random.next() % 2_000))
            }
            let problem = reachability.problem(now: now)
            let expected = lastFailure != nil && now - lastAnswer > timeout
            #expect((problem != nil) == expected, "seed \(seed) step \(step)")
            if let problem, let lastFailure {
                #expect(problem.hasPrefix("the Manager \(self.url) has not answered for ") && problem.hasSuffix(": \(lastFailure)"), "seed \(seed) step \(step)")
            }
        }
    }
}
