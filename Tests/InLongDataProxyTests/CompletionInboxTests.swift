import InLongWire
import NIOCore
import NIOPosix
import Testing

@testable import InLongDataProxy

@Suite struct CompletionInboxTests {
    /// A reader's waiter in the pure inbox: which wait of the reader it is.
    typealias Inbox = CompletionInbox<Int, Int>

    @Test func theReaderTakesAnswersInOrderAndStopsOnlyOnceClosedWithNothingOwed() {
        var inbox = Inbox()
        inbox.expect()
        inbox.expect()
        #expect(inbox.post(1) == nil)
        guard case .items(let first) = inbox.next(0) else { return #expect(Bool(false)) }
        #expect(first == [1])
        guard case .parked = inbox.next(1) else { return #expect(Bool(false)) }
        #expect(inbox.close() == nil, "an answer is still owed")
        let resumed = inbox.post(2)
        #expect(resumed?.0 == 1)
        #expect(resumed?.1 == [2])
        guard case .finished = inbox.next(2) else { return #expect(Bool(false)) }
    }

    @Test func closingWakesAReaderWithNothingOwed() {
        var inbox = Inbox()
        guard case .parked = inbox.next(7) else { return #expect(Bool(false)) }
        #expect(inbox.close() == 7)
        guard case .finished = inbox.next(8) else { return #expect(Bool(false)) }
    }

    @Test func aBatchSubmittedAfterTheCloseStopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            var inbox = CompletionInbox<Int, Int>()
            _ = inbox.close()
            inbox.expect()
        }
    }

    /// Seeded schedules of submissions, answers in any order, the reader's takes and the close, checked after
    /// every step: each answer reaches the reader once, in the order posted; a parked reader never sits beside
    /// waiting answers; the reader stops only when the inbox is closed and every submitted batch was answered and
    /// taken.
    @Test(arguments: 0..<300) func everyAnswerReachesTheReaderOnceInPostOrder(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var inbox = Inbox()
        var submitted = 0
        var unanswered: [Int] = []
        var posted: [Int] = []
        var taken: [Int] = []
        var parked: Int?
        var waits = 0
        var stopped = false
        let batches = Int(random.next() % 40) + 1
        let closeAfter = Int(random.next() % UInt64(batches + 1))
        for step in 0..<2_000 {
            switch random.next() % 4 {
            case 0 where submitted < batches && !inbox.isClosed:
                inbox.expect()
                unanswered.append(submitted)
                submitted += 1
            case 1 where !unanswered.isEmpty:
                let item = unanswered.remove(at: Int(random.next() % UInt64(unanswered.count)))
                posted.append(item)
                if let (waiter, items) = inbox.post(item) {
                    #expect(waiter == parked, "seed \(seed) step \(step): the parked reader is resumed")
                    parked = nil
                    taken += items
                }
            case 2 where parked == nil && !stopped:
                waits += 1
                switch inbox.next(waits) {
                case .items(let items): taken += items
                case .parked: parked = waits
                case .finished: stopped = true
                }
            case 3 where submitted >= closeAfter && !inbox.isClosed:
                if let waiter = inbox.close() {
                    #expect(waiter == parked, "seed \(seed) step \(step)")
                    parked = nil
                    // Resumed with nothing: the reader stops.
                    stopped = true
                }
            default:
                break
            }
            #expect(taken == Array(posted.prefix(taken.count)), "seed \(seed) step \(step): taken in post order, once")
            #expect(inbox.owed == submitted - taken.count, "seed \(seed) step \(step)")
            #expect(parked == nil || inbox.items.isEmpty, "seed \(seed) step \(step): a parked reader beside answers")
            #expect(inbox.hasParkedReader == (parked != nil), "seed \(seed) step \(step)")
            if stopped {
                #expect(inbox.isClosed && unanswered.isEmpty && taken.count == submitted, "seed \(seed) step \(step): stopped early")
            }
            if stopped { break }
        }
        #expect(stopped, "seed \(seed): the reader never stopped (\(taken.count) of \(submitted) taken)")
    }

    /// The driver with real threads: answers posted from event loops in any order reach one reader, each once,
    /// and the reader stops after the close once every answer came.
    @Test func answersFromEventLoopsReachTheReaderOnce() async throws {
        let queue = CompletionQueue<Int>()
        let count = 2_000
        for _ in 0..<count { queue.expect() }
        let loops = MultiThreadedEventLoopGroup.singleton
        let reader = Task {
            var got: [Int] = []
            while let items = await queue.next() { got += items }
            return got
        }
        for item in 0..<count {
            loops.next().execute { queue.post(item) }
        }
        queue.close()
        let got = try await reader.value
        #expect(got.count == count)
        #expect(Set(got) == Set(0..<count))
    }
}
