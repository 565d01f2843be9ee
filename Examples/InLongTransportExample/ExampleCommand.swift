// InLongTransport carrying a protocol that has nothing to do with InLong: JSON objects, one per line, requests
// `{"Uid": "...", "Val": "..."}` answered by `{"Uid": "...", "Val": "server: hello, ...", "Ts": "..."}`, matched by
// `Uid` (answers may come out of order).
//
//     swift run InLongTransportExample server --listen 127.0.0.1:7000
//     swift run InLongTransportExample client --connect 127.0.0.1:7000 --requests 10000 --concurrency 64

import ArgumentParser
import Foundation
import InLongTransport
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

@main
struct ExampleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "InLongTransportExample",
        abstract: "A JSON-lines request/response protocol over InLongTransport, server and client.",
        subcommands: [Server.self, Client.self]
    )

    struct Server: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Answer requests until SIGINT or SIGTERM.")

        @Option(help: "The address to listen on, host:port.")
        var listen = "127.0.0.1:7000"

        func run() async throws {
            guard let endpoint = Endpoint(self.listen) else { throw ValidationError("'\(self.listen)' is not host:port") }
            let server = makeExampleServer(host: endpoint.host, port: endpoint.port)
            // SIGTERM and SIGINT shut the group down gracefully: the server answers what it holds, then stops.
            let services = ServiceGroup(
                configuration: .init(
                    services: [server],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: Logger(label: "InLongTransportExample")
                )
            )
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await services.run() }
                print("listening on \(try await server.localAddress())")
                fflush(nil)  // at once, also when the output is a pipe or a file
            }
            print("answered \(server.statistics().requestsHandled) requests")
        }
    }

    struct Client: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send requests and check every answer; exits non-zero if any did not match."
        )

        @Option(help: "The server, host:port.")
        var connect = "127.0.0.1:7000"
        @Option(help: "Requests to send.")
        var requests = 10_000
        @Option(help: "Requests in flight at once.")
        var concurrency = 64

        func run() async throws {
            guard let endpoint = Endpoint(self.connect) else { throw ValidationError("'\(self.connect)' is not host:port") }
            let start = ContinuousClock.now
            let result = try await runExampleClient(endpoint: endpoint, requests: self.requests, concurrency: self.concurrency)
            let seconds = (ContinuousClock.now - start) / .seconds(1)
            print("\(result.matched) of \(self.requests) answers matched, \(result.failed) failed or mismatched, in \(String(format: "%.2f", seconds)) s")
            if result.failed > 0 || result.matched != self.requests { throw ExitCode.failure }
        }
    }
}

/// The server: answers each request with a greeting and a timestamp.
func makeExampleServer(host: String, port: Int) -> PersistentServer<ExampleServerCodec> {
    let timestamps = ISO8601Timestamps()
    return PersistentServer(codec: ExampleServerCodec(), configuration: .init(host: host, port: port)) { request, responder in
        let answer = ExampleAnswer(
            Uid: request.Uid,
            Val: "server: hello, \(request.Val)",
            Ts: timestamps.string(for: Date())
        )
        try? await responder.respond(answer)
    }
}

/// Sends `requests` requests, `concurrency` at a time, over one persistent connection; counts the answers whose
/// `Uid` and `Val` match their request.
func runExampleClient(endpoint: Endpoint, requests: Int, concurrency: Int) async throws -> (matched: Int, failed: Int) {
    var configuration = PersistentConnection<ExampleClientCodec>.Configuration(endpoints: [endpoint])
    configuration.heartbeatInterval = nil
    configuration.connectTimeout = .seconds(5)
    // A one-off run: a server that cannot be reached, or goes away, ends it with an error.
    configuration.reconnect = false
    let connection = PersistentConnection(codec: ExampleClientCodec(), configuration: configuration)
    return try await withThrowingTaskGroup(of: Void.self) { service in
        service.addTask { try await connection.run() }
        defer { connection.close() }
        for await state in connection.connectivityStates() {
            if state == .ready { break }
            if state == .shutdown { throw TransportError(.notConnected, endpoint: endpoint) }
        }
        var matched = 0
        var failed = 0
        try await withThrowingTaskGroup(of: Bool.self) { group in
            var next = 0
            func startOne() {
                let index = next
                next += 1
                group.addTask {
                    let request = ExampleRequest(Uid: "req-\(index)", Val: "request \(index)")
                    guard let answer = try? await connection.request(request, timeout: .seconds(30)) else { return false }
                    return answer.Uid == request.Uid && answer.Val == "server: hello, \(request.Val)" && !answer.Ts.isEmpty
                }
            }
            for _ in 0..<min(max(concurrency, 1), requests) { startOne() }
            while let ok = try await group.next() {
                if ok { matched += 1 } else { failed += 1 }
                if next < requests { startOne() }
            }
        }
        connection.close()
        try await service.next()
        return (matched, failed)
    }
}
