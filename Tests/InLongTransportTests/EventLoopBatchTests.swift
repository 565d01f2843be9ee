import NIOEmbedded
import Synchronization
import Testing

@testable import InLongTransport

/// Items from any thread reach the loop in batches: one hop per batch, in the order added, nothing after a close.
@Suite struct EventLoopBatchTests {
    typealias State = EventLoopBatchState<Int>

    @Test func theFirstItemSchedulesTheHopAndTheOthersRideOnIt() {
        var state = State()
        #expect(state.append(1) == .scheduleDelivery)
        #expect(state.append(2) == .joinedBatch)
        var batch: [Int] = []
        state.take(into: &batch)
        #expect(batch == [1, 2])
        #expect(state.items.isEmpty)
        #expect(state.append(3) == .scheduleDelivery)
    }

    /// The two arrays take turns: the emptied batch's room is where the next items go.
    @Test func theNextItemsFillTheRoomOfTheLastBatch() {
        var state = State()
        for item in 0..<100 { _ = state.append(item) }
        var batch: [Int] = []
        state.take(into: &batch)
        batch.removeAll(keepingCapacity: true)
        let room = batch.capacity
        state.take(into: &batch)
        #expect(state.items.capacity == room)
    }

    @Test func aClosedBatchDropsWhatWaitsAndRefusesMore() {
        var state = State()
        _ = state.append(1)
        state.close()
        #expect(state.items.isEmpty)
        #expect(state.append(2) == .refused)
    }

    @Test func itemsReachTheLoopInOrderInOneHopPerBatch() {
        let loop = EmbeddedEventLoop()
        let delivered = Mutex<[[Int]]>([])
        let batch = EventLoopBatch<Int>(eventLoop: loop) { items in delivered.withLock { $0.append(items) } }
        #expect(batch.append(1))
        #expect(batch.append(2))
        loop.run()
        #expect(batch.append(3))
        loop.run()
        // Delivered directly (before a close), then by the hop scheduled for it, which finds nothing.
        #expect(batch.append(4))
        batch.drain()
        loop.run()
        batch.close()
        #expect(!batch.append(5))
        loop.run()
        #expect(delivered.withLock { $0 } == [[1, 2], [3], [4]])
    }

    /// Random appends, hops and closes against a model: every item added before the close is delivered once, in
    /// order; exactly one hop is scheduled per batch; nothing is added once closed.
    @Test(arguments: 0..<20)
    func randomSchedulesDeliverEveryItemOnceInOrder(seed: UInt64) {
        var random = Xorshift(seed: seed)
        var state = State()
        var spare: [Int] = []
        var added: [Int] = []
        var delivered: [Int] = []
        var hopsScheduled = 0
        var closed = false
        for step in 0..<500 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:
                let outcome = state.append(step)
                if closed {
                    #expect(outcome == .refused)
                } else {
                    added.append(step)
                    #expect(outcome == (hopsScheduled == 0 ? .scheduleDelivery : .joinedBatch))
                    if outcome == .scheduleDelivery { hopsScheduled += 1 }
                }
            case 6..<9:
                var batch: [Int] = []
                swap(&batch, &spare)
                state.take(into: &batch)
                hopsScheduled = 0
                delivered += batch
                batch.removeAll(keepingCapacity: true)
                spare = batch
            default:
                if !closed, Int.random(in: 0..<10, using: &random) == 0 {
                    added.removeLast(state.items.count)
                    state.close()
                    closed = true
                }
            }
            #expect(hopsScheduled <= 1)
            #expect(state.isDeliveryScheduled == (hopsScheduled == 1))
            #expect(delivered + state.items == added)
        }
        #expect(!closed || state.items.isEmpty)
    }
}
