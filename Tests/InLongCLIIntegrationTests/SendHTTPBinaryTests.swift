import Foundation
import InLongTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built `inlong send --http` into the built `inlong receive --http-port`: every line of a file arrives,
/// byte for byte, over DataProxy's HTTP API alone.
@Suite(.timeLimit(.minutes(3)))
struct SendHTTPBinaryTests {
    /// The HTTP port `inlong receive` announced on standard error (`..., HTTP 127.0.0.1:P`), once it did.
    static func announcedHTTPPort(_ receiver: ChildProcess) -> Int? {
        guard let line = receiver.error().split(separator: "\n").first(where: { $0.hasPrefix("listening on") }),
            let range = line.range(of: ", HTTP ")
        else { return nil }
        return line[range.upperBound...].split(separator: ":").last.flatMap { Int($0.prefix { $0.isNumber }) }
    }

    @Test func everyLineArrivesByteForByte() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let out = directory.appendingPathComponent("received.jsonl")
            let receiver = try ChildProcess(
                inlong,
                ["receive", "--listen", "127.0.0.1:0", "--http-port", "0", "--out", out.path],
                logs: directory,
                name: "receive"
            )
            defer { receiver.signal(SIGKILL) }
            #expect(await eventually { Self.announcedHTTPPort(receiver) != nil || !receiver.isRunning })
            let port = try #require(Self.announcedHTTPPort(receiver), "\(receiver.output())")

            // Characters the form escapes, spaces, UTF-8 and a long line among ordinary ones.
            let lines = (0..<20_000).map { index in
                index % 1_000 == 7 ? String(repeating: "long+line & more=% ", count: 500) + "\(index)" : "line \(index) a+b&c=d%e ü"
            }
            let file = directory.appendingPathComponent("lines.txt").path
            #expect(FileManager.default.createFile(atPath: file, contents: Data((lines.joined(separator: "\n") + "\n").utf8)))
            let send = try ChildProcess(
                inlong,
                ["send", "--http", "--proxy", "127.0.0.1:\(port)", "--group", "g", "--stream", "s", file],
                logs: directory,
                name: "send"
            )
            let status = await send.waitForExit(timeout: .seconds(120))
            #expect(status == .exit(0), "\(send.output())")
            receiver.signal(SIGTERM)
            #expect(await receiver.waitForExit(timeout: .seconds(60)) == .exit(0), "\(receiver.output())")
            let received = try receivedBodies(out)
            #expect(received.count == lines.count)
            #expect(received.sorted() == lines.sorted())
            #expect(receiver.error().contains("received \(lines.count) records"), "\(receiver.output())")
        }
    }
}
