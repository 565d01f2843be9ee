import Foundation
import InLongDataProxy
import NIOCore
import Synchronization

/// Sends an instance's records through the ``DataProxyClient`` (InLong Agent's DataProxy Sink): one receipt per
/// read, message attributes as the source's `extraMap`; sets aside records a proxy refuses for good.
struct DataProxySink: Sendable {
    let client: DataProxyClient
    let group: String
    let stream: String
    let attributes: [(String, String)]
    let deadLetters: DeadLetterFile
    let counters: AgentCounters

    /// Records sent together, and the receipt that ends them.
    struct Delivery: Sendable {
        var receipt: DeliveryReceipt
        var records: [ByteBuffer]
    }

    /// Sends `records`; a record too large for a frame is set aside at once. Throws when the client closed.
    func send(_ records: [ByteBuffer], origin: String) async throws -> [Delivery] {
        guard !records.isEmpty else { return [] }
        do {
            let receipt = try await self.client.sendWithReceipt(contentsOf: records, group: self.group, stream: self.stream, attributes: self.attributes)
            return [Delivery(receipt: receipt, records: records)]
        } catch let error as DataProxyError where error.code == .messageTooLarge && error.acceptedRecords == nil {
            // Validation refused the call before accepting anything: send the records that fit, one call each.
            var deliveries: [Delivery] = []
            for record in records {
                do {
                    let receipt = try await self.client.sendWithReceipt(contentsOf: [record], group: self.group, stream: self.stream, attributes: self.attributes)
                    deliveries.append(Delivery(receipt: receipt, records: [record]))
                } catch let error as DataProxyError where error.code == .messageTooLarge {
                    self.deadLetter([record], error: error, origin: origin)
                }
            }
            return deliveries
        }
    }

    /// What became of a delivery: the records to send again (retriable failures); the others were acked or set
    /// aside.
    func settle(_ delivery: Delivery, _ summary: DeliverySummary, origin: String) -> [ByteBuffer] {
        self.counters.linesAcked.add(summary.acked, ordering: .relaxed)
        guard !summary.failures.isEmpty else { return [] }
        // Ids follow the records' order: the n-th id of the receipt is the n-th record.
        var index: [DataProxyRecordID: Int] = [:]
        for (position, id) in delivery.receipt.records.enumerated() { index[id] = position }
        var resend: [ByteBuffer] = []
        for failure in summary.failures {
            let records = failure.records.compactMap { index[$0].map { delivery.records[$0] } }
            if failure.error.isRetriable {
                resend += records
            } else {
                self.deadLetter(records, error: failure.error, origin: origin)
            }
        }
        return resend
    }

    private func deadLetter(_ records: [ByteBuffer], error: DataProxyError, origin: String) {
        self.counters.deadLettered.add(records.count, ordering: .relaxed)
        self.deadLetters.write(records, group: self.group, stream: self.stream, origin: origin, reason: "\(error)")
    }
}

/// Records no proxy would take, one JSON object per line, with the reason: an operator can inspect and replay
/// them; the offset moves on past them.
final class DeadLetterFile: Sendable {
    let path: String
    private let handle = Mutex<FileHandle?>(nil)

    init(path: String) {
        self.path = path
    }

    func write(_ records: [ByteBuffer], group: String, stream: String, origin: String, reason: String) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = Data()
        let time = ISO8601DateFormatter().string(from: Date())
        for record in records {
            let entry = ["time": time, "group": group, "stream": stream, "source": origin, "reason": reason, "line": String(decoding: record.readableBytesView, as: UTF8.self)]
            guard let line = try? encoder.encode(entry) else { continue }
            data.append(line)
            data.append(UInt8(ascii: "\n"))
        }
        self.handle.withLock { handle in
            if handle == nil {
                if !FileManager.default.fileExists(atPath: self.path) {
                    _ = FileManager.default.createFile(atPath: self.path, contents: nil)
                }
                handle = FileHandle(forWritingAtPath: self.path)
                _ = try? handle?.seekToEnd()
            }
            try? handle?.write(contentsOf: data)
        }
    }
}
