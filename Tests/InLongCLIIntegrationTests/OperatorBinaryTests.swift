import Foundation
import InLongDataProxy
import InLongDataProxyReceiver
import InLongTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What an operator sees from the built `inlong send` when its proxy refuses: one plain line naming the address
/// and the cause before anything else (told at the first look, not after a notice), the same cause when it gives
/// up, and a summary that says nothing was written.
@Suite(.timeLimit(.minutes(1)))
struct FirstFailureTests {
    @Test func aRefusedConnectIsSaidFirstInOnePlainLine() async throws {
        let inlong = try inlongExecutable()
        let refusing = ClosedPort()
        defer { withExtendedLifetime(refusing) {} }
        try await withTemporaryDirectory { directory in
            let lines = directory.appendingPathComponent("lines.txt").path
            #expect(FileManager.default.createFile(atPath: lines, contents: Data("one\ntwo\n".utf8)))
            let send = try ChildProcess(
                inlong,
                ["send", "--proxy", "\(refusing.endpoint)", "--group", "g", "--stream", "s", "--unreachable-timeout", "2", lines],
                logs: directory,
                name: "send"
            )
            let status = await send.waitForExit(timeout: .seconds(30))
            #expect(status == .exit(1), "\(send.output())")
            let errors = send.error().split(separator: "\n").map(String.init)
            let cause = "cannot connect to \(refusing.endpoint): connection refused"
            #expect(errors.first == cause, "\(send.output())")
            #expect(errors.last == "giving up after 2.0 seconds with no proxy reachable or answering: \(cause)", "\(send.output())")
            let summary = (try? String(contentsOfFile: directory.appendingPathComponent("send.stdout").path, encoding: .utf8)) ?? ""
            #expect(summary.contains("accepted 2 records (6 bytes), written 0 "), "\(summary)")
            #expect(summary.contains("failed 2 (notSent 2, possiblySent 0; shutDown after notConnected: 2)"), "\(summary)")
            // No socket library dump reaches the operator.
            #expect(!send.error().contains("SingleConnectionFailure") && !send.error().contains("errno"), "\(send.output())")
        }
    }
}

/// One rule for every listening address: a port that cannot be bound is fatal at once, and the error names the
/// address and the cause (a busy metrics port is never taken for the receiver's, and never silently skipped).
@Suite(.timeLimit(.minutes(1)))
struct ListeningAddressTests {
    /// A loopback port held by a listening socket for the test's duration.
    final class BusyPort {
        let descriptor: Int32
        let port: Int

        init() {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
            _ = listen(descriptor, 1)
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
            self.descriptor = descriptor
            self.port = Int(UInt16(bigEndian: address.sin_port))
        }

        deinit { close(self.descriptor) }
    }

    @Test func aBusyPortIsFatalAndNamed() async throws {
        let inlong = try inlongExecutable()
        let busy = BusyPort()
        try await withTemporaryDirectory { directory in
            let lines = directory.appendingPathComponent("lines.txt").path
            #expect(FileManager.default.createFile(atPath: lines, contents: Data("one\n".utf8)))
            let metrics = "127.0.0.1:\(busy.port)"
            let cases: [([String], String)] = [
                (["send", "--proxy", "127.0.0.1:1", "--group", "g", "--stream", "s", "--metrics", metrics, lines], "cannot serve metrics on \(metrics): address already in use"),
                (["receive", "--listen", "127.0.0.1:0", "--count-only", "--metrics", metrics], "cannot serve metrics on \(metrics): address already in use"),
                (
                    ["agent", "--path", directory.path + "/*.none", "--group", "g", "--stream", "s", "--proxy", "127.0.0.1:1",
                     "--state-dir", directory.appendingPathComponent("state").path, "--metrics", metrics],
                    "cannot serve metrics on \(metrics): address already in use"
                ),
                (["receive", "--listen", metrics, "--count-only"], "cannot listen on \(metrics): address already in use"),
                (
                    ["receive", "--listen", "127.0.0.1:0", "--count-only", "--manager-port", "\(busy.port)"],
                    "cannot listen on \(metrics) (the Manager endpoint): address already in use"
                ),
            ]
            for (index, (arguments, expected)) in cases.enumerated() {
                let child = try ChildProcess(inlong, arguments, logs: directory, name: "case\(index)")
                let status = await child.waitForExit(timeout: .seconds(30))
                #expect(status == .exit(1), "\(arguments[0]): \(child.output())")
                #expect(child.error().contains("Error: \(expected)"), "\(arguments): \(child.output())")
            }
        }
        withExtendedLifetime(busy) {}
    }
}

