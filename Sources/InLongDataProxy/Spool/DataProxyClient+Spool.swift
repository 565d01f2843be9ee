import Logging
import NIOCore

extension DataProxyClient.Configuration {
    /// A directory where every accepted record is written before its `send` returns, so that records accepted
    /// and not yet acked survive a crash of the application: the next client on the same directory sends them
    /// again (at least once across crashes; duplicates come only from segments not wholly acked). See
    /// <doc:DeliveryGuarantees>.
    public struct Spool: Sendable, Hashable {
        /// When written records are forced to disk (fsync). A write reaches the kernel before `send` returns in
        /// every case, so a crash of the process alone loses nothing; the policy is about the machine failing.
        public enum Sync: Sendable, Hashable {
            /// Before every `send` returns: nothing acknowledged to the caller is lost even on power loss; the
            /// slowest.
            case always
            /// At most this long after a write: a machine failure loses at most this window.
            case interval(Duration)
            /// When the kernel decides.
            case never
        }

        /// The spool's directory, created if needed. One client at a time (a lock file refuses a second).
        public var directory: String
        /// When written records are forced to disk. Defaults to every 100 ms.
        public var sync: Sync = .interval(.milliseconds(100))
        /// Bytes per segment file; a segment is deleted once every record in it ended. Defaults to 8 MiB.
        public var segmentBytes = 8 << 20
        /// The most bytes the spool grows to by records the memory quota has no room for: while no proxy takes
        /// records, those beyond ``DataProxyClient/Buffer/maxBytes`` are accepted onto disk only
        /// (read back as memory frees) until the spool holds this much; then ``DataProxyClient/Buffer/whenFull``
        /// applies. Defaults to 1 GiB.
        public var maxBytes = 1 << 30

        public init(directory: String) {
            self.directory = directory
        }
    }
}

extension DataProxyClient {
    /// Writes records a call accepted to the spool, if there is one. A failed write is a ``DataProxyError``
    /// naming the accepted records: they are delivered and reported, but would not survive a crash.
    /// Runs a write to the spool for records a call accepted. A failed write is a ``DataProxyError`` naming the
    /// accepted records: they are delivered and reported, but would not survive a crash.
    func spool(accepted: DataProxyRecordIDs, _ write: () throws(DataProxyError) -> Void) throws(DataProxyError) {
        do {
            try write()
        } catch {
            var error = error
            error.acceptedRecords = accepted
            self.logger.error("records not spooled", metadata: ["inlong.error": "\(error)"])
            throw error
        }
    }

    /// Sends again what a previous client on this spool left: each segment's records are appended as new
    /// records (and so spooled again), then the segment is deleted.
    func replaySpool() async {
        defer { self.spoolReplayed.open() }
        guard let spool = self.spool else { return }
        for path in spool.leftovers {
            let read: (records: [SpoolRecord], stop: SpoolRecord.Scan.Stop?)
            do {
                read = try Spool.read(segment: path)
            } catch {
                self.logger.error("cannot replay a spool segment", metadata: ["inlong.path": "\(path)", "inlong.error": "\(error)"])
                continue
            }
            switch read.stop {
            case .corrupt(let offset):
                self.logger.error(
                    "a spool segment is corrupt: its records before the damage are sent again, the file is set aside",
                    metadata: ["inlong.path": "\(path).corrupt", "inlong.offset": "\(offset)", "inlong.records": "\(read.records.count)"]
                )
            case .tornTail:
                self.logger.info("a spool segment ends in a torn write (a crash mid-write): cut at its last whole record", metadata: ["inlong.path": "\(path)"])
            case nil:
                break
            }
            var index = 0
            while index < read.records.count {
                // Runs of one key go through the bulk path.
                let key = read.records[index].key
                var end = index
                while end < read.records.count, read.records[end].key == key { end += 1 }
                let prepared = read.records[index..<end].map { ($0.body, $0.key, $0.attributes) }
                do {
                    _ = try await self.append(prepared, tracker: nil)
                } catch {
                    // Closed or cancelled: the segment stays for the next client.
                    self.logger.warning("spool replay stopped", metadata: ["inlong.error": "\(error)"])
                    return
                }
                index = end
            }
            self.observation.recordsReplayed(read.records.count)
            if case .corrupt = read.stop {} else { Spool.remove(segment: path) }
        }
    }
}
