import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The client's crash-safe spool: every accepted record is written to a segment file before its `send` returns
/// (and fsynced as ``DataProxyClient/Configuration/Spool/sync`` says); a segment is deleted once every record in
/// it ended; what a crashed client left is replayed by the next client on the same directory. The decisions are
/// ``SpoolState``'s; this class does the file work under one lock.
final class Spool: Sendable {
    private struct State {
        var machine: SpoolState
        /// The open segment: its number and descriptor.
        var file: (number: Int, descriptor: Int32)?
        var unsynced = false
        var closed = false
    }

    let directory: String
    let configuration: DataProxyClient.Configuration.Spool
    /// Segments a previous client left, oldest first: to replay.
    let leftovers: [String]
    private let lockDescriptor: Int32
    private let state: Mutex<State>

    /// Takes the directory (creating it), locked against a second client.
    init(configuration: DataProxyClient.Configuration.Spool) throws(DataProxyError) {
        let directory = configuration.directory
        self.directory = directory
        self.configuration = configuration
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DataProxyError(.invalidConfiguration, "spool \(directory): cannot create the directory: \(error)")
        }
        let lockPath = directory + "/LOCK"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lock >= 0 else { throw Self.error("cannot open \(lockPath)", errno) }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            let owner = (try? String(contentsOfFile: lockPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            Glibc.close(lock)
            throw DataProxyError(
                .invalidConfiguration,
                "spool \(directory) is in use by another client\(owner.map { $0.isEmpty ? "" : " (process \($0))" } ?? ""): two clients must not share a spool"
            )
        }
        _ = ftruncate(lock, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { Glibc.write(lock, $0, strlen($0)) }
        self.lockDescriptor = lock
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { Self.segmentNumber($0) != nil }
        let sorted = names.sorted { Self.segmentNumber($0)! < Self.segmentNumber($1)! }
        self.leftovers = sorted.map { directory + "/" + $0 }
        let first = (sorted.last.flatMap(Self.segmentNumber) ?? 0) + 1
        self.state = Mutex(State(machine: SpoolState(segmentBytes: configuration.segmentBytes, firstSegment: first)))
    }

    deinit {
        // A client dropped without running: its lock goes with it.
        self.close()
    }

    static func segmentName(_ number: Int) -> String {
        let digits = String(number)
        return "segment-" + String(repeating: "0", count: max(0, 12 - digits.count)) + digits + ".spool"
    }

    static func segmentNumber(_ name: String) -> Int? {
        guard name.hasPrefix("segment-"), name.hasSuffix(".spool") else { return nil }
        return Int(name.dropFirst("segment-".count).dropLast(".spool".count))
    }

    private static func error(_ what: String, _ code: Int32) -> DataProxyError {
        DataProxyError(.spoolFailed, "spool: \(what): \(String(cString: strerror(code)))")
    }

    // MARK: Writing

    /// Writes records accepted by one call, with one system call; durable on return when the sync policy is
    /// `always`. `record(i)` is the record with the `i`-th of `ids`. With `limit` (records spilled: on disk only),
    /// nothing is written when the spool would grow past `limit` bytes, and the result is `nil`.
    @discardableResult
    func write(
        ids: DataProxyRecordIDs,
        limit: Int? = nil,
        record: (Int) -> (body: ByteBuffer, key: BatchKey, attributes: String?)
    ) throws(DataProxyError) -> SpillLocation? {
        guard !ids.isEmpty else { return nil }
        var encoder = SpoolRecord.Encoder()
        var offset = 0
        for run in ids.runs {
            for id in run {
                let (body, key, attributes) = record(offset)
                if offset == 0 { encoder.buffer.reserveCapacity(ids.count * (body.readableBytes + 48 + key.group.utf8.count + key.stream.utf8.count)) }
                encoder.append(id: id, key: key, attributes: attributes, body: body)
                offset += 1
            }
        }
        return try self.write(encoder.buffer, ids: ids, limit: limit)
    }

    /// Writes a run of bodies of one key (the many-record `send` of bodies): the key encoded once.
    func write(ids: DataProxyRecordIDs, key: BatchKey, bodies: ArraySlice<ByteBuffer>) throws(DataProxyError) {
        guard !ids.isEmpty else { return }
        var encoder = SpoolRecord.Encoder()
        encoder.appendRun(ids: ids, key: key, bodies: bodies)
        try self.write(encoder.buffer, ids: ids)
    }

    @discardableResult
    private func write(_ buffer: ByteBuffer, ids: DataProxyRecordIDs, limit: Int? = nil) throws(DataProxyError) -> SpillLocation? {
        let result: Result<SpillLocation?, DataProxyError> = self.modifyState { state in
            guard !state.closed else { return .failure(DataProxyError(.shutDown, "the spool is closed")) }
            if let limit, state.machine.totalBytes + buffer.readableBytes > limit { return .success(nil) }
            let (number, isNew, delete) = state.machine.segment(forWriteOf: buffer.readableBytes)
            if isNew || state.file == nil {
                if let old = state.file {
                    self.retire(old.descriptor, unsynced: state.unsynced)
                    state.unsynced = false
                    state.file = nil
                }
                let path = self.directory + "/" + Self.segmentName(number)
                let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                guard descriptor >= 0 else { return .failure(Self.error("cannot create \(path)", errno)) }
                state.file = (number, descriptor)
            }
            self.delete(delete)
            let location = SpillLocation(segment: number, offset: state.machine.bytes(of: number), length: buffer.readableBytes)
            if let error = Self.writeAll(buffer, to: state.file!.descriptor) {
                return .failure(Self.error("cannot write \(Self.segmentName(number))", error))
            }
            state.machine.wrote(ids.runs, bytes: buffer.readableBytes, to: number)
            if self.configuration.sync == .always {
                guard fsync(state.file!.descriptor) == 0 else { return .failure(Self.error("cannot fsync \(Self.segmentName(number))", errno)) }
            } else {
                state.unsynced = true
            }
            return .success(location)
        }
        return try result.get()
    }

    /// Closes a segment no longer written to. Its last writes are forced to disk on NIO's blocking pool (unless the
    /// policy is `never`, or `always` forced them already): an fsync on a busy disk can take seconds, which the
    /// sender holding the spool's lock must not wait for.
    private func retire(_ descriptor: Int32, unsynced: Bool) {
        guard unsynced, self.configuration.sync != .never else {
            Glibc.close(descriptor)
            return
        }
        NIOThreadPool.singleton.submit { _ in
            _ = fsync(descriptor)
            Glibc.close(descriptor)
        }
    }

    private static func writeAll(_ buffer: ByteBuffer, to descriptor: Int32) -> Int32? {
        buffer.withUnsafeReadableBytes { bytes -> Int32? in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += written
            }
            return nil
        }
    }

