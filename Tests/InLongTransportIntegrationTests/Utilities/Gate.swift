import Synchronization

/// A gate handlers wait on until the test opens it.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = self.state.withLock { state in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
    func open() {
        let waiters = self.state.withLock { state in
            state.open = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// Counts handlers running now and the most at once.
final class Concurrency: Sendable {
    private let state = Mutex<(now: Int, most: Int, started: Int)>((0, 0, 0))
    func enter() { self.state.withLock { $0.now += 1; $0.started += 1; $0.most = max($0.most, $0.now) } }
    func leave() { self.state.withLock { $0.now -= 1 } }
    var most: Int { self.state.withLock { $0.most } }
    var started: Int { self.state.withLock { $0.started } }
}
