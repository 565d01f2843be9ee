import Foundation
import InLongTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built `inlong send` into the built `inlong receive` over TCP: the whole lines of each read go to the client
/// as one run, walked in place; every line still arrives byte for byte, in order, without its line end.
@Suite(.timeLimit(.minutes(3)))
struct SendBinaryTests {
    /// The TCP port `inlong receive` announced on standard error (`listening on 127.0.0.1:P...`), once it did.
    static func announcedPort(_ receiver: ChildProcess) -> Int? {
        guard let line = receiver.error().split(separator: "\n").first(where: { $0.hasPrefix("listening on") }) else { return nil }
        let address = line.dropFirst("listening on ".count).prefix { $0 != "," }
        return address.split(separator: ":").last.flatMap { Int($0) }
    }

    @Test func everyLineArrivesByteForByteInOrder() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let out = directory.appendingPathComponent("received.jsonl")
            let receiver = try ChildProcess(inlong, ["receive", "--listen", "127.0.0.1:0", "--out", out.path], logs: directory, name: "receive")
            defer { receiver.signal(SIGKILL) }
            #expect(await eventually { Self.announcedPort(receiver) != nil || !receiver.isRunning })
            let port = try #require(Self.announcedPort(receiver), "\(receiver.output())")

            // Several MiB, so that lines cross reads; CRLF ends, empty lines, UTF-8 and lines of up to 8 KB.
            let lines = (0..<60_000).map { index in
                "line \(index) ü " + String(repeating: "abc\t\"{}", count: index % 997 == 0 ? 1_000 : index % 20)
            }
            var text = ""
            for (index, line) in lines.enumerated() {
                text += line + (index % 4 == 0 ? "\r\n" : "\n")
                if index % 500 == 0 { text += "\n" }
            }
            let file = directory.appendingPathComponent("lines.txt").path
            #expect(FileManager.default.createFile(atPath: file, contents: Data(text.utf8)))
            let send = try ChildProcess(inlong, ["send", "--proxy", "127.0.0.1:\(port)", "--group", "g", "--stream", "s", file], logs: directory, name: "send")
            let status = await send.waitForExit(timeout: .seconds(120))
            #expect(status == .exit(0), "\(send.output())")
            #expect(send.output().contains("read \(lines.count) lines"), "\(send.output())")
            #expect(send.output().contains("120 empty lines left out"), "\(send.output())")
            receiver.signal(SIGTERM)
            #expect(await receiver.waitForExit(timeout: .seconds(60)) == .exit(0), "\(receiver.output())")
            let received = try receivedBodies(out)
            #expect(received.count == lines.count)
            #expect(received == lines)
        }
    }
}
