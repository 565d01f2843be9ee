import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import InLongWire
import NIOCore
import Testing

/// `send(lines:)`: records delimited in one buffer, walked in place, arrive byte for byte and in order.
@Suite struct DataProxyClientLinesTests {
    /// Records of any bytes but the delimiter (a `\r` inside, bytes that are not UTF-8), 1 to 300 bytes.
    func records(_ count: Int, delimiter: UInt8, seed: UInt64) -> [[UInt8]] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { index in
            var record = Array("record \(index) ".utf8)
            for _ in 0..<Int.random(in: 0...290, using: &random) {
                var byte = UInt8.random(in: 0...255, using: &random)
                if byte == delimiter { byte = 0x41 }
                record.append(byte)
            }
            // A `\r` would be taken for a CRLF line end: keep it off the record's end.
            if delimiter == UInt8(ascii: "\n"), record.last == UInt8(ascii: "\r") { record.append(0x42) }
            return record
        }
    }

    /// Every record with its delimiter, some with CRLF ends, empty lines among them, the last without its
    /// delimiter; split into buffers at random places (within records too: the calls take whole records, so the
    /// test cuts at record boundaries).
    func serialized(_ records: [[UInt8]], delimiter: UInt8, seed: UInt64) -> (buffers: [ByteBuffer], empty: Int) {
        var random = SplitMix64(seed: seed)
        var buffers: [ByteBuffer] = []
        var buffer = ByteBuffer()
        var empty = 0
        for (index, record) in records.enumerated() {
            buffer.writeBytes(record)
            if index == records.count - 1 { break }
            if delimiter == UInt8(ascii: "\n"), Int.random(in: 0..<4, using: &random) == 0 { buffer.writeInteger(UInt8(ascii: "\r")) }
            buffer.writeInteger(delimiter)
            if Int.random(in: 0..<50, using: &random) == 0 {
                buffer.writeInteger(delimiter)
                empty += 1
            }
            if Int.random(in: 0..<3_000, using: &random) == 0 {
                buffers.append(buffer)
                buffer = ByteBuffer()
            }
        }
        buffers.append(buffer)
        return (buffers, empty)
    }

    @Test(arguments: [UInt8(ascii: "\n"), 0])
    func delimitedRecordsArriveByteForByteInOrder(delimiter: UInt8) async throws {
        let records = self.records(20_000, delimiter: delimiter, seed: 29)
        let (buffers, empty) = self.serialized(records, delimiter: delimiter, seed: 30)
        #expect(buffers.count > 1)
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            // A small buffer: the calls wait for room part way through their records.
            configuration.buffer.maxRecords = 1_000
            var ids = DataProxyRecordIDs()
            try await withDataProxyClient(configuration: configuration) { client in
                for buffer in buffers {
                    ids.formUnion(try await client.send(lines: buffer, delimiter: delimiter, group: "g", stream: "s"))
                }
                #expect(await client.flush(timeout: .seconds(120)))
                let statistics = client.statistics()
                #expect(statistics.acked == records.count)
                #expect(statistics.failed == 0)
            }
            #expect(ids.count == records.count)
            #expect(empty > 0)
            let received = receiver.memorySink.records.map { Array($0.body.readableBytesView) }
            #expect(received.count == records.count)
            #expect(received == records, "records differ from what was sent")
        }
    }

    /// A record too large for a batch stops the call there: it throws naming the records accepted before, and
    /// those arrive.
    @Test func aRecordTooLargeForABatchStopsTheCallAfterTheOnesBefore() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            var buffer = ByteBuffer(string: "one\ntwo\r\n\nthree\n")
            buffer.writeRepeatingByte(UInt8(ascii: "x"), count: configuration.batching.maxBytes + 1)
            buffer.writeString("\nafter\n")
            try await withDataProxyClient(configuration: configuration) { client in
                await #expect {
                    try await client.send(lines: buffer, group: "g", stream: "s")
                } throws: { error in
                    guard let error = error as? DataProxyError else { return false }
                    return error.code == .messageTooLarge && error.acceptedRecords?.count == 3
                }
                #expect(await client.flush())
            }
            #expect(receiver.memorySink.records.map { String(buffer: $0.body) } == ["one", "two", "three"])
        }
    }

    @Test func anEmptyBufferOrOneOfEmptyLinesSendsNothing() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                let none = try await client.send(lines: ByteBuffer(), group: "g", stream: "s")
                let emptyLines = try await client.send(lines: ByteBuffer(string: "\n\r\n\n"), group: "g", stream: "s")
                #expect(none.isEmpty)
                #expect(emptyLines.isEmpty)
                #expect(client.statistics().accepted == 0)
            }
        }
    }

    /// A receiver whose acks come 2 ms late.
    static var slowAcks: DataProxyReceiver.Configuration {
        var configuration = DataProxyReceiver.Configuration.loopback
        configuration.faults.ackDelay = .milliseconds(2)
        return configuration
    }

    /// A buffer of 40 records and batches of 12 records or 1 KiB: calls of hundreds of records stop part way.
    static func bindingBuffer(port: Int) -> DataProxyClient.Configuration {
        var configuration = clientConfiguration(ports: [port])
        configuration.buffer.maxRecords = 40
        configuration.buffer.maxBytes = 64 << 10
        configuration.batching.maxRecords = 12
        configuration.batching.maxBytes = 1 << 10
        configuration.batching.linger = .milliseconds(1)
        return configuration
    }

    /// Caller `caller`'s record `index`: distinct, of 0 to 89 bytes after its name.
    static func callerRecord(_ caller: Int, _ index: Int) -> String {
        "c\(caller)-\(index) " + String(repeating: "z", count: (index * 7 + caller * 13) % 90)
    }

    /// Callers at once on a buffer that binds, over a real socket with acks a little late: two calls of many lines
    /// and one of bodies on two streams, and a sender of one record at a time; the quota and the dispatcher's
    /// backlog stop them part way, again and again, while the others' fills hold reservations. Every record
    /// arrives exactly once, byte for byte, and the client counts each as acked. (With a turn that said "the turn
    /// is over" when the record quota, not its capped bytes, stopped it, the callers spun and this never ended.)
    @Test(.timeLimit(.minutes(2))) func concurrentCallersOnABindingBufferDeliverEveryRecordOnce() async throws {
        try await withReceiver(Self.slowAcks) { receiver in
            let configuration = Self.bindingBuffer(port: try await receiver.port())
            let body = Self.callerRecord
            let perCaller = 2_000
            try await withDataProxyClient(configuration: configuration) { client in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for caller in 0..<2 {
                        group.addTask {
                            for chunk in stride(from: 0, to: perCaller, by: 250) {
                                let lines = (chunk..<chunk + 250).map { body(caller, $0) + "\n" }.joined()
                                try await client.send(lines: ByteBuffer(string: lines), group: "g", stream: caller == 0 ? "a" : "b")
                            }
                        }
                    }
                    group.addTask {
                        for chunk in stride(from: 0, to: perCaller, by: 250) {
                            try await client.send(contentsOf: (chunk..<chunk + 250).map { ByteBuffer(string: body(2, $0)) }, group: "g", stream: "a")
                        }
                    }
                    group.addTask {
                        for index in 0..<perCaller {
                            try await client.send(ByteBuffer(string: body(3, index)), group: "g", stream: "b")
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(await client.flush(timeout: .seconds(120)))
                let statistics = client.statistics()
                #expect(statistics.acked == 4 * perCaller)
                #expect(statistics.failed == 0)
            }
            let expected = (0..<4).flatMap { caller in (0..<perCaller).map { body(caller, $0) } }
            let received = receiver.memorySink.records.map { String(buffer: $0.body) }
            #expect(received.count == expected.count)
            #expect(received.sorted() == expected.sorted(), "records lost, doubled or changed")
        }
    }

    /// The same callers with the fail-fast policy: each call that finds the buffer full throws `bufferFull`
    /// naming the records it accepted before (the first of its records, in order), and the caller sends the rest
    /// again a little later. Every record ends up accepted exactly once and arrives exactly once, byte for byte;
    /// the ids the calls were given are distinct and as many as the records acked.
    @Test(.timeLimit(.minutes(2))) func failFastCallersAtOnceAccountForEveryRecord() async throws {
        try await withReceiver(Self.slowAcks) { receiver in
            var configuration = Self.bindingBuffer(port: try await receiver.port())
            configuration.buffer.whenFull = .fail
            let body = Self.callerRecord
            /// Records accepted after `call` stopped part way, or all of them when it returned.
            func accepted(_ count: Int, _ call: () async throws -> DataProxyRecordIDs) async throws -> (ids: DataProxyRecordIDs, full: Bool) {
                do {
                    let ids = try await call()
                    #expect(ids.count == count)
                    return (ids, false)
                } catch let error as DataProxyError where error.code == .bufferFull {
                    try await Task.sleep(for: .milliseconds(1))
                    return (error.acceptedRecords ?? DataProxyRecordIDs(), true)
                }
            }
            let perCaller = 1_000
            let (ids, fullErrors) = try await withDataProxyClient(configuration: configuration) { client in
                let outcome = try await withThrowingTaskGroup(of: ([DataProxyRecordIDs], Int).self) { group in
                    for caller in 0..<3 {
                        group.addTask {
                            var ids: [DataProxyRecordIDs] = []
                            var full = 0
                            var next = 0
                            while next < perCaller {
                                let chunk = next..<min(next + 250, perCaller)
                                let (accepted, wasFull) = try await accepted(chunk.count) {
                                    if caller == 2 {
                                        return try await client.send(contentsOf: chunk.map { ByteBuffer(string: body(2, $0)) }, group: "g", stream: "a")
                                    }
                                    let lines = chunk.map { body(caller, $0) + "\n" }.joined()
                                    return try await client.send(lines: ByteBuffer(string: lines), group: "g", stream: caller == 0 ? "a" : "b")
                                }
                                ids.append(accepted)
                                next += accepted.count
                                if wasFull { full += 1 }
                            }
                            return (ids, full)
                        }
                    }
                    group.addTask {
                        var ids: [DataProxyRecordIDs] = []
                        var full = 0
                        var index = 0
                        while index < perCaller {
                            let (accepted, wasFull) = try await accepted(1) {
                                let id = try await client.send(ByteBuffer(string: body(3, index)), group: "g", stream: "b")
                                return DataProxyRecordIDs(id.rawValue..<id.rawValue + 1)
                            }
                            ids.append(accepted)
                            index += accepted.count
                            if wasFull { full += 1 }
                        }
                        return (ids, full)
                    }
                    var all: ([DataProxyRecordIDs], Int) = ([], 0)
                    for try await (ids, full) in group {
                        all.0 += ids
                        all.1 += full
                    }
                    return all
                }
                #expect(await client.flush(timeout: .seconds(120)))
                let statistics = client.statistics()
                #expect(statistics.accepted == 4 * perCaller)
                #expect(statistics.acked == 4 * perCaller)
                #expect(statistics.failed == 0)
                return outcome
            }
            #expect(fullErrors > 0, "the buffer never filled: the test did not try the fail-fast policy")
            let everyID = ids.flatMap { Array($0) }
            #expect(everyID.count == 4 * perCaller)
            #expect(Set(everyID).count == everyID.count, "an id was given twice")
            let expected = (0..<4).flatMap { caller in (0..<perCaller).map { body(caller, $0) } }
            let received = receiver.memorySink.records.map { String(buffer: $0.body) }
            #expect(received.count == expected.count)
            #expect(received.sorted() == expected.sorted(), "records lost, doubled or changed")
        }
    }
}
