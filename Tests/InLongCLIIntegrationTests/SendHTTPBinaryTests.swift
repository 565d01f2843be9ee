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
            let range = line.range(of: ", HTTP ") ?? line.range(of: ", HTTPS ")
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

    /// `inlong receive --http-port --http-cert --http-key` serves HTTPS; `inlong send --proxy-ca` trusting its CA
    /// delivers every line byte for byte; `inlong send --https` trusting only the system's roots delivers nothing and
    /// says which address failed and why.
    @Test func httpsDeliversToATrustedServerOnly() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let files = (ca: directory.appendingPathComponent("ca.pem").path, cert: directory.appendingPathComponent("server.pem").path, key: directory.appendingPathComponent("server.key").path)
            try TestCertificates.caPEM.write(toFile: files.ca, atomically: true, encoding: .utf8)
            try TestCertificates.serverCertificatePEM.write(toFile: files.cert, atomically: true, encoding: .utf8)
            try TestCertificates.serverKeyPEM.write(toFile: files.key, atomically: true, encoding: .utf8)
            let out = directory.appendingPathComponent("received.jsonl")
            let receiver = try ChildProcess(
                inlong,
                ["receive", "--listen", "127.0.0.1:0", "--http-port", "0", "--http-cert", files.cert, "--http-key", files.key, "--out", out.path],
                logs: directory,
                name: "receive"
            )
            defer { receiver.signal(SIGKILL) }
            #expect(await eventually { Self.announcedHTTPPort(receiver) != nil || !receiver.isRunning })
            let port = try #require(Self.announcedHTTPPort(receiver), "\(receiver.output())")
            #expect(receiver.error().contains(", HTTPS 127.0.0.1:\(port)"), "\(receiver.output())")

            let lines = (0..<5_000).map { "line \($0) a+b&c=d%e ü" }
            let file = directory.appendingPathComponent("lines.txt").path
            #expect(FileManager.default.createFile(atPath: file, contents: Data((lines.joined(separator: "\n") + "\n").utf8)))
            let send = try ChildProcess(
                inlong,
                ["send", "--proxy-ca", files.ca, "--proxy", "127.0.0.1:\(port)", "--group", "g", "--stream", "s", file],
                logs: directory,
                name: "send"
            )
            #expect(await send.waitForExit(timeout: .seconds(120)) == .exit(0), "\(send.output())")

            // The system's roots do not hold the test CA: nothing is sent, and the operator reads why.
            let untrusting = try ChildProcess(
                inlong,
                ["send", "--https", "--proxy", "127.0.0.1:\(port)", "--group", "g", "--stream", "s", "--unreachable-timeout", "10", file],
                logs: directory,
                name: "untrusting"
            )
            #expect(await untrusting.waitForExit(timeout: .seconds(120)) == .exit(1), "\(untrusting.output())")
            let cause = "cannot connect to 127.0.0.1:\(port): TLS handshake failed: certificate verify failed"
            // Said as the cause, or with the giving up when that came first on a loaded machine.
            #expect(untrusting.error().split(separator: "\n").contains { $0 == cause || $0.hasSuffix("answering: \(cause)") }, "\(untrusting.output())")

            receiver.signal(SIGTERM)
            #expect(await receiver.waitForExit(timeout: .seconds(60)) == .exit(0), "\(receiver.output())")
            let received = try receivedBodies(out)
            #expect(received.count == lines.count)
            #expect(received.sorted() == lines.sorted())
        }
    }

    /// `inlong receive --manager-port --http-port` lists its HTTP port as the HTTP node of every group;
    /// `inlong send --http --manager URL` asks for HTTP nodes and delivers every line there, byte for byte, none
    /// over TCP.
    @Test func theManagersHTTPNodeIsUsed() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let out = directory.appendingPathComponent("received.jsonl")
            let receiver = try ChildProcess(
                inlong,
                ["receive", "--listen", "127.0.0.1:0", "--manager-port", "0", "--http-port", "0", "--out", out.path],
                logs: directory,
                name: "receive"
            )
            defer { receiver.signal(SIGKILL) }
            #expect(await eventually { Self.announcedHTTPPort(receiver) != nil || !receiver.isRunning })
            _ = try #require(Self.announcedHTTPPort(receiver), "\(receiver.output())")
            let announced = receiver.error()
            let start = try #require(announced.range(of: "Manager endpoint ")?.upperBound, "\(receiver.output())")
            let end = try #require(announced[start...].range(of: "/{groupId}")?.lowerBound, "\(receiver.output())")
            let manager = String(announced[start..<end])

            let lines = (0..<5_000).map { "line \($0) a+b&c=d%e ü" }
            let file = directory.appendingPathComponent("lines.txt").path
            #expect(FileManager.default.createFile(atPath: file, contents: Data((lines.joined(separator: "\n") + "\n").utf8)))
            let send = try ChildProcess(
                inlong,
                ["send", "--http", "--manager", manager, "--group", "g", "--stream", "s", file],
                logs: directory,
                name: "send"
            )
            #expect(await send.waitForExit(timeout: .seconds(120)) == .exit(0), "\(send.output())")
            receiver.signal(SIGTERM)
            #expect(await receiver.waitForExit(timeout: .seconds(60)) == .exit(0), "\(receiver.output())")
            let received = try receivedBodies(out)
            #expect(received.count == lines.count)
            #expect(received.sorted() == lines.sorted())
            // Over HTTP only: the receiver's TCP port took no connection.
            #expect(receiver.error().contains("from 0 connections"), "\(receiver.output())")
        }
    }
}
