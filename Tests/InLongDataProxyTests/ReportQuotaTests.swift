import InLongWire
import Testing

@testable import InLongDataProxy

/// The quota held for delivery reports (``DeliveryStateMachine/ReportQuota``): held only while readers are open,
/// until each hold is taken.
@Suite struct ReportQuotaTests {
    typealias ReportQuota = DeliveryStateMachine<Int>.ReportQuota

    @Test func withoutReadersNothingIsHeld() {
        var quota = ReportQuota()
        #expect(!quota.holds)
        let holds = quota.hold(bytes: 100, records: 2)
        #expect(!holds)
        #expect(quota.heldBytes == 0)
        #expect(quota.heldRecords == 0)
    }

    @Test func withReadersAnEndedJobHoldsUntilItsReportIsTaken() {
        var quota = ReportQuota()
        quota.readersChanged(2)
        #expect(quota.readers == 2)
        let first = quota.hold(bytes: 100, records: 2)
        let second = quota.hold(bytes: 30, records: 1)
        #expect(first && second)
        #expect(quota.heldBytes == 130)
        #expect(quota.heldRecords == 3)
        quota.taken(bytes: 100, records: 2)
        #expect(quota.heldBytes == 30)
        #expect(quota.heldRecords == 1)
    }

    @Test func holdsOutliveTheReadersThatLeft() {
        var quota = ReportQuota()
        quota.readersChanged(1)
        let held = quota.hold(bytes: 50, records: 5)
        #expect(held)
        quota.readersChanged(0)
        #expect(!quota.holds)
        let heldWithoutReaders = quota.hold(bytes: 10, records: 1)
        #expect(!heldWithoutReaders)
        #expect(quota.heldRecords == 5)
        quota.taken(bytes: 50, records: 5)
        #expect(quota.heldRecords == 0)
        #expect(quota.heldBytes == 0)
    }

    /// Random readers, holds and takes against the holds outstanding: after every step what is held is their sum,
    /// never negative, and a job holds exactly when readers are open.
    @Test(arguments: [1, 2, 3] as [UInt64]) func randomSchedulesKeepTheInvariants(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var quota = ReportQuota()
        var outstanding: [(bytes: Int, records: Int)] = []
        var readers = 0
        var held = 0
        for _ in 0..<2_000 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0:
                readers = Int.random(in: 0...3, using: &random)
                quota.readersChanged(readers)
            case 1..<6:
                let records = Int.random(in: 1...20, using: &random)
                let bytes = records * Int.random(in: 11...200, using: &random)
                let holds = quota.hold(bytes: bytes, records: records)
                #expect(holds == (readers > 0), "seed \(seed)")
                if holds {
                    outstanding.append((bytes, records))
                    held += 1
                }
            default:
                guard !outstanding.isEmpty else { break }
                // Readers take reports in any order.
                let taken = outstanding.remove(at: Int.random(in: 0..<outstanding.count, using: &random))
                quota.taken(bytes: taken.bytes, records: taken.records)
            }
            #expect(quota.holds == (readers > 0))
            #expect(quota.readers == readers)
            #expect(quota.heldBytes == outstanding.reduce(0) { $0 + $1.bytes })
            #expect(quota.heldRecords == outstanding.reduce(0) { $0 + $1.records })
            #expect(quota.heldBytes >= 0 && quota.heldRecords >= 0)
            #expect((quota.heldRecords == 0) == outstanding.isEmpty)
        }
        #expect(held > 0)
    }
}
