import InLongTransport
import InLongWire
import Testing

@testable import InLongDataProxy

/// A `sendAndWait` caller's waiter: the outcome may come before or after the caller waits, the caller's task may
/// be cancelled at any moment, and the caller returns exactly once: with the outcome when it came first, with
/// `CancellationError` when the cancellation came first.
@Suite struct AckWaiterTests {
    static let ack = DataProxyAck(proxy: Endpoint(host: "127.0.0.1", port: 1), proxyIP: nil, latency: .zero, attempts: 1)

    enum Step: CaseIterable { case succeed, fail, cancel }

    @Test func anOutcomeBeforeTheWaitIsKept() async throws {
        let waiter = AckWaiter()
        waiter.resume(with: .success(Self.ack))
        #expect(try await waiter.outcome() == Self.ack)
    }

    @Test func aFailureReachesTheCaller() async throws {
        let waiter = AckWaiter()
        waiter.resume(with: .failure(DataProxyError(.noProxies, "none")))
        await #expect(throws: DataProxyError.self) { try await waiter.outcome() }
    }

    @Test func aCancellationBeforeTheOutcomeEndsTheWaitAndTheLaterOutcomeIsDropped() async throws {
        let waiter = AckWaiter()
        let caller = Task { try await waiter.outcome() }
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        waiter.resume(with: .success(Self.ack))
    }

    /// Seeded schedules: yields between the caller starting and the steps, the steps in random order. Only the
    /// first outcome counts; without a cancellation the caller gets it, without an outcome it gets
    /// `CancellationError`, with both either (a task cancelled before it runs learns of it only once it runs).
    @Test(arguments: 0..<200) func theCallerGetsTheFirstOutcomeOrItsCancellation(seed: UInt64) async throws {
        var random = SplitMix64(seed: seed)
        let waiter = AckWaiter()
        let caller = Task { try await waiter.outcome() }
        var firstOutcome: Step?
        var cancelled = false
        for _ in 0..<Int(random.next() % 3 + 1) {
            for _ in 0..<Int(random.next() % 4) { await Task.yield() }
            let step = Step.allCases[Int(random.next() % 3)]
            switch step {
            case .succeed: waiter.resume(with: .success(Self.ack))
            case .fail: waiter.resume(with: .failure(DataProxyError(.noProxies, "none")))
            case .cancel: caller.cancel()
            }
            if step == .cancel { cancelled = true } else if firstOutcome == nil { firstOutcome = step }
        }
        switch (await caller.result, firstOutcome) {
        case (.success(let ack), .succeed): #expect(ack == Self.ack)
        case (.failure(let error as DataProxyError), .fail): #expect(error.code == .noProxies)
        case (.failure(is CancellationError), _): #expect(cancelled)
        case (let result, _): Issue.record("seed \(seed): first outcome \(String(describing: firstOutcome)), caller got \(result)")
        }
    }
}
