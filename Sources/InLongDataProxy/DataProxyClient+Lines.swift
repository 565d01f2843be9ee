public import NIOCore

/// Accepting records delimited in one buffer (lines of a file, say), read in place.
extension DataProxyClient {
    /// Accepts the records delimited in `lines`: each record is the bytes before a `delimiter`, the last one also
    /// when no delimiter ends it; with the newline delimiter a carriage return before it is left out too (CRLF
    /// line ends). Empty records are left out. The records are copied into their batches straight from `lines`,
    /// with no buffer per record, one lock per run that fits the buffer. Returns their ids (in order); when it
    /// throws a ``DataProxyError`` part way, the records accepted before are in its
    /// ``DataProxyError/acceptedRecords``.
    ///
    /// - Parameters:
    ///   - lines: The records, each followed by `delimiter` (the last one may end without it).
    ///   - delimiter: The byte that ends a record.
    ///   - group: The InLong group of every record.
    ///   - stream: The InLong stream of every record.
    ///   - attributes: Pairs added to the attribute string of every message carrying these records (as the Java
    ///     SDK's extra attributes); the server's reserved keys (``reservedAttributeKeys``) are refused.
    @discardableResult
    public func send(
        lines: ByteBuffer,
        delimiter: UInt8 = UInt8(ascii: "\n"),
        group: String,
        stream: String,
        attributes: [(String, String)] = []
    ) async throws -> DataProxyRecordIDs {
        try await self.appendDelimited(lines, delimiter: delimiter, group: group, stream: stream, attributes: attributes).ids
    }

    /// What ``appendDelimited(_:delimiter:group:stream:attributes:)`` accepted.
    package struct DelimitedAppended: Sendable {
        package var ids = DataProxyRecordIDs()
        /// Empty records left out.
        package var empty = 0
        /// The accepted records' bytes.
        package var bytes = 0
    }

    /// ``send(lines:delimiter:group:stream:attributes:)``, also telling how many empty records were left out and
    /// the records' bytes (what `inlong send` reports).
    package func appendDelimited(
        _ lines: ByteBuffer,
        delimiter: UInt8 = UInt8(ascii: "\n"),
        group: String,
        stream: String,
        attributes: [(String, String)] = []
    ) async throws -> DelimitedAppended {
        var appended = DelimitedAppended()
        guard lines.readableBytes > 0 else { return appended }
        let (key, _) = try self.validate(lines, group: group, stream: stream, dataTime: nil, attributes: [], messageAttributes: attributes)
        if self.spool != nil {
            // The spool writes the records one by one, from buffers of their own.
            let (bodies, empty) = DelimitedRecords.slices(lines, delimiter: delimiter)
            appended.empty = empty
            appended.bytes = bodies.reduce(0) { $0 + $1.readableBytes }
            appended.ids = try await self.appendRun(bodies, group: group, stream: stream, attributes: attributes, tracker: nil)
            return appended
        }
        // The task's records of the stream in its lane go first.
        self.handInLaneBatch(of: key)
        // Only an error message needs the count.
        let total = { DelimitedRecords.count(lines, delimiter: delimiter).records }
        var offset = 0
        while offset < lines.readableBytes {
            try Self.checkCancellation(key: key, accepted: appended.ids, of: total())
            let turn = self.appendDelimitedTurn(lines, from: offset, delimiter: delimiter, key: key)
            if !turn.ids.isEmpty {
                let ids = DataProxyRecordIDs(turn.ids)
                self.observation.recordsAccepted(ids.count)
                appended.ids.formUnion(ids)
            }
            appended.empty += turn.empty
            appended.bytes += turn.bytes
            offset = turn.end
            if let limit = turn.tooLargeLimit, let length = turn.stoppedBefore {
                var error = self.tooLarge(lines.getSlice(at: lines.readerIndex + offset, length: length)!, limit: limit, key: key)
                error.acceptedRecords = appended.ids
                throw error
            }
            guard offset < lines.readableBytes else { break }
            // No stop: the turn's reservation ran out (or the batch limit was lowered meanwhile): the next turn
            // goes on.
            guard let blocked = turn.blocked else { continue }
            let bytes = BatchAccumulator.quotaBytes(bodyLength: turn.stoppedBefore ?? 0, attributesLength: nil)
            try await self.waitToAppend(blocked, bytes: bytes, key: key, accepted: appended.ids, of: total())
        }
        return appended
    }

    /// What one turn of ``appendDelimited(_:delimiter:group:stream:attributes:)`` did: the records accepted took
    /// `ids`; `end` is where the next record starts.
    struct DelimitedTurn {
        var ids: Range<UInt64>
        var end: Int
        var empty = 0
        var bytes = 0
        var blocked: Machine.Blocked?
        /// The body length of the record it stopped before.
        var stoppedBefore: Int?
        /// The limit the record it stopped before exceeds.
        var tooLargeLimit: Int?
    }

    /// One turn: the delimited records from `offset` on, as far as the quota and the backlog allow, written into
    /// their batches between two short turns of the lock (``BatchFill``).
    @inline(never)
    func appendDelimitedTurn(_ lines: ByteBuffer, from offset: Int, delimiter: UInt8, key: BatchKey) -> DelimitedTurn {
        let wanted = lines.withUnsafeReadableBytes { BatchAccumulator.wanted(delimited: $0, from: offset, delimiter: delimiter) }
        var fill: BatchFill
        switch self.withMachineState({ $0.beginFill(key: key, wanted: wanted) }) {
        case .blocked(let blocked): return DelimitedTurn(ids: 0..<0, end: offset, blocked: blocked)
        case .fill(let started): fill = started
        }
        lines.withUnsafeReadableBytes { fill.fill(from: DelimitedFillSource(bytes: $0, delimiter: delimiter), at: offset) }
        var turn = DelimitedTurn(ids: 0..<0, end: fill.cursor, empty: fill.empty, bytes: fill.bodyBytes)
        let now = ContinuousClock.now
        let wallSeconds = wallClockSeconds()
        // Moved into the machine, so that its blocks stay uniquely referenced (a recycled block is not copied).
        var handed: BatchFill? = consume fill
        let committed = self.modifyState { state in state.machine.commitFill(handed.take()!, now: now, wallSeconds: wallSeconds) }
        turn.ids = committed.ids
        turn.blocked = committed.blocked
        turn.stoppedBefore = committed.stoppedBefore
        turn.tooLargeLimit = committed.tooLargeLimit
        if committed.refused {
            // Not accepted: the caller goes on from where the turn started.
            turn = DelimitedTurn(ids: committed.ids, end: offset, blocked: committed.blocked)
        }
        return turn
    }
}
