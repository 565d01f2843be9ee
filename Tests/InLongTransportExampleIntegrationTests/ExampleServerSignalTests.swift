import Foundation
import InLongTestUtils
import InLongTransport
import Testing

@testable import InLongTransportExample

#if canImport(Glibc)
import Glibc
#endif

/// The example server, run as built: SIGTERM and SIGINT stop it with exit 0, idle and after serving, with its
/// closing line printed (a graceful stop, not a kill).
@Suite(.timeLimit(.minutes(1)))
struct ExampleServerSignalTests {
    @Test(arguments: [SIGTERM, SIGINT], [false, true])
    func aSignalStopsTheServerCleanly(signal: Int32, afterServing: Bool) async throws {
        let example = try builtExecutable("InLongTransportExample")
        try await withTemporaryDirectory { directory in
            let server = try ChildProcess(example, ["server", "--listen", "127.0.0.1:0"], logs: directory, name: "server")
            let output = directory.appendingPathComponent("server.stdout")
            // "listening on [IPv4]127.0.0.1/127.0.0.1:PORT"
            var port: Int?
            try #require(
                await eventually(timeout: .seconds(20)) {
                    let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
                    port = text.split(separator: "\n").first.flatMap { $0.split(separator: ":").last }.flatMap { Int($0) }
                    return port != nil
                },
                "\(server.output())"
            )
            let served = afterServing ? 500 : 0
            if afterServing, let port {
                let result = try await runExampleClient(endpoint: Endpoint(host: "127.0.0.1", port: port), requests: served, concurrency: 16)
                #expect(result.matched == served)
            }
            server.signal(signal)
            #expect(await server.waitForExit(timeout: .seconds(30)) == .exit(0), "\(server.output())")
            let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
            #expect(text.hasSuffix("answered \(served) requests\n"), "\(server.output())")
        }
    }
}
