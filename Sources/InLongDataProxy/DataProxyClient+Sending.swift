import InLongWire
public import NIOCore
import Synchronization

/// Accepting records: validation, appends under the machine's lock, waiting for room.
extension DataProxyClient {
    // MARK: Sending

    /// Accepts one record into the buffer and returns its id once accepted (not acked); the record's outcome is
    /// in the ``deliveryReports()`` report naming that id. Suspends while the buffer is full, or throws
    /// ``DataProxyError/Code/bufferFull`` with the fail-fast policy. A task cancelled while suspended gets
    /// `CancellationError`, and the record is not accepted.
    ///
    /// - Parameters:
    ///   - body: The record's bytes; must not be empty.
    ///   - group: The InLong group; must not be empty or contain `&` or `=`.
    ///   - stream: The InLong stream; must not contain `&` or `=`.
    ///   - dataTime: The record's data time in milliseconds since the epoch, or `nil` for the batch's time.
    ///   - attributes: The record's own attributes (sent with the record).
    ///   - messageAttributes: Pairs added to the message's attribute string (as the Java SDK's extra
    ///     attributes); the server's reserved keys (``reservedAttributeKeys``) are refused.
    @discardableResult
    public func send(
        _ body: ByteBuffer,
        group: String,
        stream: String,
        dataTime: Int64? = nil,
        attributes: [(String, String)] = [],
        messageAttributes: [(String, String)] = []
    ) async throws -> DataProxyRecordID {
        let (key, recordAttributes) = try self.validate(
            body, group: group, stream: stream, dataTime: dataTime, attributes: attributes, messageAttributes: messageAttributes
        )
        return DataProxyRecordID(rawValue: try await self.appendOne(body, attributes: recordAttributes, key: key, observer: .none))
    }

    /// Accepts one text record; see ``send(_:group:stream:dataTime:attributes:messageAttributes:)``.
    @discardableResult
    public func send(
        _ text: String,
        group: String,
        stream: String,
        dataTime: Int64? = nil,
        attributes: [(String, String)] = [],
        messageAttributes: [(String, String)] = []
    ) async throws -> DataProxyRecordID {
        try await self.send(
            ByteBuffer(string: text), group: group, stream: stream, dataTime: dataTime, attributes: attributes, messageAttributes: messageAttributes
        )
    }

    /// Accepts many records with one lock per run of records that fit the buffer, and returns their ids (in
    /// order). When it throws a ``DataProxyError`` part way, the records accepted before are in its
    /// ``DataProxyError/acceptedRecords`` and will be reported.
    ///
    /// - Parameters:
    ///   - records: The records, each with its body and optionally its own data time and attributes.
    ///   - group: The InLong group of every record.
    ///   - stream: The InLong stream of every record.
    ///   - attributes: Pairs added to the attribute string of every message carrying these records (as the Java
    ///     SDK's extra attributes); the server's reserved keys (``reservedAttributeKeys``) are refused.
    @discardableResult
    public func send(
        contentsOf records: some Sequence<DataProxyRecord>,
        group: String,
        stream: String,
        attributes: [(String, String)] = []
    ) async throws -> DataProxyRecordIDs {
        try await self.append(self.prepare(records, group: group, stream: stream, attributes: attributes), tracker: nil)
    }

    /// Accepts many records given as their bodies: one validation of the group and stream, one lock per run of
    /// records that fit the buffer, no per-record lookups. Returns their ids (in order); when it throws a
    /// ``DataProxyError`` part way, the records accepted before are in its ``DataProxyError/acceptedRecords``.
    ///
    /// - Parameters:
    ///   - bodies: The records' bytes; none may be empty.
    ///   - group: The InLong group of every record.
    ///   - stream: The InLong stream of every record.
    ///   - attributes: Pairs added to the attribute string of every message carrying these records (as the Java
    ///     SDK's extra attributes); the server's reserved keys (``reservedAttributeKeys``) are refused.
    @discardableResult
    public func send(
        contentsOf bodies: some Collection<ByteBuffer>,
        group: String,
        stream: String,
        attributes: [(String, String)] = []
    ) async throws -> DataProxyRecordIDs {
        try await self.appendRun(bodies, group: group, stream: stream, attributes: attributes, tracker: nil)
    }