    /// Fsyncs the open segment if anything was written since the last sync (the `interval` policy's tick). The
    /// fsync runs on a duplicate of the descriptor, outside the lock: a slow disk must not stall every `send`.
    /// Blocking: call it off the cooperative pool.
    func sync() {
        let descriptor: Int32? = self.modifyState { state in
            guard state.unsynced, let file = state.file else { return nil }
            state.unsynced = false
            return dup(file.descriptor)
        }
        guard let descriptor, descriptor >= 0 else { return }
        _ = fsync(descriptor)
        Glibc.close(descriptor)
    }

    // MARK: Ending

    /// Records ended (acked or failed, and reported): segments holding nothing else are deleted.
    func ended(_ ids: DataProxyRecordIDs) {
        self.modifyState { state in
            let delete = state.machine.ended(ids.runs)
            if let file = state.file, delete.contains(file.number) {
                Glibc.close(file.descriptor)
                state.file = nil
            }
            self.delete(delete)
        }
    }

    private func delete(_ numbers: [Int]) {
        for number in numbers { unlink(self.directory + "/" + Self.segmentName(number)) }
    }

    /// What the spool holds now.
    var statistics: (bytes: Int, segments: Int) {
        self.modifyState { state in (state.machine.totalBytes, state.machine.segments.count) }
    }

    /// Syncs and closes the open segment and releases the lock; segments with records that did not end stay for
    /// the next client.
    func close() {
        self.modifyState { state in
            guard !state.closed else { return }
            state.closed = true
            let delete = state.machine.sealCurrent()
            if let file = state.file {
                _ = fsync(file.descriptor)
                Glibc.close(file.descriptor)
                state.file = nil
            }
            self.delete(delete)
            Glibc.close(self.lockDescriptor)
        }
    }

    /// The spool's one lock site: its state and the file work that goes with it (a write and its bookkeeping
    /// must not interleave with another's).
    private func modifyState<Value>(_ body: (inout State) -> Value) -> Value {
        self.state.withLock { body(&$0) }
    }

    // MARK: Replay

    /// Reads a segment a previous client left: its whole records; a torn tail (a write cut short) is dropped,
    /// a corrupt segment is renamed `*.corrupt` after its valid records were read.
    static func read(segment path: String) throws(DataProxyError) -> (records: [SpoolRecord], stop: SpoolRecord.Scan.Stop?) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataProxyError(.spoolFailed, "spool: cannot read \(path)")
        }
        let scan = SpoolRecord.scan(ByteBuffer(bytes: data))
        if case .corrupt = scan.stop { _ = rename(path, path + ".corrupt") }
        return (scan.records, scan.stop)
    }

    /// Reads records written to the spool only back (they stay in it until they end).
    func read(_ location: SpillLocation) throws(DataProxyError) -> [SpoolRecord] {
        let path = self.directory + "/" + Self.segmentName(location.segment)
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Self.error("cannot open \(path)", errno) }
        defer { Glibc.close(descriptor) }
        var buffer = ByteBufferAllocator().buffer(capacity: location.length)
        var failure: Int32 = 0
        let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: location.length) { bytes in
            var done = 0
            while done < location.length {
                let count = pread(descriptor, bytes.baseAddress! + done, location.length - done, off_t(location.offset + done))
                if count < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                }
                guard count > 0 else { break }
                done += count
            }
            return done
        }
        guard read == location.length else {
            if failure != 0 { throw Self.error("cannot read \(path)", failure) }
            throw DataProxyError(.spoolFailed, "spool: \(path) ends before the \(location.length) bytes written at \(location.offset)")
        }
        let scan = SpoolRecord.scan(buffer)
        guard scan.stop == nil else {
            throw DataProxyError(.spoolFailed, "spool: records written to \(path) at \(location.offset) do not read back whole")
        }
        return scan.records
    }

    /// Deletes a replayed segment (its records were written again, under new ids).
    static func remove(segment path: String) {
        unlink(path)
    }
}
