import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import InLongTransport
import NIOCore
import Synchronization
import Testing

/// Single records from many tasks at once go through the client's lanes (batches of their own, outside the
/// client's lock): every record arrives byte for byte, once, each task's records of a stream in the order it
/// sent them, and every id a `send` returned is reported once.
@Suite struct LaneTests {
    /// What every task sent, per stream, and the ids its sends returned.
    final class Sent: Sendable {
        let state = Mutex<(bodies: [String: [String]], ids: [UInt64])>(([:], []))
    }

    static let streams = ["s1", "s2", "s3"]

    /// Tasks sending one record at a time, each with its own bodies; records of every stream from every task.
    func sendFromTasks(_ client: DataProxyClient, tasks: Int, records: Int, into sent: Sent) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    var bodies: [String: [String]] = [:]
                    var ids: [UInt64] = []
                    for number in 0..<records {
                        let stream = Self.streams[(number * 7 + task) % Self.streams.count]
                        let body = "t\(task)-\(number)-" + String(repeating: "x", count: (number * 31 + task) % 300)
                        ids.append(try await client.send(body, group: "g", stream: stream).rawValue)
                        bodies["t\(task)/\(stream)", default: []].append(body)
                    }
                    sent.state.withLock { state in
                        state.bodies.merge(bodies) { $0 + $1 }
                        state.ids += ids
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// The records the sink received, per task and stream, in the order they arrived.
    func received(_ sink: InMemorySink) -> [String: [String]] {
        var received: [String: [String]] = [:]
        for message in sink.messages {
            for record in message.records {
                let body = String(buffer: record.body)
                let task = body.prefix { $0 != "-" }
                received["\(task)/\(message.stream)", default: []].append(body)
            }
        }
        return received
    }

    @Test(arguments: [false, true])
    func recordsOfManyTasksArriveOnceEachTasksInOrder(closeInsteadOfFlush: Bool) async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            // Long enough that only the batch limits, the flush or the close send the lanes' batches.
            configuration.batching.linger = .seconds(30)
            configuration.batching.maxBytes = 16 << 10
            let sent = Sent()
            let (statistics, reported, duplicates) = try await withDataProxyClient(configuration: configuration) { client in
                let reports = ReportCollector(client)
                try await self.sendFromTasks(client, tasks: 8, records: 1_500, into: sent)
                if closeInsteadOfFlush {
                    client.close()
                } else {
                    #expect(await client.flush())
                }
                #expect(await eventually { reports.acked == 8 * 1_500 }, "\(client.statistics()) \(reports.failures.first.map { "\($0)" } ?? "")")
                return (client.statistics(), reports.seenIDs, reports.duplicateIDs)
            }
            #expect(statistics.acked == 8 * 1_500)
            #expect(statistics.failed == 0)
            let (bodies, ids) = sent.state.withLock { ($0.bodies, $0.ids) }
            #expect(Set(ids).count == ids.count, "an id was returned twice")
            #expect(reported == Set(ids))
            #expect(duplicates == 0)
            let received = self.received(receiver.memorySink)
            #expect(received.keys.sorted() == bodies.keys.sorted())
            for (sender, expected) in bodies {
                #expect(received[sender] == expected, "\(sender)'s records arrived otherwise than sent")
            }
        }
    }

    /// One task's records of a stream stay in order when it mixes `send` (its lane) with the calls that go the
    /// machine's way: the lane's batch of the stream is sealed before they take their records (found by review;
    /// `sendAndWait` in `AppendLaneTests`).
    @Test(arguments: ["contentsOf", "lines"])
    func aTaskMixingCallsKeepsItsOrder(call: String) async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.batching.linger = .seconds(30)
            configuration.batching.maxRecords = 2
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("a", group: "g", stream: "s")
                switch call {
                case "contentsOf":
                    try await client.send(contentsOf: [ByteBuffer(string: "b"), ByteBuffer(string: "c")], group: "g", stream: "s")
                default:
                    try await client.send(lines: ByteBuffer(string: "b\nc\n"), group: "g", stream: "s")
                }
                #expect(await client.flush())
            }
            let received = receiver.memorySink.messages.flatMap(\.records).map { String(buffer: $0.body) }
            #expect(received == ["a", "b", "c"])
        }
    }

    /// A task sending to three streams in turn keeps a batch per stream in its lane (found by review: a lane of one
    /// batch sent a message per record).
    @Test func aTaskAlternatingStreamsSendsABatchPerStream() async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.batching.linger = .seconds(30)
            try await withDataProxyClient(configuration: configuration) { client in
                for number in 0..<300 { try await client.send("r\(number)", group: "g", stream: "s\(number % 3)") }
                #expect(await client.flush())
            }
            let messages = receiver.memorySink.messages
            #expect(messages.flatMap(\.records).count == 300)
            #expect(messages.count == 3, "\(messages.count) messages for 300 records of 3 streams")
        }
    }

    /// A lane's batch that fills no limit goes at its linger, with no flush and no other record.
    @Test func aLoneRecordInALaneGoesAtItsLinger() async throws {
        try await withReceiver { receiver in
            let configuration = clientConfiguration(ports: [try await receiver.port()])
            try await withDataProxyClient(configuration: configuration) { client in
                try await client.send("alone", group: "g", stream: "s")
                #expect(await eventually { client.statistics().acked == 1 })
                #expect(client.statistics().heldRecords == 0)
            }
            #expect(receiver.memorySink.messages.flatMap(\.records).map { String(buffer: $0.body) } == ["alone"])
        }
    }

    /// Records a lane holds count in the statistics as held until they end.
    @Test func recordsInALaneAreHeld() async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.batching.linger = .seconds(30)
            try await withDataProxyClient(configuration: configuration) { client in
                for number in 0..<3 { try await client.send("r\(number)", group: "g", stream: "s") }
                #expect(client.statistics().heldRecords == 3)
                #expect(await client.flush())
                #expect(client.statistics().heldRecords == 0)
                #expect(client.statistics().acked == 3)
            }
        }
    }

    /// Statistics count a lane's batch once while it is handed in to the machine: the records held never exceed
    /// the sends begun less the records ended, however often tasks fill their lanes' batches meanwhile.
    @Test func statisticsCountALanesBatchOnceWhileItIsHandedIn() async throws {
        try await withReceiver { receiver in
            // Acks held back, so that records are held for most of the run and the bound is tight.
            receiver.updateFaults { $0.ackDelay = .seconds(1) }
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.batching.maxRecords = 32
            let tasks = 8
            let records = 2_000
            let begun = Counter()
            let finished = Counter()
            let (polls, overcounts) = try await withDataProxyClient(configuration: configuration) { client in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for task in 0..<tasks {
                        group.addTask {
                            for number in 0..<records {
                                begun.add()
                                try await client.send("t\(task)-\(number)", group: "g", stream: "s")
                            }
                            finished.add()
                        }
                    }
                    var polls = 0
                    var overcounts: [String] = []
                    while finished.value < tasks {
                        let statistics = client.statistics()
                        // Read after the statistics: an upper bound of the records accepted when they were taken.
                        let bound = begun.value - statistics.acked - statistics.failed
                        if statistics.heldRecords > bound { overcounts.append("\(statistics.heldRecords) held of \(bound)") }
                        polls += 1
                        await Task.yield()
                    }
                    try await group.waitForAll()
                    #expect(await client.flush())
                    #expect(client.statistics().acked == tasks * records)
                    return (polls, overcounts)
                }
            }
            #expect(polls > 0)
            #expect(overcounts.isEmpty, "\(overcounts.count) of \(polls) polls counted a batch twice: \(overcounts.prefix(3))")
        }
    }

    final class Counter: Sendable {
        private let count = Atomic<Int>(0)
        var value: Int { self.count.load(ordering: .sequentiallyConsistent) }
        func add() { self.count.add(1, ordering: .sequentiallyConsistent) }
    }

    /// A run cancelled while lanes hold records ends them as failed, each reported once.
    @Test func cancellingTheRunFailsWhatTheLanesHold() async throws {
        try await withReceiver { receiver in
            var configuration = clientConfiguration(ports: [try await receiver.port()])
            configuration.batching.linger = .seconds(30)
            let client = DataProxyClient(configuration: configuration)
            let reports = ReportCollector(client)
            let run = Task { try await client.run() }
            var ids: [UInt64] = []
            for number in 0..<5 { ids.append(try await client.send("r\(number)", group: "g", stream: "s").rawValue) }
            run.cancel()
            _ = try? await run.value
            #expect(await eventually { reports.failed == 5 })
            #expect(reports.seenIDs == Set(ids))
            #expect(reports.failures.allSatisfy { $0.code == .shutDown })
            #expect(receiver.memorySink.messages.isEmpty)
        }
    }
}