    /// Accepts many records as ``send(contentsOf:group:stream:attributes:)-(Collection<ByteBuffer>,_,_,_)`` does,
    /// and returns a receipt to await the end of all of them with one waiter.
    public func sendWithReceipt(
        contentsOf bodies: some Collection<ByteBuffer>,
        group: String,
        stream: String,
        attributes: [(String, String)] = []
    ) async throws -> DeliveryReceipt {
        try await self.tracked { try await self.appendRun(bodies, group: group, stream: stream, attributes: attributes, tracker: $0) }
    }

    /// Accepts many records as ``send(contentsOf:group:stream:attributes:)-(Sequence<DataProxyRecord>,_,_,_)``
    /// does, and returns a receipt to await the end of all of them with one waiter.
    public func sendWithReceipt(
        contentsOf records: some Sequence<DataProxyRecord>,
        group: String,
        stream: String,
        attributes: [(String, String)] = []
    ) async throws -> DeliveryReceipt {
        let prepared = try self.prepare(records, group: group, stream: stream, attributes: attributes)
        return try await self.tracked { try await self.append(prepared, tracker: $0) }
    }

    /// Runs the appends of one call with a tracker, and hands out its receipt once the call accepted its last
    /// record.
    private func tracked(_ append: (DeliveryTracker) async throws -> DataProxyRecordIDs) async throws -> DeliveryReceipt {
        let tracker = DeliveryTracker()
        do {
            _ = try await append(tracker)
        } catch var error as DataProxyError where error.acceptedRecords.map({ !$0.isEmpty }) ?? false {
            // Part of the call was accepted: its records still end, and the caller can await them.
            tracker.seal()
            error.acceptedReceipt = DeliveryReceipt(tracker: tracker)
            throw error
        }
        tracker.seal()
        return DeliveryReceipt(tracker: tracker)
    }

    /// Sends many records and waits until every one was acked or failed; the summary says which failed and why.
    /// A task cancelled after the records were accepted gets `CancellationError`, while their fates are still
    /// reported.
    public func sendAndWait(
        contentsOf bodies: some Collection<ByteBuffer>,
        group: String,
        stream: String,
        attributes: [(String, String)] = []
    ) async throws -> DeliverySummary {
        try await self.sendWithReceipt(contentsOf: bodies, group: group, stream: stream, attributes: attributes).outcome()
    }

    func prepare(
        _ records: some Sequence<DataProxyRecord>,
        group: String,
        stream: String,
        attributes: [(String, String)]
    ) throws -> [(ByteBuffer, BatchKey, String?)] {
        var prepared: [(ByteBuffer, BatchKey, String?)] = []
        prepared.reserveCapacity(records.underestimatedCount)
        let limit = self.blockLimit
        for record in records {
            let (key, recordAttributes) = try self.validate(
                record.body, group: group, stream: stream, dataTime: record.dataTime, attributes: record.attributes, messageAttributes: attributes
            )
            if BatchAccumulator.blockBytes(bodyLength: record.body.readableBytes, attributesLength: recordAttributes?.utf8.count) > limit {
                throw self.tooLarge(record.body, limit: limit, key: key)
            }
            prepared.append((record.body, key, recordAttributes))
        }
        return prepared
    }

