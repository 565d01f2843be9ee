import Testing

@testable import InLongTransport

/// `RequestKey` keeps integer keys as bits and type, other keys as existentials: both must behave as the keys do.
@Suite struct RequestKeyTests {
    @Test func integerKeysEqualByValue() {
        #expect(RequestKey(UInt32(7)) == RequestKey(UInt32(7)))
        #expect(RequestKey(UInt32(7)) != RequestKey(UInt32(8)))
        #expect(RequestKey(Int(-1)) == RequestKey(Int(-1)))
        #expect(RequestKey(Int8(-1)) != RequestKey(Int8(1)))
        #expect(RequestKey(UInt64.max) == RequestKey(UInt64.max))
    }

    @Test func equalBitsOfDifferentTypesDiffer() {
        #expect(RequestKey(UInt32(7)) != RequestKey(Int(7)))
        #expect(RequestKey(Int32(-1)) != RequestKey(UInt32.max))
        #expect(RequestKey(Int(7)) != RequestKey("7"))
    }

    @Test func otherKeysEqualByValue() {
        #expect(RequestKey("a") == RequestKey("a"))
        #expect(RequestKey("a") != RequestKey("b"))
        #expect(RequestKey(Pair(a: 1, b: 2)) == RequestKey(Pair(a: 1, b: 2)))
        #expect(RequestKey(Pair(a: 1, b: 2)) != RequestKey(Pair(a: 2, b: 1)))
    }

    @Test func keysFindTheirEntriesInATable() {
        var table: [RequestKey: Int] = [:]
        for value in 0..<1000 { table[RequestKey(UInt32(value))] = value }
        for value in 0..<100 { table[RequestKey("k\(value)")] = -value }
        #expect(table.count == 1100)
        #expect(table[RequestKey(UInt32(999))] == 999)
        #expect(table[RequestKey(Int(999))] == nil)
        #expect(table[RequestKey("k42")] == -42)
        #expect(table.removeValue(forKey: RequestKey(UInt32(5))) == 5)
        #expect(table[RequestKey(UInt32(5))] == nil)
    }

    struct Pair: Hashable, Sendable {
        var a: Int
        var b: Int
    }
}
