import Foundation
import InLongWire
import HTTPTypes
import Hummingbird
import NIOCore

extension DataProxyManagerServer {
    /// The agent endpoints of `board`, behind the same credentials and tenant as the proxy list.
    func route(_ board: AgentTaskBoard, on router: Router<BasicRequestContext>) {
        router.post("\(AgentTaskBoard.taskPath)") { request, _ -> Response in
            if let refused = self.refusal(request) { return refused }
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            return Self.agentJSON(board.answerTaskRequest(String(buffer: body), content: await board.readFile()))
        }
        router.post("\(AgentTaskBoard.heartbeatPath)") { request, _ -> Response in
            if let refused = self.refusal(request) { return refused }
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            return Self.agentJSON(board.answerHeartbeat(String(buffer: body)))
        }
    }

    /// The answer to a request without the credentials or tenant required, or `nil`.
    private func refusal(_ request: Request) -> Response? {
        if let credentials = self.configuration.credentials {
            let expected = ManagerAuthorization.basic(secretID: credentials.secretID, secretKey: credentials.secretKey)
            guard request.headers[.authorization] == expected else {
                return Self.agentJSON(#"{"success":false,"errMsg":"authentication failed","data":null}"#, status: .unauthorized)
            }
        }
        if let tenant = self.configuration.requiredTenant {
            guard let name = HTTPField.Name("tenant"), request.headers[name] == tenant else {
                return Self.agentJSON(#"{"success":false,"errMsg":"tenant is required","data":null}"#, status: .forbidden)
            }
        }
        return nil
    }

    private static func agentJSON(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    /// The Manager's address (without any path), once it listens: what an agent is given.
    public func managerAddress() async throws -> String {
        ManagerTaskPaths.base(try await self.baseURL())
    }
}

/// Cuts a Manager URL to its address.
enum ManagerTaskPaths {
    static func base(_ url: String) -> String {
        guard let range = url.range(of: "/inlong/manager/") else { return url }
        return String(url[..<range.lowerBound])
    }
}