    /// Appends prepared records, one lock per run that fits the buffer.
    func append(_ prepared: [(ByteBuffer, BatchKey, String?)], tracker: DeliveryTracker?) async throws -> DataProxyRecordIDs {
        let observer: RecordObserver = tracker.map { .tracker($0) } ?? .none
        return try await self.appendRuns(
            count: prepared.count,
            tracker: tracker,
            record: { prepared[$0] },
            spool: { start, ids, spool throws(DataProxyError) in try spool.write(ids: ids) { prepared[start + $0] } }
        ) { start in
            self.withMachine { machine -> (AppendedRun, Machine.Actions) in
                var actions = Machine.Actions()
                let now = ContinuousClock.now
                let seconds = wallClockSeconds()
                var run = AppendedRun()
                while start + run.ids.count < prepared.count {
                    let (body, key, attributes) = prepared[start + run.ids.count]
                    let (result, more) = machine.append(body, attributes: attributes, key: key, now: now, wallSeconds: seconds, observer: observer)
                    if let more { actions.merge(more) }
                    switch result {
                    case .accepted(let id): run.ids.append(id)
                    case .blocked(let blocked):
                        run.blocked = blocked
                        return (run, actions)
                    case .tooLarge(let limit):  // the Manager lowered the limit
                        run.tooLargeLimit = limit
                        return (run, actions)
                    }
                }
                return (run, actions)
            }
        }
    }

    /// Appends bodies of one key, one lock per run that fits the buffer.
    func appendRun(
        _ bodies: some Collection<ByteBuffer>,
        group: String,
        stream: String,
        attributes: [(String, String)],
        tracker: DeliveryTracker?
    ) async throws -> DataProxyRecordIDs {
        guard let first = bodies.first else { return DataProxyRecordIDs() }
        let (key, _) = try self.validate(first, group: group, stream: stream, dataTime: nil, attributes: [], messageAttributes: attributes)
        let limit = self.blockLimit
        // An array (the common case) is taken as it is: a copy would retain and release every record.
        let records = bodies as? [ByteBuffer] ?? Array(bodies)
        // Read in place, for the same reason.
        if let bad = records.withUnsafeBufferPointer({ records in
            records.firstIndex { $0.readableBytes == 0 || BatchAccumulator.blockBytes(bodyLength: $0.readableBytes, attributesLength: nil) > limit }
        }) {
            let body = records[bad]
            _ = try self.validate(body, group: group, stream: stream, dataTime: nil, attributes: [])
            throw self.tooLarge(body, limit: limit, key: key)
        }
        return try await self.appendRuns(
            count: records.count,
            tracker: tracker,
            record: { (records[$0], key, nil) },
            spool: { start, ids, spool throws(DataProxyError) in try spool.write(ids: ids, key: key, bodies: records[start..<start + ids.count]) }
        ) { start in
            self.appendRunTurn(records, from: start, key: key, tracker: tracker)
        }
    }

    /// What one turn under the lock did for a call of many records.
    struct AppendedRun {
        var ids = DataProxyRecordIDs()
        /// Why the turn stopped before the last record.
        var blocked: Machine.Blocked?
        /// The record-block limit the next record exceeds (the Manager lowered it after the call checked).
        var tooLargeLimit: Int?
    }

