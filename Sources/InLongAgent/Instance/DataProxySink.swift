import Foundation
import InLongDataProxy
import NIOCore
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A record an instance still owes an outcome: to send again after a retriable failure, or to set aside in the
/// dead-letter file when a first attempt at that failed.
struct PendingRecord: Sendable {
    var body: ByteBuffer
    /// Where it starts in its file, when the source sends that as an attribute.
    var offset: Int64?
    /// Its own attributes (a syslog message's header fields).
    var attributes: [(String, String)] = []
    /// Why no proxy will take it, when it is to be set aside.
    var setAside: String?
}

/// Where an ``Instance`` sends its records (the DataProxy Sink; tests script one).
protocol InstanceSink: Sendable {
    associatedtype Delivery: Sendable

    /// Sends `records` (with where each starts in its file, or no `offsets`, and each one's own `attributes`, or
    /// none); returns the deliveries that carry them and the records still owed (not accepted now, or a dead-letter
    /// write failed). Throws only when nothing more can be sent (the client closed, the task was cancelled): a
    /// ``SinkClosed`` with what the call handed over before and what it owes.
    func send(_ records: [ByteBuffer], offsets: [Int64], attributes: [[(String, String)]], origin: String) async throws -> (deliveries: [Delivery], owed: [PendingRecord])
    /// Sends again or sets aside `records`, as ``send(_:offsets:attributes:origin:)``.
    func retry(_ records: [PendingRecord], origin: String) async throws -> (deliveries: [Delivery], owed: [PendingRecord])
    /// What became of `delivery`, when it ended: the records it still owes (retriable failures, and records whose
    /// dead-letter write failed); `nil` while it is in flight.
    func settle(_ delivery: Delivery, origin: String) async -> [PendingRecord]?
    /// Returns once `delivery` ended, or the task is cancelled.
    func waitForOutcome(of delivery: Delivery) async
    /// At a stop, for a source that cannot read them again: sets aside `owed` and what `inFlight` did not end with
    /// an ack (possibly sent: no ack came yet).
    func setAside(_ owed: [PendingRecord], inFlight: [Delivery], reason: String, origin: String) async
}

/// The client closed during a call: `deliveries` carry what it accepted before (the close still sends them, or
/// fails them at its deadline); `owed` are the call's records it can no longer send.
struct SinkClosed<Delivery: Sendable>: Error {
    var deliveries: [Delivery]
    var owed: [PendingRecord]
}

/// Sends an instance's records through the ``DataProxyClient`` (InLong Agent's DataProxy Sink): one receipt per
/// read, message attributes as the source's `extraMap` (with the file's origin: its name, path groups, the
/// host); sets aside records a proxy refuses for good. A record's offset, when asked for, is an attribute of the
/// record itself.
struct DataProxySink: InstanceSink {
    let client: DataProxyClient
    let group: String
    let stream: String
    let attributes: [(String, String)]
    /// The record attribute holding where a record starts in its file (`nil`: none).
    var offsetAttribute: String? = nil
    let deadLetters: DeadLetterFile
    let counters: AgentCounters
    /// The source's own counts (its metrics), beside the group's.
    var sourceCounters: AgentCounters? = nil
    let logger: Logger

    /// Records sent together, and the receipt that ends them.
    struct Delivery: Sendable {
        var receipt: DeliveryReceipt
        var records: [ByteBuffer]
        /// Where each record starts in its file, when sent as an attribute (else empty).
        var offsets: [Int64] = []
        /// Each record's own attributes (else empty).
        var attributes: [[(String, String)]] = []

        func pending(_ index: Int) -> PendingRecord {
            PendingRecord(
                body: self.records[index],
                offset: self.offsets.isEmpty ? nil : self.offsets[index],
                attributes: self.attributes.isEmpty ? [] : self.attributes[index]
            )
        }
    }

