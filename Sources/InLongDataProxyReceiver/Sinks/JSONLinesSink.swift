public import Foundation
import NIOCore
import Synchronization

/// A sink that writes one JSON object per record and line, to a file or to standard output.
///
/// ```json
/// {"group":"g","stream":"s","dataTime":1700000000000,"receivedAt":1700000000456,"client":"127.0.0.1:50312","attributes":"groupId=g&streamId=s","body":"hello","encoding":"utf8"}
/// ```
/// `encoding` is `utf8` when the body is valid UTF-8 (then `body` is that text) and `base64` otherwise.
/// `recordAttributes` is present when the record carries its own attributes. Each message's lines are written
/// with one system call before it is acked.
public final class JSONLinesSink: DataProxyReceiverSink {
    private struct State {
        var handle: FileHandle
        var lines = 0
        var closed = false
    }

    private let state: Mutex<State>
    /// The file written, or `nil` for standard output.
    public let url: URL?

    /// Writes to the file at `url`, created if needed; an existing file is truncated unless `append` is set.
    public init(url: URL, append: Bool = false) throws {
        let manager = FileManager.default
        if !append || !manager.fileExists(atPath: url.path) {
            guard manager.createFile(atPath: url.path, contents: nil) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: url.path])
            }
        }
        let handle = try FileHandle(forWritingTo: url)
        if append { try handle.seekToEnd() }
        self.url = url
        self.state = Mutex(State(handle: handle))
    }

    /// Writes to standard output.
    public init(standardOutput: Void = ()) {
        self.url = nil
        self.state = Mutex(State(handle: FileHandle.standardOutput))
    }

    /// Lines written so far.
    public var lineCount: Int { self.modify { $0.lines } }

    public func write(_ message: ReceivedMessage) async throws {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(message.records.reduce(0) { $0 + $1.body.readableBytes * 4 / 3 + 160 } + message.attributes.utf8.count * message.records.count)
        for record in message.records {
            Self.appendLine(record, of: message, to: &bytes)
        }
        try self.modify { state in
            guard !state.closed else { throw CocoaError(.fileWriteUnknown) }
            try state.handle.write(contentsOf: bytes)
            state.lines += message.records.count
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

    static func appendLine(_ record: ReceivedRecord, of message: ReceivedMessage, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"group":"#.utf8)
        appendString(message.group, to: &out)
        out.append(contentsOf: #","stream":"#.utf8)
        appendString(message.stream, to: &out)
        out.append(contentsOf: #","dataTime":"#.utf8)
        out.append(contentsOf: String(record.dataTime).utf8)
        out.append(contentsOf: #","receivedAt":"#.utf8)
        out.append(contentsOf: String(message.receivedAt).utf8)
        out.append(contentsOf: #","client":"#.utf8)
        appendString(message.clientAddress, to: &out)
        out.append(contentsOf: #","attributes":"#.utf8)
        appendString(message.attributes, to: &out)
        if let attributes = record.attributes {
            out.append(contentsOf: #","recordAttributes":"#.utf8)
            appendString(attributes, to: &out)
        }
        out.append(contentsOf: #","body":"#.utf8)
        if let text = String(validating: record.body.readableBytesView, as: UTF8.self) {
            appendString(text, to: &out)
            out.append(contentsOf: #","encoding":"utf8"}"#.utf8)
        } else {
            appendString(Data(record.body.readableBytesView).base64EncodedString(), to: &out)
            out.append(contentsOf: #","encoding":"base64"}"#.utf8)
        }
        out.append(UInt8(ascii: "\n"))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: Array(#"\u00"#.utf8))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
