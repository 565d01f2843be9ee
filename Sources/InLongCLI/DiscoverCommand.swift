import ArgumentParser
import Foundation
import InLongDataProxy
import InLongTransport
import Logging

struct DiscoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "discover",
        abstract: "Print the proxy list the Manager returns for a group.",
        usage: "inlong discover [<options>] --group <group>",
        discussion: """
            Example:
              inlong discover --manager "$MANAGER" --group g

            $MANAGER stands for the Manager's proxy-list URL, e.g.
            http://127.0.0.1:8083/inlong/manager/openapi/dataproxy/getIpList
            """
    )

    @Option(help: "The Manager's proxy-list URL, without the group id.")
    var manager: String?

    @Option(help: "The InLong group.")
    var group: String

    @Option(help: "Manager Basic auth as secretId:secretKey (better: INLONG_MANAGER_AUTH or --config).")
    var auth: String?

    @Option(help: "The tenant header.")
    var tenant: String?

    @Option(help: "A JSON or YAML file of client settings (manager.url, manager.auth, ...); INLONG_* environment variables override it, flags override both.")
    var config: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .warning

    @Flag(help: "Print everything the Manager says (cluster id, load, each node) as JSON.")
    var json = false

    /// The Manager to ask, from flags, `INLONG_*` variables and `--config`, as `send` reads them.
    func managerConfiguration(environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> DataProxyClient.Configuration.Manager {
        var arguments: [String] = []
        if let manager = self.manager { arguments += ["--manager", manager] }
        if let auth = self.auth { arguments += ["--auth", auth] }
        if let tenant = self.tenant { arguments += ["--tenant", tenant] }
        let target = try TargetOptions.parse(arguments)
        let missing = ValidationError("give --manager URL (or INLONG_MANAGER_URL, or manager.url in --config FILE)")
        let settings: DataProxyClient.Configuration
        do {
            settings = try await readClientConfiguration(file: self.config, target: target, group: self.group, environment: environment)
        } catch let error as ValidationError where error.message.hasPrefix("give --proxy") {
            throw missing
        }
        guard var configuration = settings.manager else { throw missing }
        configuration.cacheFile = nil
        configuration.attempts = 1
        return configuration
    }

    func run() async throws {
        let configuration = try await self.managerConfiguration()
        var logger = Logger(label: "inlong.discover")
        logger.logLevel = self.logLevel
        do {
            let directory = try await DataProxyClient.discoverProxyDirectory(manager: configuration, group: self.group, logger: logger)
            if self.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(directory), as: UTF8.self))
            } else {
                // One proxy per line, for scripts; the cluster and loads on standard error.
                let cluster = directory.clusterID.map { "cluster \($0)" } ?? "no cluster id"
                FileHandle.standardError.write(Data("group \(self.group): \(cluster), \(directory.nodes.count) proxies\n".utf8))
                for node in directory.nodes {
                    print("\(node.host):\(node.port)")
                }
            }
        } catch {
            throw CLIError("cannot ask the Manager at \(configuration.url) for group \(self.group)'s proxies: \(error)")
        }
    }
}