    func send(_ records: [ByteBuffer], offsets: [Int64], attributes: [[(String, String)]], origin: String) async throws -> (deliveries: [Delivery], owed: [PendingRecord]) {
        guard !records.isEmpty else { return ([], []) }
        let offsets = self.offsetAttribute == nil ? [] : offsets
        do {
            let receipt = try await self.sendOnce(records, offsets: offsets, attributes: attributes)
            return ([Delivery(receipt: receipt, records: records, offsets: offsets, attributes: attributes)], [])
        } catch let error as DataProxyError where error.code == .messageTooLarge && error.acceptedRecords == nil {
            // Validation refused the call before accepting anything: send the records that fit, one call each.
            var deliveries: [Delivery] = []
            var owed: [PendingRecord] = []
            for (index, record) in records.enumerated() {
                let offset = offsets.isEmpty ? [] : [offsets[index]]
                let own = attributes.isEmpty ? [] : [attributes[index]]
                do {
                    let receipt = try await self.sendOnce([record], offsets: offset, attributes: own)
                    deliveries.append(Delivery(receipt: receipt, records: [record], offsets: offset, attributes: own))
                } catch let error as DataProxyError where error.code == .messageTooLarge && error.acceptedRecords == nil {
                    owed += self.deadLetter([record], reason: "\(error)", origin: origin)
                } catch {
                    do {
                        let rest = try self.cutShort(by: error, records, offsets: offsets, attributes: attributes, from: index, origin: origin)
                        return (deliveries + rest.deliveries, owed + rest.owed)
                    } catch var closed as SinkClosed<Delivery> {
                        closed.deliveries = deliveries + closed.deliveries
                        closed.owed = owed + closed.owed
                        throw closed
                    }
                }
            }
            return (deliveries, owed)
        } catch {
            return try self.cutShort(by: error, records, offsets: offsets, attributes: attributes, from: 0, origin: origin)
        }
    }

    /// What a call over the records from `start` on leaves when it threw `error`: those it accepted go on under its
    /// receipt, the rest are owed and tried again. When nothing more can be sent (the client closed, the task was
    /// cancelled) it throws them as ``SinkClosed``, for the instance to account for at its stop.
    private func cutShort(
        by error: any Error,
        _ records: [ByteBuffer],
        offsets: [Int64],
        attributes: [[(String, String)]],
        from start: Int,
        origin: String
    ) throws -> (deliveries: [Delivery], owed: [PendingRecord]) {
        let proxyError = error as? DataProxyError
        let receipt = proxyError?.acceptedReceipt
        let accepted = receipt == nil ? 0 : proxyError?.acceptedRecords?.count ?? 0
        let end = start + accepted
        let deliveries = receipt.map {
            [Delivery(
                receipt: $0,
                records: Array(records[start..<end]),
                offsets: offsets.isEmpty ? [] : Array(offsets[start..<end]),
                attributes: attributes.isEmpty ? [] : Array(attributes[start..<end])
            )]
        } ?? []
        let owed = (end..<records.count).map {
            PendingRecord(body: records[$0], offset: offsets.isEmpty ? nil : offsets[$0], attributes: attributes.isEmpty ? [] : attributes[$0])
        }
        guard let proxyError, proxyError.code != .shutDown else { throw SinkClosed(deliveries: deliveries, owed: owed) }
        // Not accepted now (the buffer full with `whenFull: fail`, a limit lowered meanwhile, a spool write, ...).
        self.logger.warning(
            "cannot send; the lines stay pending and are tried again",
            metadata: ["inlong.source": "\(origin)", "inlong.records": "\(owed.count)", "inlong.error": "\(proxyError)"]
        )
        return (deliveries, owed)
    }

    /// One call: bodies alone (the fast path), or records with their own attributes (their offsets, their
    /// header fields).
    private func sendOnce(_ records: [ByteBuffer], offsets: [Int64], attributes: [[(String, String)]]) async throws -> DeliveryReceipt {
        let key = offsets.isEmpty ? nil : self.offsetAttribute
        guard key != nil || !attributes.isEmpty else {
            return try await self.client.sendWithReceipt(contentsOf: records, group: self.group, stream: self.stream, attributes: self.attributes)
        }
        let withAttributes = records.indices.map { index in
            var own = attributes.isEmpty ? [] : attributes[index]
            if let key { own.append((key, String(offsets[index]))) }
            return DataProxyRecord(records[index], attributes: own)
        }
        return try await self.client.sendWithReceipt(contentsOf: withAttributes, group: self.group, stream: self.stream, attributes: self.attributes)
    }

    func retry(_ records: [PendingRecord], origin: String) async throws -> (deliveries: [Delivery], owed: [PendingRecord]) {
        var owed: [PendingRecord] = []
        var bodies: [ByteBuffer] = []
        var offsets: [Int64] = []
        var attributes: [[(String, String)]] = []
        for record in records {
            if let reason = record.setAside {
                owed += self.deadLetter([record], reason: reason, origin: origin)
            } else {
                bodies.append(record.body)
                if let offset = record.offset { offsets.append(offset) }
                attributes.append(record.attributes)
            }
        }
        if attributes.allSatisfy(\.isEmpty) { attributes = [] }
        self.counters.resent.add(bodies.count, ordering: .relaxed)
        self.sourceCounters?.resent.add(bodies.count, ordering: .relaxed)
        do {
            let sent = try await self.send(bodies, offsets: offsets.count == bodies.count ? offsets : [], attributes: attributes, origin: origin)
            return (sent.deliveries, owed + sent.owed)
        } catch var closed as SinkClosed<Delivery> {
            closed.owed = owed + closed.owed
            throw closed
        }
    }

