import Foundation
import Testing

/// How long the seeded simulations run: a fixed set of seeds in `swift test`, many more from
/// `scripts/simulate.sh` (`INLONG_SIMULATION_SEEDS`, `INLONG_SIMULATION_STEPS`, `INLONG_SIMULATION_SEED` to
/// replay one schedule).
enum SimulationRuns {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// The seeds to run: `count` by default, or the environment's.
    static func seeds(_ count: Int, offset: UInt64 = 0) -> [UInt64] {
        if let one = environment["INLONG_SIMULATION_SEED"].flatMap(UInt64.init) { return [one] }
        let count = environment["INLONG_SIMULATION_SEEDS"].flatMap(Int.init) ?? count
        return (0..<UInt64(count)).map { $0 + offset }
    }

    /// Steps per schedule: `count` by default, or the environment's.
    static func steps(_ count: Int) -> Int {
        environment["INLONG_SIMULATION_STEPS"].flatMap(Int.init) ?? count
    }

    /// Runs `count` seeds from `offset` (or the environment's) of `steps` steps each: `schedule` runs one and
    /// returns its events, added up for the closing line that `scripts/simulate.sh` reads.
    static func explore(
        _ name: String,
        seeds count: Int,
        offset: UInt64 = 0,
        steps: Int,
        _ schedule: @escaping @Sendable (_ seed: UInt64, _ steps: Int) throws -> Int
    ) async throws {
        let seeds = Self.seeds(count, offset: offset)
        let steps = Self.steps(steps)
        let events = try await Self.onOwnThread {
            try seeds.reduce(0) { $0 + (try schedule($1, steps)) }
        }
        Self.report(name, events: events, seeds: seeds.count)
    }

    /// Runs CPU-bound work on a thread of its own: on the cooperative pool (two threads on a two-core machine) it
    /// would hold a thread that other suites' tasks need to keep their deadlines, which under load made them late.
    static func onOwnThread<Result: Sendable>(_ work: @escaping @Sendable () throws -> Result) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Swift.Result { try work() })
            }
        }
    }

    /// Adds up events for the closing line that `scripts/simulate.sh` reads.
    static func report(_ name: String, events: Int, seeds: Int) {
        guard environment["INLONG_SIMULATION_SEEDS"] != nil || environment["INLONG_SIMULATION_SEED"] != nil else { return }
        print("simulation \(name): \(events) events over \(seeds) seeds")
    }
}

/// A failed invariant: the seed, the step, the invariant's name and the last events, and how to replay it.
struct SimulationViolation: Error, CustomStringConvertible {
    var simulation: String
    var seed: UInt64
    var step: Int
    var invariant: String
    var detail: String
    var trace: [String]

    var description: String {
        "\(self.simulation) seed \(self.seed), step \(self.step): \(self.invariant): \(self.detail)\n"
            + "last events:\n" + self.trace.joined(separator: "\n")
            + "\nreplay: INLONG_SIMULATION_SEED=\(self.seed) swift test --filter InLongSimulationTests"
    }
}

/// The last events of a schedule, kept for a violation's report.
struct EventTrace {
    private(set) var events: [String] = []
    private(set) var count = 0
    let keep: Int

    init(keep: Int = 30) {
        self.keep = keep
    }

    mutating func record(_ event: @autoclosure () -> String) {
        self.count += 1
        if self.events.count == self.keep { self.events.removeFirst() }
        self.events.append(event())
    }
}
