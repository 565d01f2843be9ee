/// Everything a ``PersistentConnection`` knows, and every rule that changes it: when to connect and to which
/// endpoint, how long to back off (the ``ReconnectStateMachine`` inside), which channel is open and whether it
/// drains, the connectivity state and who watches it, and the run's start and end. Pure: the driver locks, calls
/// one event, unlocks and performs the returned ``Actions``.
///
/// `Channel` is an open channel as requests reach it (a ``PersistentChannelHandle`` in production); `Watcher` is
/// how a watcher of the connectivity state is told (an `AsyncStream` continuation).
@usableFromInline
struct PersistentConnectionStateMachine<Channel, Watcher> {
    enum Action {
        case none
        /// Open a channel to the endpoint, then report ``connected(_:channelID:)`` or ``connectFailed()``, and
        /// ``channelClosed(channelID:)`` once it closes.
        case connect(Endpoint, channelID: Int)
        /// Wait this long, then report ``backoffElapsed()``.
        case backoff(Duration)
        /// Ask the channel to take no new request and close once its in-flight ones complete; its close is
        /// reported as any other.
        case drain(Channel)
        /// The run is over: nothing it started matters any more.
        case finishRun
        /// End these watchers' streams (they have been told `.shutdown`).
        case endWatches([Watcher])
    }

    struct Actions {
        /// Tell each watcher a state, in this order. The driver does so before it releases its lock, so that a
        /// watcher that registers while the state changes cannot be told the old state after the new one.
        var tell: [(watcher: Watcher, state: PersistentConnectionState)] = []
        /// What to do once the lock is released.
        var then: Action = .none
    }

    private var reconnect: ReconnectStateMachine
    private let endpoints: [Endpoint]
    /// The channel requests go to: the open one, from its connect to its close, draining or not. A stored
    /// property of its own, so that a request copies the channel only (the driver reads it for every request).
    @usableFromInline private(set) var openChannel: Channel?
    /// The open channel's id, which tells its events from those of a channel closed before.
    private var openChannelID: Int?
    /// The open channel is draining (recycle, age limit, shutdown): it finishes what it has and takes nothing new.
    private var draining = false
    private(set) var connectivity: PersistentConnectionState = .idle
    private var watchers: [Int: Watcher] = [:]
    private var nextChannelID = 0
    private var started = false
    private var finished = false

    init(endpoints: [Endpoint], reconnect: ReconnectStateMachine) {
        precondition(!endpoints.isEmpty, "a persistent connection needs at least one endpoint")
        self.endpoints = endpoints
        self.reconnect = reconnect
    }

    // MARK: What requests see

    /// Whether a request submitted now would be written: a channel is open, ready and not draining.
    var isAcceptingRequests: Bool {
        guard self.openChannel != nil, !self.draining, case .ready = self.reconnect.state else { return false }
        return true
    }

    /// The endpoint of the open channel, when ready.
    var connectedEndpoint: Endpoint? {
        guard self.openChannel != nil, case .ready(let index) = self.reconnect.state else { return nil }
        return self.endpoints[index]
    }

    // MARK: Run

    /// The driver's run began: connect to the first endpoint.
    mutating func runStarted() -> Actions {
        precondition(!self.started, "PersistentConnection.run() must be called once")
        self.started = true
        return self.perform(self.reconnect.start())
    }

    /// The connect to `channelID` succeeded.
    mutating func connected(_ channel: Channel, channelID: Int) -> Actions {
        self.openChannel = channel
        self.openChannelID = channelID
        self.draining = false
        return self.perform(self.reconnect.connectSucceeded(), publishing: .ready)
    }

    mutating func connectFailed() -> Actions {
        self.perform(self.reconnect.connectFailed())
    }

    /// A channel closed; one that is no longer the open one (closed twice, or after the run) changes nothing.
    mutating func channelClosed(channelID: Int) -> Actions {
        guard self.openChannelID == channelID else { return Actions() }
        self.openChannel = nil
        self.openChannelID = nil
        return self.perform(self.reconnect.connectionClosed())
    }

    mutating func backoffElapsed() -> Actions {
        self.perform(self.reconnect.backoffElapsed())
    }

    /// The channel stayed up long enough or carried a response: a drop after this is retried at once.
    mutating func provedHealthy(channelID: Int) -> Actions {
        if self.openChannelID == channelID { self.reconnect.connectionProvedHealthy() }
        return Actions()
    }

    /// The channel reached its maximum age: it drains, and its close reconnects as usual.
    mutating func ageExpired(channelID: Int) -> Actions {
        guard self.openChannelID == channelID else { return Actions() }
        return Actions(then: self.startDraining())
    }

    /// Drain the open channel and reconnect (to the next endpoint) once it closes.
    mutating func recycleRequested() -> Actions {
        Actions(then: self.startDraining())
    }

    mutating func shutdownRequested() -> Actions {
        self.perform(self.reconnect.shutdownRequested())
    }

    /// The driver's run ended (shut down or cancelled) and closed what was open: requests find no channel, every
    /// watcher is told `.shutdown` and its stream ends; later watchers are told so at once.
    mutating func runEnded() -> Actions {
        self.finished = true
        // A cancelled run leaves no close event behind it to clear the channel.
        self.openChannel = nil
        self.openChannelID = nil
        var actions = self.publish(.shutdown)
        actions.then = .endWatches(Array(self.watchers.values))
        self.watchers.removeAll()
        return actions
    }

    // MARK: Watchers

    /// A watcher registers under `id`: it is told the current state at once, then every change.
    mutating func watcherAdded(_ watcher: Watcher, id: Int) -> Actions {
        var actions = Actions(tell: [(watcher, self.connectivity)])
        if self.finished {
            actions.then = .endWatches([watcher])
        } else {
            self.watchers[id] = watcher
        }
        return actions
    }

    /// The watcher's stream ended.
    mutating func watcherRemoved(id: Int) -> Actions {
        self.watchers[id] = nil
        return Actions()
    }

    // MARK: Helpers

    /// What the reconnect machine decided, in the driver's terms. `publishing` is the state a `.none` means (a
    /// connect that succeeded makes the connection ready).
    private mutating func perform(
        _ action: ReconnectStateMachine.Action,
        publishing: PersistentConnectionState? = nil
    ) -> Actions {
        switch action {
        case .none:
            return publishing.map { self.publish($0) } ?? Actions()
        case .cancelConnect:
            // A connect under way ends within the connect timeout; its outcome then finishes the shutdown.
            return Actions()
        case .connect(let index, let state):
            var actions = self.publish(state)
            self.nextChannelID += 1
            actions.then = .connect(self.endpoints[index], channelID: self.nextChannelID)
            return actions
        case .backoff(let delay, let state):
            var actions = self.publish(state)
            actions.then = .backoff(delay)
            return actions
        case .drainAndClose:
            return Actions(then: self.startDraining())
        case .finish:
            return Actions(then: .finishRun)
        }
    }

    private mutating func startDraining() -> Action {
        guard let open = self.openChannel else { return .none }
        self.draining = true
        return .drain(open)
    }

    /// Tells every watcher of a change of state; the same state again is no change.
    private mutating func publish(_ state: PersistentConnectionState) -> Actions {
        guard self.connectivity != state else { return Actions() }
        self.connectivity = state
        return Actions(tell: self.watchers.values.map { ($0, state) })
    }
}

extension PersistentConnectionStateMachine.Action: Sendable where Channel: Sendable, Watcher: Sendable {}
extension PersistentConnectionStateMachine.Actions: Sendable where Channel: Sendable, Watcher: Sendable {}
