/// Decides when a persistent connection connects, to which endpoint, and how long it backs off. Pure: the driver
/// (``PersistentConnection``) performs the actions and reports the outcomes.
///
/// Endpoints are tried in rotation; only after every endpoint failed in a row does the machine back off, with
/// growing delays. A connection that drops after it proved healthy (``connectionProvedHealthy()``: it stayed up
/// for a while or carried a response) is retried at once on the next endpoint, and the backoff starts over. One
/// that drops before counts as a failed attempt: a peer that accepts and closes at once is not redialled flat
/// out.
struct ReconnectStateMachine {
    enum State: Hashable {
        case idle
        case connecting(endpoint: Int)
        case ready(endpoint: Int)
        case backingOff(nextEndpoint: Int)
        case draining
        case shutDown
    }

    enum Action: Hashable {
        /// Connect to the endpoint at this index and publish the state.
        case connect(endpoint: Int, publish: PersistentConnectionState)
        /// Sleep, then report ``backoffElapsed()``.
        case backoff(Duration, publish: PersistentConnectionState)
        /// Close the open channel gracefully (drain pending requests), then report ``connectionClosed()``.
        case drainAndClose
        /// Cancel the connect attempt under way (the driver then reports ``connectFailed()``).
        case cancelConnect
        /// Publish `.shutdown` and stop.
        case finish
        case none
    }

    private(set) var state: State = .idle
    private var endpointCount: Int
    private var failuresInRound = 0
    /// Whether the open connection proved healthy; only then does the backoff start over.
    private var provenHealthy = false
    private var backoff: ExponentialBackoff.Iterator
    private let backoffPolicy: ExponentialBackoff
    private let random: @Sendable (ClosedRange<Double>) -> Double
    /// Whether to reconnect at all; without, the first close or failed round finishes.
    private let reconnects: Bool

    init(
        endpointCount: Int,
        backoff: ExponentialBackoff,
        reconnects: Bool = true,
        random: @escaping @Sendable (ClosedRange<Double>) -> Double
    ) {
        precondition(endpointCount > 0)
        self.endpointCount = endpointCount
        self.reconnects = reconnects
        self.backoffPolicy = backoff
        self.random = random
        self.backoff = backoff.makeIterator(random: random)
    }

    mutating func start() -> Action {
        switch self.state {
        case .idle:
            self.state = .connecting(endpoint: 0)
            return .connect(endpoint: 0, publish: .connecting)
        case .connecting, .ready, .backingOff, .draining, .shutDown:
            return .none
        }
    }

    mutating func connectSucceeded() -> Action {
        switch self.state {
        case .connecting(let endpoint):
            self.state = .ready(endpoint: endpoint)
            self.provenHealthy = false
            return .none
        case .draining:
            // Shutdown was requested while connecting: close what just opened.
            return .drainAndClose
        case .idle, .ready, .backingOff, .shutDown:
            preconditionFailure("connectSucceeded in \(self.state)")
        }
    }

    mutating func connectFailed() -> Action {
        switch self.state {
        case .connecting(let endpoint):
            self.failuresInRound += 1
            let next = (endpoint + 1) % self.endpointCount
            if self.failuresInRound < self.endpointCount {
                self.state = .connecting(endpoint: next)
                return .connect(endpoint: next, publish: .connecting)
            }
            self.failuresInRound = 0
            guard self.reconnects else {
                self.state = .shutDown
                return .finish
            }
            self.state = .backingOff(nextEndpoint: next)
            return .backoff(self.backoff.next(), publish: .transientFailure)
        case .draining:
            self.state = .shutDown
            return .finish
        case .idle, .ready, .backingOff, .shutDown:
            preconditionFailure("connectFailed in \(self.state)")
        }
    }

    mutating func backoffElapsed() -> Action {
        switch self.state {
        case .backingOff(let next):
            self.state = .connecting(endpoint: next)
            return .connect(endpoint: next, publish: .connecting)
        case .draining, .shutDown:
            return .none
        case .idle, .connecting, .ready:
            preconditionFailure("backoffElapsed in \(self.state)")
        }
    }

    /// The open connection stayed up long enough, or carried a response: the next drop is not the peer refusing.
    mutating func connectionProvedHealthy() {
        guard case .ready = self.state, !self.provenHealthy else { return }
        self.provenHealthy = true
        self.failuresInRound = 0
        self.backoff = self.backoffPolicy.makeIterator(random: self.random)
    }

    /// The open channel closed (dropped, dead peer, age limit, or a drain this machine asked for).
    mutating func connectionClosed() -> Action {
        switch self.state {
        case .ready where !self.reconnects:
            self.state = .shutDown
            return .finish
        case .ready(let endpoint) where self.provenHealthy:
            let next = (endpoint + 1) % self.endpointCount
            self.state = .connecting(endpoint: next)
            self.failuresInRound = 0
            return .connect(endpoint: next, publish: .connecting)
        case .ready(let endpoint):
            // Closed before it proved healthy: as a failed connect.
            self.state = .connecting(endpoint: endpoint)
            return self.connectFailed()
        case .draining:
            self.state = .shutDown
            return .finish
        case .idle, .connecting, .backingOff, .shutDown:
            preconditionFailure("connectionClosed in \(self.state)")
        }
    }

    mutating func shutdownRequested() -> Action {
        switch self.state {
        case .idle, .backingOff:
            self.state = .shutDown
            return .finish
        case .connecting:
            self.state = .draining
            return .cancelConnect
        case .ready:
            self.state = .draining
            return .drainAndClose
        case .draining, .shutDown:
            return .none
        }
    }

    /// The endpoint list changed size; the rotation continues within the new list.
    mutating func endpointsChanged(count: Int) {
        precondition(count > 0)
        self.endpointCount = count
        switch self.state {
        case .connecting(let endpoint) where endpoint >= count:
            self.state = .connecting(endpoint: 0)
        case .ready(let endpoint) where endpoint >= count:
            self.state = .ready(endpoint: 0)
        case .backingOff(let next) where next >= count:
            self.state = .backingOff(nextEndpoint: 0)
        default:
            break
        }
    }
}