    /// The one loop behind every call of many records: a turn under the lock appends as many records as fit, then
    /// the call waits out what stopped it. A failure part way names the records the call accepted before.
    private func appendRuns(
        count: Int,
        tracker: DeliveryTracker?,
        record: (Int) -> (body: ByteBuffer, key: BatchKey, attributes: String?),
        spool write: (_ start: Int, _ ids: DataProxyRecordIDs, Spool) throws(DataProxyError) -> Void,
        turn: (_ start: Int) -> AppendedRun
    ) async throws -> DataProxyRecordIDs {
        if count > 0 { self.handInLaneBatch(of: record(0).key) }
        var ids = DataProxyRecordIDs()
        var index = 0
        while index < count {
            try Self.checkCancellation(key: record(index).key, accepted: ids, of: count)
            let run = turn(index)
            self.observation.recordsAccepted(run.ids.count)
            if let tracker, !run.ids.isEmpty { tracker.accepted(run.ids) }
            ids.formUnion(run.ids)
            if let spool = self.spool, !run.ids.isEmpty {
                let start = index
                try self.spool(accepted: ids) { () throws(DataProxyError) in try write(start, run.ids, spool) }
            }
            index += run.ids.count
            if run.blocked == .full, self.spool != nil, index < count {
                // No room in memory: the records go to the spool only, while it has room.
                let start = index
                var spilled: Range<UInt64>?
                try self.spool(accepted: ids) { () throws(DataProxyError) in
                    spilled = try self.spill(from: start, count: count, observer: tracker.map { .tracker($0) } ?? .none, record: record)
                }
                if let spilled {
                    let spilledIDs = DataProxyRecordIDs(spilled)
                    self.observation.recordsAccepted(spilledIDs.count)
                    tracker?.accepted(spilledIDs)
                    ids.formUnion(spilledIDs)
                    index += spilledIDs.count
                    continue
                }
            }
            if let limit = run.tooLargeLimit {
                let next = record(index)
                var error = self.tooLarge(next.body, limit: limit, key: next.key)
                error.acceptedRecords = ids
                throw error
            }
            guard index < count else { break }
            // No stop: the turn's reservation ran out (or the batch limit was lowered meanwhile): the next turn
            // goes on.
            guard let blocked = run.blocked else { continue }
            let next = record(index)
            let bytes = BatchAccumulator.quotaBytes(bodyLength: next.body.readableBytes, attributesLength: next.attributes?.utf8.count)
            try await self.waitToAppend(blocked, bytes: bytes, key: next.key, accepted: ids, of: count)
        }
        return ids
    }

    /// The one path of a single record: appended under the lock, or tried again once what stopped it is waited
    /// out. A task cancelled before the record is accepted gets `CancellationError`. The first try is synchronous:
    /// an accepted record costs no async frame of its own.
    @inline(__always)
    private func appendOne(_ body: ByteBuffer, attributes: String?, key: BatchKey, observer: RecordObserver) async throws -> UInt64 {
        if Task.isCancelled { throw CancellationError() }
        if case .none = observer, attributes == nil, let lanes = self.lanes {
            switch self.appendToLane(body, key: key, lanes: lanes) {
            case .accepted(let id):
                self.observation.recordsAccepted(1)
                return id
            case .blocked(let blocked):
                return try await self.appendToLane(body, key: key, lanes: lanes, after: blocked)
            case .tooLarge(let limit):
                throw self.tooLarge(body, limit: limit, key: key)
            }
        }
        if attributes == nil { self.handInLaneBatch(of: key) }
        var blocked: Machine.Blocked
        switch try self.tryAppendOne(body, attributes: attributes, key: key, observer: observer) {
        case .accepted(let id): return id
        case .blocked(let reason): blocked = reason
        }
        while true {
            let bytes = BatchAccumulator.quotaBytes(bodyLength: body.readableBytes, attributesLength: attributes?.utf8.count)
            try await self.waitToAppend(blocked, bytes: bytes, key: key, accepted: nil, of: 1)
            try Task.checkCancellation()
            switch try self.tryAppendOne(body, attributes: attributes, key: key, observer: observer) {
            case .accepted(let id): return id
            case .blocked(let reason): blocked = reason
            }
        }
    }

    /// A record its lane (or the machine's way) could not take at once: waits out what stopped it and tries again.
    /// Apart from the per-record path, whose async frame it would otherwise grow.
    @inline(never)
    private func appendToLane(_ body: ByteBuffer, key: BatchKey, lanes: AppendLanes, after blocked: Machine.Blocked) async throws -> UInt64 {
        let bytes = BatchAccumulator.quotaBytes(bodyLength: body.readableBytes, attributesLength: nil)
        var blocked = blocked
        while true {
            try await self.waitToAppend(blocked, bytes: bytes, key: key, accepted: nil, of: 1)
            try Task.checkCancellation()
            switch self.appendToLane(body, key: key, lanes: lanes) {
            case .accepted(let id):
                self.observation.recordsAccepted(1)
                return id
            case .blocked(let again): blocked = again
            case .tooLarge(let limit): throw self.tooLarge(body, limit: limit, key: key)
            }
        }
    }

