import AsyncAlgorithms
import Foundation
import InLongDataProxy
import InLongTransport

/// When `inlong send` tells an operator that no proxy can be reached, or that the proxies it reached do not
/// answer (records wait and none ended), and when it gives up: a value fed the client's statistics and the time.
struct ReachabilityWatch {
    enum Action: Equatable {
        case none
        case tell(String)
        case giveUp(String)
    }

    let notice: Duration
    let timeout: Duration?
    /// Put before every line told (the agent names the group).
    let prefix: String
    private var since: ContinuousClock.Instant?
    private var ended = -1
    private var told: String?
    /// Whether a proxy was ever ready: before, a known cause is told at once.
    private var everReady = false
    /// The last cause seen, for the line that gives up.
    private var lastReason: String?

    init(notice: Duration, timeout: Duration?, prefix: String = "") {
        self.notice = notice
        self.timeout = timeout
        self.prefix = prefix
    }

    mutating func observe(_ statistics: DataProxyClientStatistics, now: ContinuousClock.Instant) -> Action {
        // A proxy that answers, even with refusals whose records wait to be retried, is not silent.
        let ended = statistics.acked + statistics.failed + statistics.answeredRequests
        let waiting = statistics.inFlightBatches > 0
        let stuck: String?
        if statistics.readyProxies > 0 { self.everReady = true }
        if statistics.readyProxies == 0 {
            // Transport errors name their address already.
            let reasons = statistics.proxyErrors.map { $0.value.contains($0.key.description) ? $0.value : "\($0.key): \($0.value)" }.sorted()
                + [statistics.discoveryError].compactMap { $0 }
            stuck = reasons.joined(separator: "; ")
        } else if waiting, ended == self.ended {
            let proxies = statistics.reachableProxies.map(\.description).sorted().joined(separator: ", ")
            stuck = "no answer from \(proxies.isEmpty ? "the proxies" : proxies): \(statistics.heldRecords) records wait"
        } else {
            stuck = nil
        }
        self.ended = ended
        guard let stuck else {
            defer { (self.since, self.told) = (nil, nil) }
            return self.told != nil ? .tell("a proxy is reachable again") : .none
        }
        let since = self.since ?? now
        self.since = since
        let down = now - since
        if !stuck.isEmpty { self.lastReason = stuck }
        if let timeout = self.timeout, down >= timeout {
            return .giveUp("giving up after \(timeout) with no proxy reachable or answering" + (self.lastReason.map { ": \($0)" } ?? ""))
        }
        // At once when no proxy was ever reached and the cause is known (a refused connect, a name that does not
        // resolve); otherwise when the notice is due. Again when the first reasons arrive after a notice without.
        let due = down >= self.notice || (!self.everReady && !stuck.isEmpty)
        guard due, self.told == nil || (self.told!.isEmpty && !stuck.isEmpty) else { return .none }
        self.told = stuck
        return .tell(stuck.isEmpty ? "cannot reach a proxy: no proxy connected yet" : stuck)
    }

    /// What was told and still holds: why no proxy is reachable or answering, for `/health`; `nil` when all is well.
    var problem: String? {
        self.told.map { $0.isEmpty ? "cannot reach a proxy: no proxy connected yet" : $0 }
    }

    /// Looks at `statistics` four times a second (`nil`: nothing to look at yet) and writes what there is to tell
    /// to standard error, until the task is cancelled (returns `false`) or it gives up (returns `true`). `problem`
    /// hears of every change of ``problem``.
    func run(statistics: () -> DataProxyClientStatistics?, problem report: (String?) -> Void = { _ in }) async -> Bool {
        var watch = self
        for await _ in AsyncTimerSequence(interval: .milliseconds(250), clock: .continuous) {
            guard let statistics = statistics() else { continue }
            let action = watch.observe(statistics, now: .now)
            report(watch.problem)
            switch action {
            case .none:
                break
            case .tell(let line):
                FileHandle.standardError.write(Data((self.prefix + line + "\n").utf8))
            case .giveUp(let line):
                FileHandle.standardError.write(Data((self.prefix + line + "\n").utf8))
                return true
            }
        }
        return false
    }
}
