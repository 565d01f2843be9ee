import ArgumentParser
import Foundation
import InLongAgent
import InLongDataProxy
import InLongWire
import Logging
import UnixSignals

/// `inlong agent --manager URL` without local sources: the Manager gives the tasks.
struct AgentTaskOptions: ParsableArguments {
    @Option(help: "With --manager and no --path or --config: the agent cluster the Manager knows this agent in (default: default).")
    var clusterName = "default"

    @Option(help: "With --manager and no --path or --config: seconds between task requests to the Manager (default 10).")
    var taskInterval: Double = 10

    @Option(help: "With --manager and no --path or --config: seconds between heartbeats to the Manager (default 10).")
    var heartbeatInterval: Double = 10

    @Option(help: "With --manager and no --path or --config: the agent's address as the Manager knows it (default: the first IPv4 address of an interface that is up).")
    var agentIp: String?

    @Option(help: "With --manager and no --path or --config: seconds the Manager may go without answering before /health answers 503 naming it (default 60; the tasks running go on).")
    var managerUnreachableTimeout: Double = 60
}

extension AgentCommand {
    /// The Manager's proxy-list path, added to a `--manager` given as an address alone.
    static let proxyListPath = "/inlong/manager/openapi/dataproxy/getIpList"

    /// The configuration of an agent whose tasks come from the Manager: no sources of its own, and proxies found
    /// through the Manager for each task's group.
    func managerTaskConfiguration() async throws -> AgentConfiguration {
        guard var manager = self.target.manager else { throw ValidationError("give --config FILE, or --path GLOB with --group and --stream, or --manager URL") }
        if !manager.contains("/inlong/manager/") {
            while manager.hasSuffix("/") { manager.removeLast() }
            manager += Self.proxyListPath
        }
        var target = self.target
        target.manager = manager
        // The group is a stand-in: each task's group is asked for its own proxies.
        var client = try await readClientConfiguration(file: nil, target: target, group: "inlong_agent", keys: AgentConfigurationFile.settingKeys)
        client.manager?.groups = []
        if self.noCompression { client.batching.compressionThreshold = nil }
        if client.manager?.cacheFile == nil { client.manager?.cacheFile = AgentConfiguration.proxyCacheFile(in: self.stateDirectory) }
        guard Duration(settingSeconds: self.tasks.taskInterval).map({ $0 > .zero }) == true,
            Duration(settingSeconds: self.tasks.heartbeatInterval).map({ $0 > .zero }) == true
        else { throw ValidationError("--task-interval and --heartbeat-interval take seconds") }
        guard Duration(settingSeconds: self.tasks.managerUnreachableTimeout).map({ $0 > .zero }) == true else {
            throw ValidationError("--manager-unreachable-timeout takes seconds")
        }
        return AgentConfiguration(sources: [], stateDirectory: self.stateDirectory, client: client)
    }

    /// The fetcher of the Manager's tasks, when the agent has no sources of its own.
    func managerTaskFetcher(_ configuration: AgentConfiguration, agent: Agent, logger: Logger) -> ManagerTaskFetcher? {
        guard configuration.sources.isEmpty, let manager = configuration.client.manager else { return nil }
        var fetcher = ManagerTaskFetcher.Configuration(manager: manager)
        fetcher.clusterName = self.tasks.clusterName
        fetcher.fetchInterval = Duration(settingSeconds: self.tasks.taskInterval) ?? .seconds(10)
        fetcher.heartbeatInterval = Duration(settingSeconds: self.tasks.heartbeatInterval) ?? .seconds(10)
        if let ip = self.tasks.agentIp { fetcher.ip = ip }
        fetcher.unreachableTimeout = Duration(settingSeconds: self.tasks.managerUnreachableTimeout) ?? .seconds(60)
        return ManagerTaskFetcher(agent: agent, configuration: fetcher, logger: logger)
    }

    /// On each SIGHUP, reads the `--config` file again and applies its sources: sources added start, sources removed
    /// stop, sources changed are replaced; a file that cannot be read changes nothing. Other settings keep their
    /// values until a restart. The signal is trapped before this returns (an untrapped SIGHUP ends the process).
    func reloadOnHangup(agent: Agent, logger: Logger) async -> Task<Void, Never>? {
        guard let file = self.config else { return nil }
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        return Task {
            for await _ in hangups {
                let configuration: AgentConfiguration
                do {
                    configuration = try AgentConfigurationFile.load(path: file)
                } catch {
                    FileHandle.standardError.write(Data("agent: SIGHUP: \(file) not applied: \(error)\n".utf8))
                    continue
                }
                let tasks = AgentTask.local(configuration.sources)
                let rejected = agent.apply(tasks: tasks)
                let problems = rejected.map { "; left out: \($0.reason)" }.joined()
                FileHandle.standardError.write(Data("agent: SIGHUP: \(file) reloaded, \(tasks.count - rejected.count) sources\(problems)\n".utf8))
                logger.notice("configuration reloaded", metadata: ["inlong.config": "\(file)", "inlong.sources": "\(tasks.count - rejected.count)"])
            }
        }
    }
}