    enum OneAppended {
        case accepted(UInt64)
        case blocked(Machine.Blocked)
    }

    /// One try at appending a record (spooled when accepted); what stopped it otherwise.
    private func tryAppendOne(_ body: ByteBuffer, attributes: String?, key: BatchKey, observer: RecordObserver) throws -> OneAppended {
        switch self.appendUnderLock(body, attributes: attributes, key: key, observer: observer) {
        case .accepted(let id):
            self.observation.recordsAccepted(1)
            if let spool = self.spool {
                let ids = DataProxyRecordIDs(id..<id + 1)
                try self.spool(accepted: ids) { () throws(DataProxyError) in try spool.write(ids: ids) { _ in (body, key, attributes) } }
            }
            return .accepted(id)
        case .blocked(let blocked):
            if blocked == .full, self.spool != nil,
                let spilled = try self.spill(from: 0, count: 1, observer: observer, record: { _ in (body, key, attributes) })
            {
                self.observation.recordsAccepted(1)
                return .accepted(spilled.lowerBound)
            }
            return .blocked(blocked)
        case .tooLarge(let limit):
            throw self.tooLarge(body, limit: limit, key: key)
        }
    }

    /// Sends one record and waits for its ack; throws ``DataProxyError`` when it fails. A task cancelled before
    /// the record is accepted gets `CancellationError` and the record is not sent; one cancelled after gets
    /// `CancellationError` at once, while the record's fate is still reported.
    public func sendAndWait(
        _ body: ByteBuffer,
        group: String,
        stream: String,
        dataTime: Int64? = nil,
        attributes: [(String, String)] = [],
        messageAttributes: [(String, String)] = []
    ) async throws -> DataProxyAck {
        let (key, recordAttributes) = try self.validate(
            body, group: group, stream: stream, dataTime: dataTime, attributes: attributes, messageAttributes: messageAttributes
        )
        let waiter = AckWaiter()
        _ = try await self.appendOne(body, attributes: recordAttributes, key: key, observer: .waiter(waiter))
        return try await waiter.outcome()
    }


    // MARK: Appending under the lock

    // Synchronous and not inlined into the async callers: an async function allocates the lock's temporaries
    // in its task frame on every call, which the per-record path cannot afford.

    /// Appends one record; actions only when a batch was sealed. The clocks are read only when the record starts a
    /// batch, and the lock is taken directly: the general lock site's optional actions cost a generic check and
    /// copies per call that a record without actions does not need.
    @inline(never)
    func appendUnderLock(_ body: ByteBuffer, attributes: String?, key: BatchKey, observer: RecordObserver) -> Machine.AppendResult {
        let (result, sealed) = self.state.withLock { state in
            let (result, sealed) = state.machine.append(
                body, attributes: attributes, key: key, now: .now, wallSeconds: wallClockSeconds(), observer: observer
            )
            // The quota gauge is told under the lock, as every lock site does: its reports keep their order.
            if let sealed { self.observation.heldBytesChanged(sealed.heldBytes) }
            return (result, sealed)
        }
        if let sealed { self.sealedOutsideTheLock(sealed) }
        return result
    }

    /// What a record that sealed a batch asks besides the gauge: the dispatcher's wake-up and the batch's counts.
    @inline(never)
    private func sealedOutsideTheLock(_ sealed: Machine.Sealed) {
        var actions = Machine.Actions(sealed)
        actions.heldBytes = nil
        self.modifyState { _ in ((), actions) }
    }