/// `inlong discover` prints one proxy per line for scripts, or with `--json` everything the Manager says.
@Suite(.timeLimit(.minutes(1)))
struct DiscoverOutputTests {
    @Test func jsonCarriesTheClusterTheLoadAndEachNode() async throws {
        let inlong = try inlongExecutable()
        var receiverConfiguration = DataProxyReceiver.Configuration.loopback
        var manager = DataProxyManagerServer.Configuration()
        manager.clusterID = 7
        manager.load = 35
        receiverConfiguration.manager = manager
        try await withReceiver(receiverConfiguration) { receiver in
            let url = try await receiver.manager!.baseURL()
            let port = try await receiver.port()
            try await withTemporaryDirectory { directory in
                let plain = try ChildProcess(inlong, ["discover", "--manager", url, "--group", "g"], logs: directory, name: "plain")
                #expect(await plain.waitForExit(timeout: .seconds(30)) == .exit(0), "\(plain.output())")
                let lines = (try? String(contentsOfFile: directory.appendingPathComponent("plain.stdout").path, encoding: .utf8)) ?? ""
                #expect(lines == "127.0.0.1:\(port)\n", "\(plain.output())")
                #expect(plain.error().contains("group g: cluster 7, 1 proxies"), "\(plain.output())")

                let json = try ChildProcess(inlong, ["discover", "--manager", url, "--group", "g", "--json"], logs: directory, name: "json")
                #expect(await json.waitForExit(timeout: .seconds(30)) == .exit(0), "\(json.output())")
                let data = FileManager.default.contents(atPath: directory.appendingPathComponent("json.stdout").path) ?? Data()
                let directoryReply = try JSONDecoder().decode(DataProxyClient.ProxyDirectory.self, from: data)
                #expect(directoryReply.group == "g")
                #expect(directoryReply.clusterID == 7)
                #expect(directoryReply.load == 35)
                #expect(directoryReply.nodes.map { "\($0.host):\($0.port)" } == ["127.0.0.1:\(port)"])
            }
        }
    }
}

/// `--check`: the effective settings printed and exit 0, or the error and exit 64, with nothing started.
@Suite(.timeLimit(.minutes(1)))
struct CheckTests {
    @Test func aConfigurationIsCheckedWithoutRunning() async throws {
        let inlong = try inlongExecutable()
        try await withTemporaryDirectory { directory in
            let good = directory.appendingPathComponent("good.yaml").path
            let bad = directory.appendingPathComponent("bad.yaml").path
            let body = "stateDirectory: state\nproxies: [\"127.0.0.1:1\"]\nsources: [{paths: [a.log], group: g, stream: s}]\n"
            #expect(FileManager.default.createFile(atPath: good, contents: Data((body + "shutdownTimeout: 5\n").utf8)))
            #expect(FileManager.default.createFile(atPath: bad, contents: Data((body + "shutdownTimout: 5\n").utf8)))

            let valid = try ChildProcess(inlong, ["agent", "--config", good, "--check"], logs: directory, name: "good")
            #expect(await valid.waitForExit(timeout: .seconds(30)) == .exit(0), "\(valid.output())")
            let printed = (try? String(contentsOfFile: directory.appendingPathComponent("good.stdout").path, encoding: .utf8)) ?? ""
            #expect(printed.contains("stateDirectory: \(directory.path)/state\n"), "\(printed)")
            #expect(printed.contains("shutdownTimeout: 5.0\n"), "\(printed)")
            #expect(printed.contains("proxies: 127.0.0.1:1\n"), "\(printed)")
            // Checked, not run: no state directory was made.
            #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("state").path))

            let invalid = try ChildProcess(inlong, ["agent", "--config", bad, "--check"], logs: directory, name: "bad")
            #expect(await invalid.waitForExit(timeout: .seconds(30)) == .exit(64), "\(invalid.output())")
            #expect(invalid.error().contains("unknown key 'shutdownTimout' (did you mean 'shutdownTimeout'?)"), "\(invalid.output())")

            let send = try ChildProcess(inlong, ["send", "--group", "g", "--stream", "s", "--proxy", "127.0.0.1:1", "--check"], logs: directory, name: "send")
            #expect(await send.waitForExit(timeout: .seconds(30)) == .exit(0), "\(send.output())")
            let sendPrinted = (try? String(contentsOfFile: directory.appendingPathComponent("send.stdout").path, encoding: .utf8)) ?? ""
            #expect(sendPrinted.hasPrefix("group: g\nstream: s\nproxies: 127.0.0.1:1\n"), "\(sendPrinted)")

            let spool = directory.appendingPathComponent("spool").path
            let spooled = try ChildProcess(
                inlong,
                ["send", "--group", "g", "--stream", "s", "--proxy", "127.0.0.1:1", "--spool", spool, "--spool-max-mib", "5", "--check"],
                logs: directory,
                name: "spooled"
            )
            #expect(await spooled.waitForExit(timeout: .seconds(30)) == .exit(0), "\(spooled.output())")
            let spooledPrinted = (try? String(contentsOfFile: directory.appendingPathComponent("spooled.stdout").path, encoding: .utf8)) ?? ""
            #expect(spooledPrinted.contains("spool.maxBytes: 5242880\n"), "\(spooledPrinted)")
            let unspooled = try ChildProcess(
                inlong, ["send", "--group", "g", "--stream", "s", "--proxy", "127.0.0.1:1", "--spool-max-mib", "5", "--check"], logs: directory, name: "unspooled"
            )
            #expect(await unspooled.waitForExit(timeout: .seconds(30)) == .exit(64), "\(unspooled.output())")
            #expect(unspooled.error().contains("--spool-max-mib needs --spool"), "\(unspooled.output())")

            // Manager TLS from the command line: shown by --check; a bad value is a usage error naming the setting.
            let caFile = directory.appendingPathComponent("ca.pem").path
            try TestCertificates.caPEM.write(toFile: caFile, atomically: true, encoding: .utf8)
            let manager = ["send", "--group", "g", "--stream", "s", "--manager", "https://127.0.0.1:1/x", "--manager-ca", caFile]
            let tls = try ChildProcess(inlong, manager + ["--manager-verify", "noHostname", "--check"], logs: directory, name: "tls")
            #expect(await tls.waitForExit(timeout: .seconds(30)) == .exit(0), "\(tls.output())")
            let tlsPrinted = (try? String(contentsOfFile: directory.appendingPathComponent("tls.stdout").path, encoding: .utf8)) ?? ""
            #expect(tlsPrinted.contains("manager.tls: verify noHostname, trusted roots given, client certificate none\n"), "\(tlsPrinted)")
            let badTLS = try ChildProcess(inlong, manager + ["--manager-verify", "ful", "--check"], logs: directory, name: "badtls")
            #expect(await badTLS.waitForExit(timeout: .seconds(30)) == .exit(64), "\(badTLS.output())")
            #expect(badTLS.error().contains("manager.tls.verify takes full, noHostname or none"), "\(badTLS.output())")

            // Nothing listens: the port below is only printed.
            let receive = try ChildProcess(
                inlong,
                ["receive", "--listen", "127.0.0.1:47123", "--count-only", "--ack-delay", "250ms", "--check"],
                logs: directory,
                name: "receive"
            )
            #expect(await receive.waitForExit(timeout: .seconds(30)) == .exit(0), "\(receive.output())")
            let receivePrinted = (try? String(contentsOfFile: directory.appendingPathComponent("receive.stdout").path, encoding: .utf8)) ?? ""
            #expect(receivePrinted.hasPrefix("host: 127.0.0.1\nport: 47123\n"), "\(receivePrinted)")
            #expect(receivePrinted.contains("faults.ackDelay: 0.25\n"), "\(receivePrinted)")
        }
    }
}

