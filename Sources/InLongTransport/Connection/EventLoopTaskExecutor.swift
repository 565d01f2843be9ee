public import NIOCore

/// A `TaskExecutor` that runs jobs on one event loop.
///
/// A task that prefers a connection's executor (``PersistentConnection/taskExecutor``) hands its requests to the
/// connection and is resumed with their responses on the connection's own thread, so a request crosses no thread
/// on this side: the lowest latency for one request at a time. The price is that the task's code runs on the
/// event loop, between the connection's reads and writes, so keep it short and never block in it.
///
/// ```swift
/// try await withTaskExecutorPreference(connection.taskExecutor) {
///     for request in requests {
///         let response = try await connection.request(request)
///     }
/// }
/// ```
public final class EventLoopTaskExecutor: TaskExecutor {
    /// The loop jobs run on.
    public let eventLoop: any EventLoop

    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        // Run as a task executor's job (not through the loop's serial executor), so that nonisolated code the
        // task calls next stays on this executor instead of hopping back to it.
        let job = UnownedJob(job)
        self.eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
