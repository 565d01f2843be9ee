// Reads every delivery report: each names its records by id, and every record is in exactly one.
// snippet.show
import InLongDataProxy
import InLongTransport

let client = DataProxyClient(configuration: .init(proxies: [Endpoint(host: "127.0.0.1", port: 46801)]))
let reports = Task {
    for await report in client.deliveryReports() {
        switch report.outcome {
        case .acked(let ack):
            print("acked \(report.records) by \(ack.proxy)")
        case .failed(let error):
            // error.persistence: notSent (safe to resend) or possiblySent (may duplicate)
            print("failed \(report.records): \(error); bodies: \(report.failedRecords.count)")
        }
    }
}
try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await client.run() }
    try await client.send("hello", group: "g", stream: "s")
    client.close(deadline: .seconds(5))
    try await group.waitForAll()
}
await reports.value
// snippet.end
