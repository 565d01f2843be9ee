import Logging
import NIOCore
import NIOPosix
import AsyncAlgorithms
import Synchronization

/// The checkpoint on its tick, and the stalls watched on the same tick.
extension Agent {
    /// Runs until cancelled once every instance ended, not at the graceful shutdown: during the drain the
    /// checkpoint still follows the acks, and stalls are still reported.
    func checkpointLoop(_ store: CheckpointStore) async {
        for await _ in AsyncTimerSequence(interval: self.configuration.checkpointInterval, clock: .continuous) {
            await self.writeCheckpoint(store, force: false)
            self.watchStalls()
            self.metrics?.publish(self.statistics())
        }
    }

    /// Says at warning when a group's lines stop ending (and why its proxies do not take them), and when they move
    /// again.
    func watchStalls() {
        let now = ContinuousClock.now
        let groups = self.statistics().groups
        let changes = self.modifyStateAndRunActions { ($0.machine.observe(groups: groups, now: now), []) }
        for change in changes {
            switch change {
            case .stalled(let name, let since):
                let problem = self.clientStatistics(group: name).flatMap(Self.proxyProblem) ?? "no proxy answers"
                let waiting = groups.first { $0.group == name }?.linesWaiting ?? 0
                self.logger.warning(
                    "group \(name) is stalled: \(waiting) lines wait and none was acked for \(now - since); \(problem)",
                    metadata: ["inlong.group": "\(name)"]
                )
            case .moving(let name):
                self.logger.notice("group \(name) moves again", metadata: ["inlong.group": "\(name)"])
            }
        }
    }

    func writeCheckpoint(_ store: CheckpointStore, force: Bool) async {
        guard let checkpoint = self.modifyStateAndRunActions({ ($0.machine.checkpoint(force: force), []) }) else { return }
        do {
            // Two fsyncs, which take seconds on a busy disk: on NIO's blocking pool, never on the cooperative one;
            // through a future, so that a cancellation neither skips the write nor returns before it ended.
            try await NIOThreadPool.singleton.runIfActive(eventLoop: self.eventLoopGroup.any()) { try store.save(checkpoint) }.get()
            self.counters.checkpointsWritten.add(1, ordering: .relaxed)
            self.checkpointWritten(error: nil)
        } catch {
            self.checkpointWritten(error: "\(error)")
            self.logger.error("cannot write the checkpoint", metadata: ["inlong.checkpoint": "\(store.path)", "inlong.error": "\(error)"])
        }
    }

    func checkpointWritten(error: String?) {
        self.modifyStateAndRunActions { state in
            state.machine.checkpointWritten(error: error)
            return ((), [])
        }
    }
}
