import ArgumentParser
import Foundation
import InLongDataProxy
import InLongTransport
import Logging
import NIOCore

/// Options that say where records go.
struct TargetOptions: ParsableArguments {
    @Option(name: .customLong("proxy"), help: "A DataProxy host:port (repeat for several).")
    var proxies: [String] = []

    @Option(help: "The Manager's proxy-list URL, without the group id.")
    var manager: String?

    @Option(help: "Manager Basic auth as secretId:secretKey.")
    var auth: String?

    @Option(help: "The tenant header for the Manager.")
    var tenant: String?

    func configuration(group: String) throws -> DataProxyClient.Configuration {
        if let manager = self.manager {
            var managerConfiguration = DataProxyClient.Manager(url: manager, groups: [group])
            managerConfiguration.credentials = try self.credentials()
            managerConfiguration.tenant = self.tenant
            var configuration = DataProxyClient.Configuration(manager: managerConfiguration)
            configuration.proxies = try self.proxies.map(parseEndpoint)
            return configuration
        }
        guard !self.proxies.isEmpty else { throw CLIError("give --proxy host:port or --manager URL") }
        return DataProxyClient.Configuration(proxies: try self.proxies.map(parseEndpoint))
    }

    func credentials() throws -> (secretID: String, secretKey: String)? {
        guard let auth = self.auth else { return nil }
        let parts = auth.split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { throw CLIError("--auth takes secretId:secretKey") }
        return (String(parts[0]), String(parts[1]))
    }
}

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send one record per line of the files (or standard input) through the SDK.",
        discussion: """
            Examples:
              inlong send --group g --stream s --proxy 127.0.0.1:46801 app.log
              tail -F app.log | inlong send --group g --stream s --manager http://manager:8083/inlong/manager/openapi/dataproxy/getIpList
            """
    )

    @Option(help: "The InLong group.")
    var group: String

    @Option(help: "The InLong stream.")
    var stream: String

    @OptionGroup var target: TargetOptions

    @Flag(help: "Do not compress batches.")
    var noCompression = false

    @Argument(help: "Files to send; standard input when none.")
    var files: [String] = []

    func run() async throws {
        var configuration = try self.target.configuration(group: self.group)
        if self.noCompression { configuration.batching.compressionThreshold = nil }
        let sources = self.files.isEmpty ? ["-"] : self.files
        for file in sources where file != "-" && !FileManager.default.isReadableFile(atPath: file) {
            throw CLIError("cannot read \(file)")
        }
        let outcome = try await sendLines(configuration: configuration, group: self.group, stream: self.stream) { emit in
            for file in sources {
                let handle = file == "-" ? FileHandle.standardInput : FileHandle(forReadingAtPath: file)!
                try await forEachLineChunk(handle, emit)
            }
        }
        print(outcome.summary)
        if outcome.statistics.failed > 0 || outcome.statistics.acked != outcome.statistics.accepted {
            throw ExitCode(1)
        }
    }
}

/// Reads a file in 1 MiB chunks and hands its lines (without the newline) in batches, as slices of the chunk.
/// A line longer than `maxLineLength` ends the read with an error.
func forEachLineChunk(
    _ handle: FileHandle,
    maxLineLength: Int = 4 << 20,
    _ emit: ([ByteBuffer]) async throws -> Void
) async throws {
    let descriptor = handle.fileDescriptor
    var carry = ByteBuffer()
    var lines: [ByteBuffer] = []
    while true {
        var buffer = ByteBufferAllocator().buffer(capacity: carry.readableBytes + (1 << 20))
        buffer.writeImmutableBuffer(carry)
        let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1 << 20) { destination in
            while true {
                let count = read(descriptor, destination.baseAddress, destination.count)
                if count >= 0 { return count }
                if errno != EINTR { throw CLIError("cannot read: \(String(cString: strerror(errno)))") }
            }
        }
        if count == 0 { break }
        // Line ends found with memchr over the chunk's bytes; the lines share its storage.
        lines.removeAll(keepingCapacity: true)
        let consumed = buffer.withUnsafeReadableBytes { bytes -> Int in
            guard let base = bytes.baseAddress else { return 0 }
            var start = 0
            while start < bytes.count, let found = memchr(base + start, Int32(UInt8(ascii: "\n")), bytes.count - start) {
                let newline = base.distance(to: UnsafeRawPointer(found))
                var end = newline
                if end > start, bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                if end > start { lines.append(buffer.getSlice(at: buffer.readerIndex + start, length: end - start)!) }
                start = newline + 1
            }
            return start
        }
        buffer.moveReaderIndex(forwardBy: consumed)
        // A line no frame can carry is an error, not a reason to read the rest of the file into memory.
        guard buffer.readableBytes <= maxLineLength else {
            throw CLIError("a line is longer than \(maxLineLength) bytes (records must fit a frame)")
        }
        carry = buffer
        if !lines.isEmpty { try await emit(lines) }
    }
    if carry.readableBytes > 0 { try await emit([carry]) }
}

