import InLongWire
import InLongTransport
import NIOCore
import Testing

@testable import InLongDataProxy

/// Sealed jobs encoded beside the dispatcher: started in seal order up to the limit, ready only in seal order.
@Suite struct EncodePipelineTests {
    typealias Pipeline = DeliveryStateMachine<Int>.EncodePipeline

    func job(_ id: Int) -> DeliveryJob {
        var job = DeliveryJobFixtures.job(id)
        job.batch.block = ByteBuffer(string: "block \(id)")
        return job
    }

    func frame(_ id: Int) -> ByteBuffer { ByteBuffer(string: "frame \(id)") }

    @Test func jobsStartInSealOrderUpToTheLimit() {
        var pipeline = Pipeline(limit: 2)
        for id in 0..<4 { pipeline.append(self.job(id)) }
        let value1 = pipeline.start(uniq: 7)
        #expect(value1?.id == 0)
        let value2 = pipeline.start(uniq: 8)
        #expect(value2?.id == 1)
        let value3 = pipeline.start(uniq: 9)
        #expect(value3 == nil)
        #expect(pipeline.encodingCount == 2)
        #expect(pipeline.entries.map(\.job.uniq) == [7, 8, 0, 0])
    }

    /// A job encoded before the one sealed ahead of it waits for it, and counts against the limit meanwhile.
    @Test func aJobEncodedOutOfOrderWaitsForTheOnesSealedBeforeIt() throws {
        var pipeline = Pipeline(limit: 2)
        for id in 0..<3 { pipeline.append(self.job(id)) }
        _ = pipeline.start(uniq: 1)
        _ = pipeline.start(uniq: 2)
        let secondResult = pipeline.encoded(1, frame: self.frame(1))
        let second = try #require(secondResult)
        #expect(second.ready.isEmpty)
        #expect(second.block == ByteBuffer(string: "block 1"))
        let value4 = pipeline.start(uniq: 3)
        #expect(value4 == nil)
        let firstResult = pipeline.encoded(0, frame: self.frame(0))
        let first = try #require(firstResult)
        #expect(first.ready.map(\.id) == [0, 1])
        #expect(first.ready.map(\.frame) == [self.frame(0), self.frame(1)])
        #expect(first.ready.allSatisfy { $0.batch.block.readableBytes == 0 })
        let value5 = pipeline.start(uniq: 3)
        #expect(value5?.id == 2)
    }

    @Test func aFailedJobLeavesAndTheOthersGoOn() throws {
        var pipeline = Pipeline(limit: 3)
        for id in 0..<3 { pipeline.append(self.job(id)) }
        for uniq in 1...3 { _ = pipeline.start(uniq: UInt32(uniq)) }
        let encodedSecond = pipeline.encoded(1, frame: self.frame(1))
        #expect(try #require(encodedSecond).ready.isEmpty)
        let removedResult = pipeline.remove(0)
        let removed = try #require(removedResult)
        #expect(removed.job.id == 0)
        #expect(removed.ready.map(\.id) == [1])
        #expect(pipeline.count == 1)
        let value6 = pipeline.remove(1)
        #expect(value6 == nil, "only a job being encoded can fail")
    }

    /// Everything failed while jobs were encoding: their late reports are ignored.
    @Test func lateReportsAfterEverythingWasTakenOutAreIgnored() {
        var pipeline = Pipeline(limit: 2)
        for id in 0..<3 { pipeline.append(self.job(id)) }
        _ = pipeline.start(uniq: 1)
        let value7 = pipeline.removeAll()
        #expect(value7.map(\.id) == [0, 1, 2])
        let value8 = pipeline.encoded(0, frame: self.frame(0))
        #expect(value8 == nil)
        let value9 = pipeline.remove(0)
        #expect(value9 == nil)
        #expect(pipeline.isEmpty)
    }

    @Test func aPipelineOfNoEncodersNeverStarts() {
        var pipeline = Pipeline(limit: 0)
        #expect(!pipeline.isEnabled)
        pipeline.append(self.job(0))
        let value10 = pipeline.start(uniq: 1)
        #expect(value10 == nil)
    }

    /// Random appends, starts, encodings, failures and clearings against a model: after every step the jobs leave
    /// in seal order, no more than the limit are started, each job leaves once, with its own frame.
    @Test(arguments: [1, 2, 3, 4] as [UInt64]) func randomSchedulesKeepTheInvariants(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let limit = Int.random(in: 1...4, using: &random)
        var pipeline = Pipeline(limit: limit)
        var sealed: [Int] = []  // in the pipeline, seal order
        var encoding: Set<Int> = []
        var encoded: Set<Int> = []
        var left: [Int] = []  // left for the dispatcher, in order
        var gone: Set<Int> = []
        var nextID = 0
        var nextUniq: UInt32 = 0
        for _ in 0..<3_000 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0, 1, 2:
                pipeline.append(self.job(nextID))
                sealed.append(nextID)
                nextID += 1
            case 3, 4:
                nextUniq += 1
                let started = pipeline.start(uniq: nextUniq)
                let startedCount = encoding.count + encoded.count
                let expected = startedCount < limit ? sealed.dropFirst(startedCount).first : nil
                #expect(started?.id == expected, "seed \(seed)")
                if let started {
                    #expect(started.uniq == nextUniq)
                    encoding.insert(started.id)
                }
            case 5, 6, 7:
                let id = Int.random(in: 0...max(nextID, 1), using: &random)
                let result = pipeline.encoded(id, frame: self.frame(id))
                #expect((result != nil) == encoding.contains(id), "seed \(seed)")
                guard let result else { break }
                #expect(result.block == ByteBuffer(string: "block \(id)"))
                encoding.remove(id)
                encoded.insert(id)
                for job in result.ready {
                    #expect(job.id == sealed.first, "seed \(seed)")
                    #expect(job.frame == self.frame(job.id))
                    sealed.removeFirst()
                    encoded.remove(job.id)
                    left.append(job.id)
                }
            case 8:
                guard let id = encoding.randomElement(using: &random) else { break }
                let result = pipeline.remove(id)
                #expect(result?.job.id == id)
                encoding.remove(id)
                sealed.removeAll { $0 == id }
                gone.insert(id)
                for job in result?.ready ?? [] {
                    #expect(job.id == sealed.first, "seed \(seed)")
                    sealed.removeFirst()
                    encoded.remove(job.id)
                    left.append(job.id)
                }
            default:
                guard Int.random(in: 0..<10, using: &random) == 0 else { break }
                let value11 = pipeline.removeAll()
                #expect(value11.map(\.id) == sealed)
                gone.formUnion(sealed)
                sealed.removeAll()
                encoding.removeAll()
                encoded.removeAll()
            }
            #expect(pipeline.entries.map(\.job.id) == sealed, "seed \(seed)")
            #expect(pipeline.started == encoding.count + encoded.count)
            #expect(pipeline.started <= limit)
            #expect(pipeline.encodingCount == encoding.count)
            #expect(pipeline.entries.first?.stage != .encoded)
            #expect(Set(pipeline.entries.prefix(pipeline.started).map(\.job.id)) == encoding.union(encoded))
            #expect(left == left.sorted(), "jobs leave in seal order")
            #expect(Set(left).isDisjoint(with: gone) && Set(left).count == left.count)
        }
        #expect(!left.isEmpty)
    }
}
