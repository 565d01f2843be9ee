public import NIOCore

/// The handler's two timers: one for the earliest deadline of the written requests (the state machine holds
/// the deadlines; a timer per request cost several allocations each), and the idle check (heartbeats, dead peers).
extension ConnectionChannelHandler {
    /// Arms the request timer for `deadline` unless it is armed for an earlier one.
    @inlinable
    func armRequestTimer(at deadline: NIODeadline) {
        guard let context = self.context else { return }
        if let armed = self.requestTimer {
            guard deadline < armed.deadline else { return }
            armed.task.cancel()
        }
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] () -> Void in
            self?.requestTimerFired()
        }
        self.requestTimer = (deadline, task)
    }

    /// Times out the requests whose deadlines have passed, oldest first, and re-arms for the next.
    @inlinable
    func requestTimerFired() {
        self.requestTimer = nil
        let now = self.now
        for key in self.stateMachine.requestsPastDeadline(now: now) {
            let (first, second) = self.stateMachine.requestTimedOut(key: key, now: now)
            self.run(first)
            self.run(second)
        }
        if let next = self.stateMachine.earliestRequestDeadline { self.armRequestTimer(at: next) }
    }

    @inlinable
    func scheduleIdleCheck(at deadline: NIODeadline) {
        guard let context = self.context else { return }
        self.idleTimer?.cancel()
        self.idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.run(self.stateMachine.idleCheck(now: self.now))
        }
    }
}