struct SendOutcome {
    var statistics: DataProxyClientStatistics
    var seconds: Double
    var bytes: Int

    var summary: String {
        let statistics = self.statistics
        return """
            sent \(statistics.accepted) records (\(self.bytes) bytes) in \(String(format: "%.2f", self.seconds)) s: \
            acked \(statistics.acked), failed \(statistics.failed)\(failureSummary(statistics)); \
            \(formatRate(Double(statistics.acked), seconds: self.seconds))records/s, \(megabytes(self.bytes, seconds: self.seconds)); \
            ack latency p50 \(milliseconds(statistics.ackLatencyP50)), p99 \(milliseconds(statistics.ackLatencyP99)); \
            retries \(statistics.retries)
            """
    }
}

/// Runs a client, feeds it with `produce`, waits for every ack, and reports.
func sendLines(
    configuration: DataProxyClient.Configuration,
    group: String,
    stream: String,
    produce: (_ emit: ([ByteBuffer]) async throws -> Void) async throws -> Void
) async throws -> SendOutcome {
    var logger = Logger(label: "inlong.send")
    logger.logLevel = .warning
    let start = ContinuousClock.now
    var bytes = 0
    let statistics = try await withDataProxyClient(configuration: configuration, logger: logger, closeDeadline: .seconds(60)) { client in
        let progress = Progress {
            let statistics = client.statistics()
            return "accepted \(statistics.accepted)  acked \(statistics.acked)  failed \(statistics.failed)  held \(statistics.heldRecords)"
        }
        defer { progress.finish() }
        do {
            try await produce { lines in
                bytes += lines.reduce(0) { $0 + $1.readableBytes }
                try await client.send(contentsOf: lines, group: group, stream: stream)
            }
        } catch let error as DataProxyError {
            throw CLIError("\(error)")
        }
        _ = await client.flush(timeout: .seconds(300))
        return client.statistics()
    }
    let seconds = secondsSince(start)
    return SendOutcome(statistics: statistics, seconds: seconds, bytes: bytes)
}

struct DiscoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "discover",
        abstract: "Print the proxy list the Manager returns for a group.",
        discussion: """
            Example:
              inlong discover --manager http://127.0.0.1:8083/inlong/manager/openapi/dataproxy/getIpList --group g
            """
    )

    @Option(help: "The Manager's proxy-list URL, without the group id.")
    var manager: String

    @Option(help: "The InLong group.")
    var group: String

    @Option(help: "Manager Basic auth as secretId:secretKey.")
    var auth: String?

    @Option(help: "The tenant header.")
    var tenant: String?

    func run() async throws {
        var configuration = DataProxyClient.Manager(url: self.manager, groups: [self.group])
        configuration.credentials = try TargetOptions.parse(self.auth.map { ["--auth", $0] } ?? []).credentials()
        configuration.tenant = self.tenant
        configuration.cacheFile = nil
        configuration.attempts = 1
        do {
            let proxies = try await DataProxyClient.discoverProxies(manager: configuration, group: self.group)
            for proxy in proxies { print("\(proxy.host):\(proxy.port)") }
        } catch {
            throw CLIError("\(error)")
        }
    }
}
