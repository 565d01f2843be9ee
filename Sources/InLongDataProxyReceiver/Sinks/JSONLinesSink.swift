public import CoreMetrics
public import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A sink that writes one JSON object per record and line, to a file or to standard output.
///
/// ```json
/// {"group":"g","stream":"s","dataTime":1700000000000,"receivedAt":1700000000456,"client":"127.0.0.1:50312","attributes":"groupId=g&streamId=s","body":"hello","encoding":"utf8"}
/// ```
/// `encoding` is `utf8` when the body is valid UTF-8 (then `body` is that text) and `base64` otherwise.
/// `recordAttributes` is present when the record carries its own attributes. Each message's lines are written
/// with one system call before it is acked; with `fsync`, also made durable before it is acked.
public final class JSONLinesSink: DataProxyReceiverSink {
    private struct State {
        var handle: FileHandle
        var lines = 0
        var closed = false
        var commit = GroupCommit<CheckedContinuation<Void, any Error>>()
        var syncs = 0
    }

    private let state: Mutex<State>
    /// The file written, or `nil` for standard output.
    public let url: URL?
    /// Whether a message is acked only once it is fsynced.
    public let acksAreDurable: Bool
    private let fileDescriptor: Int32
    private let syncDuration: CoreMetrics.Timer

    /// Writes to the file at `url`, created if needed; an existing file is truncated unless `append` is set.
    ///
    /// - Parameters:
    ///   - url: The file written.
    ///   - append: Write after what the file holds instead of truncating it.
    ///   - fsync: Ack a message only once it is on disk: writers that arrive together share one fsync (group
    ///     commit), so a receiver with many connections (or ``DataProxyReceiver/Configuration/maxConcurrentRequests``
    ///     above 1) keeps its rate. A failed fsync is answered with the server's retriable error 114, so the
    ///     sender sends those records again.
    ///   - metricsFactory: Where the fsync durations go (`inlong_receiver_fsync_seconds`); the global factory
    ///     when `nil`.
    public init(url: URL, append: Bool = false, fsync: Bool = false, metricsFactory: (any MetricsFactory)? = nil) throws {
        let manager = FileManager.default
        if !append || !manager.fileExists(atPath: url.path) {
            guard manager.createFile(atPath: url.path, contents: nil) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: url.path])
            }
        }
        let handle = try FileHandle(forWritingTo: url)
        if append { try handle.seekToEnd() }
        self.url = url
        self.acksAreDurable = fsync
        self.fileDescriptor = handle.fileDescriptor
        self.syncDuration = CoreMetrics.Timer(label: "inlong_receiver_fsync_seconds", factory: metricsFactory ?? MetricsSystem.factory)
        self.state = Mutex(State(handle: handle))
    }

    /// Writes to standard output.
    public init(standardOutput: Void = ()) {
        self.url = nil
        self.acksAreDurable = false
        self.fileDescriptor = FileHandle.standardOutput.fileDescriptor
        self.syncDuration = CoreMetrics.Timer(label: "inlong_receiver_fsync_seconds")
        self.state = Mutex(State(handle: FileHandle.standardOutput))
    }

    /// Lines written so far.
    public var lineCount: Int { self.modify { $0.lines } }

    /// The fsyncs that made acked messages durable so far (with `fsync`): each covers a group of messages.
    public var syncCount: Int { self.modify { $0.syncs } }

    public func write(_ message: ReceivedMessage) async throws {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(message.records.reduce(0) { $0 + $1.body.readableBytes * 4 / 3 + 160 } + message.attributes.utf8.count * message.records.count)
        Self.appendLines(of: message, to: &bytes)
        let ticket = try self.modify { state -> UInt64? in
            guard !state.closed else { throw CocoaError(.fileWriteUnknown) }
            do {
                try state.handle.write(contentsOf: bytes)
            } catch {
                // Foundation's error, said as the system's: "write of out.jsonl failed: No space left on device".
                let cause = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
                let code = cause.flatMap { $0.domain == NSPOSIXErrorDomain ? Int32($0.code) : nil } ?? EIO
                throw JSONLinesSinkError(path: self.url?.path ?? "-", operation: "write", errno: code)
            }
            state.lines += message.records.count
            return self.acksAreDurable ? state.commit.wrote(bytes.count) : nil
        }
        guard let ticket else { return }
        try await withCheckedThrowingContinuation { continuation in
            self.run(self.modify { $0.commit.wait(for: ticket, continuation) }, failure: nil)
        }
    }

    /// Resumes the writers a sync covered (or failed) and starts the next sync.
    private func run(_ actions: GroupCommit<CheckedContinuation<Void, any Error>>.Actions, failure: JSONLinesSinkError?) {
        for waiter in actions.resume {
            if let failure { waiter.resume(throwing: failure) } else { waiter.resume() }
        }
        guard actions.startSync != nil else { return }
        // fsync blocks for milliseconds: on the blocking-I/O pool, never on a cooperative or event-loop thread.
        let descriptor = self.fileDescriptor
        let path = self.url?.path ?? "-"
        NIOThreadPool.singleton.submit { _ in
            let started = ContinuousClock.now
            let error = fsync(descriptor) == 0 ? nil : JSONLinesSinkError(path: path, operation: "fsync", errno: errno)
            let elapsed = started.duration(to: .now).components
            self.syncDuration.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
            let next = self.modify { state in
                state.syncs += 1
                return state.commit.syncEnded(succeeded: error == nil)
            }
            self.run(next, failure: error)
        }
    }

    public func flush() async throws {
        try self.modify { state in
            guard self.url != nil, !state.closed else { return }
            try state.handle.synchronize()
        }
    }

    /// Flushes and closes the file; later writes fail.
    public func close() throws {
        try self.modify { state in
            guard self.url != nil, !state.closed else { return }
            state.closed = true
            try state.handle.synchronize()
            try state.handle.close()
        }
    }

    /// Every access to the file, under its lock: lines of one message stay together.
    private func modify<Value>(_ body: (inout State) throws -> Value) rethrows -> Value {
        try self.state.withLock { try body(&$0) }
    }

    /// One line per record. What the records of a message share (group, stream, receive time, client,
    /// attributes) is escaped once per message; a body of plain ASCII text is copied in runs between the bytes
    /// JSON escapes, without making a `String` of it.
    static func appendLines(of message: ReceivedMessage, to out: inout [UInt8]) {
        var head: [UInt8] = []
        head.append(contentsOf: #"{"group":"#.utf8)
        appendString(message.group, to: &head)
        head.append(contentsOf: #","stream":"#.utf8)
        appendString(message.stream, to: &head)
        head.append(contentsOf: #","dataTime":"#.utf8)
        var middle: [UInt8] = []
        middle.append(contentsOf: #","receivedAt":"#.utf8)
        appendDecimal(message.receivedAt, to: &middle)
        middle.append(contentsOf: #","client":"#.utf8)
        appendString(message.clientAddress, to: &middle)
        middle.append(contentsOf: #","attributes":"#.utf8)
        appendString(message.attributes, to: &middle)
        for record in message.records {
            out.append(contentsOf: head)
            appendDecimal(record.dataTime, to: &out)
            out.append(contentsOf: middle)
            if let attributes = record.attributes {
                out.append(contentsOf: #","recordAttributes":"#.utf8)
                appendString(attributes, to: &out)
            }
            out.append(contentsOf: #","body":"#.utf8)
            let ascii = record.body.withUnsafeReadableBytes { bytes in
                guard !bytes.contains(where: { $0 >= 0x80 }) else { return false }
                appendEscaped(bytes, to: &out)
                return true
            }
            if ascii {
                out.append(contentsOf: #","encoding":"utf8"}"#.utf8)
            } else if let text = String(validating: record.body.readableBytesView, as: UTF8.self) {
                appendString(text, to: &out)
                out.append(contentsOf: #","encoding":"utf8"}"#.utf8)
            } else {
                appendString(Data(record.body.readableBytesView).base64EncodedString(), to: &out)
                out.append(contentsOf: #","encoding":"base64"}"#.utf8)
            }
            out.append(UInt8(ascii: "\n"))
        }
    }

    static func appendDecimal(_ value: Int64, to out: inout [UInt8]) {
        var magnitude = value.magnitude
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // room for 20 digits, no allocation
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            for index in stride(from: count - 1, through: 0, by: -1) { out.append(buffer[index]) }
        }
    }

    /// `bytes` as a JSON string, quotes included: runs that need no escape are copied whole.
    static func appendEscaped(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var start = 0
        for index in 0..<bytes.count {
            let byte = bytes[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            if index > start { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<index])) }
            appendEscape(byte, to: &out)
            start = index + 1
        }
        if bytes.count > start { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start...])) }
        out.append(UInt8(ascii: "\""))
    }

    private static func appendEscape(_ byte: UInt8, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\\"))
        switch byte {
        case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "\n"): out.append(UInt8(ascii: "n"))
        case UInt8(ascii: "\r"): out.append(UInt8(ascii: "r"))
        case UInt8(ascii: "\t"): out.append(UInt8(ascii: "t"))
        default:
            out.append(contentsOf: "u00".utf8)
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0xF)])
        }
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    static func appendString(_ text: String, to out: inout [UInt8]) {
        var text = text
        text.withUTF8 { appendEscaped(UnsafeRawBufferPointer($0), to: &out) }
    }
}

/// A failed system call of a ``JSONLinesSink``, with the file and the error number.
public struct JSONLinesSinkError: Error, CustomStringConvertible {
    public var path: String
    public var operation: String
    public var errno: Int32

    public var description: String { "\(self.operation) of \(self.path) failed: \(String(cString: strerror(self.errno)))" }
}