/// `inlong send` runs in a ServiceGroup: SIGINT or SIGTERM while it reads a pipe that stays open is a graceful
/// shutdown that stops reading, lets what was read be acked, and ends with the summary and exit 0.
@Suite(.timeLimit(.minutes(1)))
struct SendSignalTests {
    @Test(arguments: [SIGINT, SIGTERM])
    func aSignalStopsReadingAndWhatWasReadIsAcked(signal: Int32) async throws {
        let inlong = try inlongExecutable()
        try await withReceiver { receiver in
            let port = try await receiver.port()
            try await withTemporaryDirectory { directory in
                let input = Pipe()
                let send = try ChildProcess(
                    inlong,
                    ["send", "--proxy", "127.0.0.1:\(port)", "--group", "g", "--stream", "s", "--stats-json", directory.appendingPathComponent("stats.json").path],
                    // Exactly once is asserted: no request may time out and be sent again on a loaded machine.
                    environment: ["INLONG_CONNECTION_REQUEST_TIMEOUT": "120"],
                    input: input,
                    logs: directory,
                    name: "send"
                )
                input.fileHandleForWriting.write(Data((0..<100).map { "line \($0)\n" }.joined().utf8))
                #expect(await eventually { receiver.memorySink.recordCount == 100 }, "\(send.output())")
                send.signal(signal)
                #expect(await send.waitForExit(timeout: .seconds(30)) == .exit(0), "\(send.output())")
                try? input.fileHandleForWriting.close()
                let summary = (try? String(contentsOfFile: directory.appendingPathComponent("send.stdout").path, encoding: .utf8)) ?? ""
                #expect(summary.hasPrefix("interrupted: read 100 lines, accepted 100 records"), "\(summary)")
                #expect(summary.contains("acked 100, failed 0"), "\(summary)")
                #expect(receiver.memorySink.recordCount == 100)
            }
        }
    }
}