    /// One turn of a call of many records of one key: the records from `start` on, as far as the quota and the
    /// backlog allow, written into their batches between two short turns of the lock (``BatchFill``).
    @inline(never)
    func appendRunTurn(_ records: [ByteBuffer], from start: Int, key: BatchKey, tracker: DeliveryTracker?) -> AppendedRun {
        let wanted = records.withUnsafeBufferPointer { BatchAccumulator.wanted(UnsafeBufferPointer(rebasing: $0[start...])) }
        var fill: BatchFill
        switch self.withMachineState({ $0.beginFill(key: key, wanted: wanted) }) {
        case .blocked(let blocked): return AppendedRun(blocked: blocked)
        case .fill(let started): fill = started
        }
        records.withUnsafeBufferPointer { fill.fill(from: BodiesFillSource(bodies: $0), at: start) }
        let now = ContinuousClock.now
        let wallSeconds = wallClockSeconds()
        // Moved into the machine, so that its blocks stay uniquely referenced (a recycled block is not copied).
        var handed: BatchFill? = consume fill
        let committed = self.modifyState { state in
            state.machine.commitFill(handed.take()!, tracker: tracker, now: now, wallSeconds: wallSeconds)
        }
        return AppendedRun(ids: DataProxyRecordIDs(committed.ids), blocked: committed.blocked, tooLargeLimit: committed.tooLargeLimit)
    }

    // MARK: Waiting

