public import NIOCore

/// A `TaskExecutor` that runs jobs on one event loop.
///
/// A task that prefers a connection's executor (``PersistentConnection/taskExecutor``) hands its requests to the
/// connection and is resumed with their responses on the connection's own thread, so a request crosses no thread
/// on this side: the lowest latency for one request at a time. The price is that the task's code runs on the
/// event loop, and while it runs no channel on that loop (of any connection, pool or server sharing the group)
/// reads or writes: keep it short and never block in it.
///
/// - The preference applies to nonisolated code only: code isolated to an actor (the main actor included) runs
///   on the actor's executor, and its requests cross threads as usual.
/// - The event loop group must outlive every task that prefers this executor: a job enqueued on a loop that has
///   shut down is dropped by NIO, and its task never resumes.
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
