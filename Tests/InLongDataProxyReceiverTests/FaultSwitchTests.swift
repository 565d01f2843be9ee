@testable import InLongDataProxyReceiver
import InLongTestUtils
import InLongWire
import Testing

// A guard against a hang, not a timing check: under the full suite on two loaded cores a test can wait over a
// minute for a thread before it runs (every seed of this suite once ran out of a one-minute limit that way).
/// The stop-reading fault holds requests until it is lifted, the receiver stops, or the waiting task is cancelled;
/// whatever the order of those events and however many requests wait at once, every held request is let go once.
@Suite(.timeLimit(.minutes(3))) struct FaultSwitchTests {
    private func stopped() -> FaultSwitch {
        var faults = DataProxyReceiver.Faults()
        faults.stopReading = true
        return FaultSwitch(faults)
    }

    @Test func withReadingOnRequestsGoOnAtOnce() async {
        let faults = FaultSwitch(.init())
        #expect(await faults.admit())
    }

    @Test func everyRequestHeldAtOnceGoesOnWhenReadingResumes() async {
        let faults = self.stopped()
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 { group.addTask { await faults.admit() } }
            // Changing another fault does not let them go.
            faults.update { $0.load = 5 }
            faults.update { $0.stopReading = false }
            var admitted = 0
            for await outcome in group where outcome { admitted += 1 }
            #expect(admitted == 200)
        }
    }

    @Test func stoppingDropsEveryHeldRequestAndEveryLaterOne() async {
        let faults = self.stopped()
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<100 { group.addTask { await faults.admit() } }
            faults.stop()
            var outcomes: [Bool] = []
            for await outcome in group { outcomes.append(outcome) }
            #expect(outcomes == Array(repeating: false, count: 100))
        }
        faults.update { $0.stopReading = false }
        #expect(await faults.admit() == false)
    }

    /// Seeded schedules: requests arrive, some are cancelled, reading stops and resumes, the receiver stops, in a
    /// random order; each request ends exactly once, admitted only if it ended while reading was on and the
    /// receiver not stopped.
    @Test(arguments: 0..<20 as Range<UInt64>) func randomSchedulesLetEveryRequestGoOnce(seed: UInt64) async {
        var random = SplitMix64(seed: seed)
        let faults = self.stopped()
        var reading = false
        await withTaskGroup(of: (Int, Bool).self) { group in
            var started = 0
            var tasks: [Task<Bool, Never>] = []
            var cancelled: Set<Int> = []
            for _ in 0..<60 {
                switch random.next() % 6 {
                case 0, 1, 2:
                    let task = Task { await faults.admit() }
                    tasks.append(task)
                    started += 1
                case 3:
                    reading.toggle()
                    let value = !reading
                    faults.update { $0.stopReading = value }
                case 4:
                    if !tasks.isEmpty {
                        let index = Int(random.next() % UInt64(tasks.count))
                        tasks[index].cancel()
                        cancelled.insert(index)
                    }
                default:
                    await Task.yield()
                }
            }
            // The end: reading resumes, so that every request still held goes on (or was cancelled).
            faults.update { $0.stopReading = false }
            for (index, task) in tasks.enumerated() { group.addTask { (index, await task.value) } }
            var ended = 0
            for await (index, admitted) in group {
                ended += 1
                // Not cancelled, a request can only have gone on: the receiver never stopped.
                if !cancelled.contains(index) { #expect(admitted, "seed \(seed), request \(index)") }
            }
            #expect(ended == started)
        }
        // Once stopped, nothing goes on.
        faults.stop()
        #expect(await faults.admit() == false)
    }
}