    /// Waits out what stopped an append: the quota (or fails fast), the dispatcher's backlog, or a close.
    /// `accepted` are the records a many-record call accepted before (`nil` for one record).
    func waitToAppend(_ blocked: Machine.Blocked, bytes: Int, key: BatchKey, accepted: DataProxyRecordIDs?, of count: @autoclosure () -> Int) async throws {
        switch blocked {
        case .closed:
            let detail = accepted.map { "the client is closed; \($0.count) of \(count()) records were accepted" } ?? "the client is closed"
            var error = DataProxyError(.shutDown, detail, group: key.group, stream: key.stream)
            error.acceptedRecords = accepted
            throw error
        case .full:
            self.observation.bufferFull(key)
            if self.configuration.buffer.whenFull == .fail {
                var error = DataProxyError(.bufferFull, "the buffer holds its maximum of records or bytes", isRetriable: true, group: key.group, stream: key.stream)
                error.acceptedRecords = accepted
                throw error
            }
        case .leased:
            // The room is in the lanes' leases: they hand their batches in, and the caller tries again, after
            // letting other tasks run (a lane may lease again first only while half the quota is free).
            self.handInLanes()
            await Task.yield()
            try Self.checkCancellation(key: key, accepted: accepted, of: count())
            return
        case .backlogged, .reserved:
            break
        }
        let ticket = WaitTicket()
        _ = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                switch self.withMachineState({ $0.wait(for: blocked, bytes: bytes, waiter: continuation) }) {
                case .retryNow: continuation.resume(returning: true)
                case .parked(let id): if !ticket.park(id) { self.cancelWait(id) }
                }
            }
        } onCancel: {
            if let id = ticket.cancel() { self.cancelWait(id) }
        }
        try Self.checkCancellation(key: key, accepted: accepted, of: count())
    }

    /// `CancellationError` when the task is cancelled, or, for a call of many records that accepted some already,
    /// ``DataProxyError/Code/cancelled`` naming them: a bare `CancellationError` would lose their ids.
    static func checkCancellation(key: BatchKey, accepted: DataProxyRecordIDs?, of count: @autoclosure () -> Int) throws {
        guard Task.isCancelled else { return }
        guard let accepted, !accepted.isEmpty else { throw CancellationError() }
        var error = DataProxyError(
            .cancelled,
            "the task was cancelled; \(accepted.count) of \(count()) records were accepted",
            group: key.group,
            stream: key.stream
        )
        error.acceptedRecords = accepted
        throw error
    }

    func cancelWait(_ id: Int) {
        self.withMachineState { $0.cancelWait(id) }?.resume(returning: false)
    }

    // MARK: Validation

    /// The record-block limit now (the Manager may lower it).
    var blockLimit: Int { self.withMachineState { $0.accumulator.limits.maxBytes } }

    func tooLarge(_ body: ByteBuffer, limit: Int, key: BatchKey) -> DataProxyError {
        self.observation.recordTooLarge(key, bytes: body.readableBytes)
        return DataProxyError(
            .messageTooLarge,
            "a record of \(body.readableBytes) bytes does not fit a frame (at most \(limit - 4) bytes)",
            group: key.group,
            stream: key.stream
        )
    }

    /// Keys the server or the reference SDKs give a meaning in a message's attribute string; refused as message
    /// attributes.
    public static let reservedAttributeKeys: Set<String> = [
        "groupId", "streamId", "bid", "tid", "dt", "mt", "m", "cnt", "cp", "rt", "rtms", "sid", "t", "NodeIP", "uniq",
        "proxySend", "sync", "errCode", "errMsg", "dataproxyip",
    ]

    /// Whether `group` and `stream` can name a batch's group and stream. The first valid pair is remembered, so
    /// that a client sending to one stream checks its names once, not once per record.
    @inline(__always)
    func areValidNames(group: String, stream: String) -> Bool {
        if let known = self.firstValidNames.load(ordering: .acquiring)?.takeUnretainedValue(), known.group == group, known.stream == stream {
            return true
        }
        guard !group.isEmpty, InLongAttributes.isValidComponent(group), InLongAttributes.isValidComponent(stream) else { return false }
        if self.firstValidNames.load(ordering: .relaxed) == nil {
            let names = Unmanaged.passRetained(ValidNames(group: group, stream: stream))
            if !self.firstValidNames.compareExchange(expected: nil, desired: names, ordering: .acquiringAndReleasing).exchanged {
                names.release()
            }
        }
        return true
    }

    func validate(
        _ body: ByteBuffer,
        group: String,
        stream: String,
        dataTime: Int64?,
        attributes: [(String, String)],
        messageAttributes: [(String, String)] = []
    ) throws -> (BatchKey, String?) {
        if self.spoolFailed, let error = self.spoolError { throw error }
        guard body.readableBytes > 0, self.areValidNames(group: group, stream: stream) else {
            throw DataProxyError(.invalidArgument, "records, groups and streams must be non-empty and free of '&' and '='", group: group, stream: stream)
        }
        var recordAttributes: String?
        if dataTime != nil || !attributes.isEmpty {
            var text = dataTime.map { "dt=\($0)" } ?? ""
            for (key, value) in attributes {
                guard !key.isEmpty, InLongAttributes.isValidComponent(key), InLongAttributes.isValidComponent(value) else {
                    throw DataProxyError(.invalidArgument, "attribute \(key)=\(value) contains '&' or '='", group: group, stream: stream)
                }
                if !text.isEmpty { text += "&" }
                text += key + "=" + value
            }
            recordAttributes = text
        }
        var messageText = ""
        for (key, value) in messageAttributes {
            guard !key.isEmpty, InLongAttributes.isValidComponent(key), InLongAttributes.isValidComponent(value) else {
                throw DataProxyError(.invalidArgument, "message attribute \(key)=\(value) is empty or contains '&' or '='", group: group, stream: stream)
            }
            guard !Self.reservedAttributeKeys.contains(key) else {
                throw DataProxyError(.invalidArgument, "message attribute \(key) is reserved by the server", group: group, stream: stream)
            }
            if !messageText.isEmpty { messageText += "&" }
            messageText += key + "=" + value
        }
        let key = BatchKey(group: group, stream: stream, perRecordAttributes: recordAttributes != nil, messageAttributes: messageText)
        return (key, recordAttributes)
    }
}