    func setAside(_ owed: [PendingRecord], inFlight: [Delivery], reason: String, origin: String) async {
        var records = owed
        for delivery in inFlight {
            // One that ended meanwhile is settled as usual: only what it still owes is set aside.
            records += await self.settle(delivery, origin: origin) ?? delivery.records.indices.map(delivery.pending)
        }
        guard !records.isEmpty else { return }
        _ = self.deadLetter(records, reason: reason, origin: origin)
    }

    func settle(_ delivery: Delivery, origin: String) async -> [PendingRecord]? {
        guard delivery.receipt.isComplete, let summary = try? await delivery.receipt.outcome() else { return nil }
        self.counters.linesAcked.add(summary.acked, ordering: .relaxed)
        self.sourceCounters?.linesAcked.add(summary.acked, ordering: .relaxed)
        guard !summary.failures.isEmpty else { return [] }
        // Ids follow the records' order: the n-th id of the receipt is the n-th record.
        var index: [DataProxyRecordID: Int] = [:]
        for (position, id) in delivery.receipt.records.enumerated() { index[id] = position }
        var owed: [PendingRecord] = []
        for failure in summary.failures {
            let records = failure.records.compactMap { index[$0].map { delivery.pending($0) } }
            if failure.error.isRetriable {
                owed += records
            } else {
                owed += self.deadLetter(records, reason: "\(failure.error)", origin: origin)
            }
        }
        if let first = summary.failures.first(where: { $0.error.isRetriable }) {
            self.logger.debug(
                "records failed; sending again",
                metadata: ["inlong.source": "\(origin)", "inlong.records": "\(owed.count)", "inlong.error": "\(first.error)"]
            )
        }
        return owed
    }

    func waitForOutcome(of delivery: Delivery) async {
        _ = try? await delivery.receipt.outcome()
    }

    /// Sets `records` aside; returns them, still owed, when the dead-letter file cannot be written: the offset must
    /// not pass a line that is neither delivered nor set aside.
    private func deadLetter(_ records: [ByteBuffer], reason: String, origin: String) -> [PendingRecord] {
        self.deadLetter(records.map { PendingRecord(body: $0) }, reason: reason, origin: origin)
    }

    private func deadLetter(_ records: [PendingRecord], reason: String, origin: String) -> [PendingRecord] {
        do {
            try self.deadLetters.write(records.map(\.body), group: self.group, stream: self.stream, origin: origin, reason: reason)
            self.counters.deadLettered.add(records.count, ordering: .relaxed)
            self.sourceCounters?.deadLettered.add(records.count, ordering: .relaxed)
            return []
        } catch {
            self.counters.deadLetterFailures.add(records.count, ordering: .relaxed)
            self.sourceCounters?.deadLetterFailures.add(records.count, ordering: .relaxed)
            self.logger.warning(
                "cannot write the dead-letter file; the lines stay pending and are tried again",
                metadata: ["inlong.deadLetter": "\(self.deadLetters.path)", "inlong.source": "\(origin)", "inlong.records": "\(records.count)", "inlong.error": "\(error)"]
            )
            return records.map { PendingRecord(body: $0.body, offset: $0.offset, attributes: $0.attributes, setAside: reason) }
        }
    }
}

/// Records no proxy would take, one JSON object per line, with the reason: an operator can inspect and replay
/// them; the offset moves on past them.
final class DeadLetterFile: Sendable {
    let path: String
    private let state = Mutex<(handle: FileHandle?, torn: Bool)>((nil, false))

    init(path: String) {
        self.path = path
    }

    /// Appends `records`; throws when they are not all written (the file cannot be opened, a full disk).
    func write(_ records: [ByteBuffer], group: String, stream: String, origin: String, reason: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = Data()
        let time = ISO8601DateFormatter().string(from: Date())
        for record in records {
            let entry = ["time": time, "group": group, "stream": stream, "source": origin, "reason": reason, "line": String(decoding: record.readableBytesView, as: UTF8.self)]
            data.append(try encoder.encode(entry))
            data.append(UInt8(ascii: "\n"))
        }
        try self.state.withLock { state in
            if state.handle == nil {
                let fd = open(self.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw DeadLetterError(path: self.path, errno: errno) }
                state.handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            }
            // After a failed write the file may end in a torn entry: start on a line of its own.
            if state.torn { data.insert(UInt8(ascii: "\n"), at: 0) }
            do {
                try state.handle!.write(contentsOf: data)
                state.torn = false
            } catch {
                state.handle = nil
                state.torn = true
                throw error
            }
        }
    }
}

/// The dead-letter file could not be opened.
struct DeadLetterError: Error, CustomStringConvertible {
    var path: String
    var errno: Int32
    var description: String { "cannot open \(self.path): \(String(cString: strerror(self.errno)))" }
}
