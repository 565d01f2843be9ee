public import InLongDataProxy

/// Everything an ``Agent`` needs: what to read, where the checkpoint lives, the budgets, and the client
/// that sends. Decodable from the `inlong agent --config` file (see ``AgentConfigurationFile``).
public struct AgentConfiguration: Sendable {
    /// Files matching `paths` (glob patterns), sent to one group and stream.
    public struct FileSource: Sendable, Hashable {
        /// Where a file found without a checkpoint starts.
        public enum StartPosition: String, Sendable, Hashable, Codable {
            /// Its first byte.
            case beginning
            /// Its end at the time it was found: only lines written later are sent. Applies to files present at
            /// start-up; files appearing later are read from their beginning (they are new).
            case end
        }

        /// Glob patterns of the files to read; a `**` component matches up to 8 directories
        /// (`/var/log/**/*.log`).
        public var paths: [String]
        public var group: String
        public var stream: String
        /// What the source's metrics are labelled with (`source="..."`). Defaults to `nil`: its paths, joined by
        /// `,` (see ``metricsName``).
        public var name: String?
        /// Pairs added to the attribute string of every message (InLong's `extraMap`).
        public var attributes: [String: String] = [:]
        public var startAt: StartPosition = .beginning
        /// Lines longer than this many bytes (the newline and a `\r` before it not counted) are overlong.
        /// Defaults to 1 MiB.
        public var maxLineLength = 1 << 20
        /// What becomes of an overlong line. Defaults to ``OverlongPolicy/truncate``.
        public var overlong: OverlongPolicy = .truncate
        /// Joins lines into records (stack traces, indented continuations). Defaults to `nil`: a record per line.
        public var multiline: Multiline?
        /// When not empty, only records matching one of these regular expressions are sent (after multiline: a
        /// stack trace is kept whole if any of its lines matches). Defaults to none.
        public var include: [String] = []
        /// Records matching one of these regular expressions are not sent (after multiline, and after
        /// ``include``). Defaults to none.
        public var exclude: [String] = []
        /// Files matching one of these globs (`fnmatch`, against the whole path; `*` also matches `/`) are not read,
        /// even when `paths` match them. Defaults to none.
        public var excludeFiles: [String] = []
        /// A file found without a checkpoint that was not modified for this long is read from its end, not its
        /// start: only lines written later are sent. Defaults to `nil` (every file from its start, or as
        /// ``startAt`` says).
        public var ignoreOlder: Duration?
        /// A file not grown for this long is closed, its offset kept; a scan opens it again once it grew (or when
        /// it was truncated), and a new file at its path is found as any new file is (Filebeat's
        /// `close_inactive`). Frees descriptors and slots of ``AgentConfiguration/maxOpenFiles`` on hosts with
        /// many quiet logs. Defaults to `nil`: a file stays open while its path names it.
        public var closeInactive: Duration?
        /// How fast the source may be read (all its files together). Defaults to `nil`: as fast as the proxies
        /// take it.
        public var rateLimit: RateLimit?
        /// Attributes saying where each record comes from. Defaults to none.
        public var origin = Origin()

        /// Joins consecutive lines into one record, as Filebeat's `multiline` (`type: pattern`) does.
        ///
        /// With ``Match/after``, a line that is a continuation (it matches ``pattern``, or with ``negate`` it does
        /// not) joins the record before it; with ``Match/before``, a continuation is followed in its record by the
        /// next line. Lines are joined with `\n`. Java stack traces that start with a timestamp: `pattern:
        /// '^[0-9]{4}-'`, `negate: true`; indented continuations: `pattern: '^[[:space:]]'`.
        public struct Multiline: Sendable, Hashable {
            /// Which way a continuation line joins.
            public enum Match: String, Sendable, Hashable, Codable {
                /// A continuation joins the line before it.
                case after
                /// A continuation is followed, in its record, by the next line.
                case before
            }

            /// A POSIX extended regular expression (as `grep -E`, with `\d`, `\s` and `\w`), found anywhere in
            /// the line unless anchored.
            public var pattern: String
            /// Lines that do *not* match are the continuations. Defaults to `false`.
            public var negate = false
            /// Defaults to ``Match/after``.
            public var match = Match.after
            /// A record holds at most this many lines: the next continuation starts a new record (counted in
            /// ``AgentStatistics/cutRecords``; unlike Filebeat, which drops it, no line is lost). Defaults to 500.
            public var maxLines = 500
            /// A record holds at most this many bytes (lines and the `\n` between them): the line that would pass
            /// it starts a new record; a single line longer is overlong (see ``FileSource/overlong``). Defaults to
            /// 10 MiB.
            public var maxBytes = 10 << 20
            /// The record under way is sent when no line came for this long (the last record of a quiet file).
            /// Defaults to 5 s.
            public var timeout: Duration = .seconds(5)

            public init(pattern: String) {
                self.pattern = pattern
            }
        }

        /// Attributes telling where a record comes from, each under the key given (`nil`: not added). The file's
        /// name, its path's named groups and the host are message attributes (one set per file); the offset is
        /// an attribute of each record.
        public struct Origin: Sendable, Hashable {
            /// The key of the file's name (its last path component).
            public var fileName: String?
            /// The key of the file's whole path.
            public var path: String?
            /// The key of the host's name.
            public var host: String?
            /// The key of the record's offset: where its first line starts in the file.
            public var offset: String?
            /// A regular expression (Swift `Regex` syntax) matched against the file's path: each named group
            /// becomes an attribute, as `stream` in `/var/log/(?<stream>[^/]+)/`.
            public var pathPattern: String?

            public init() {}

            /// Whether any origin attribute is asked for.
            public var isEmpty: Bool { self == Origin() }
        }

        public init(paths: [String], group: String, stream: String) {
            self.paths = paths
            self.group = group
            self.stream = stream
        }

        /// The `source` label of its metrics: its ``name``, or its paths joined by `,`.
        public var metricsName: String { self.name ?? self.paths.joined(separator: ",") }
    }

    /// What becomes of a line longer than ``FileSource/maxLineLength``; counted either way
    /// (``AgentStatistics/overlongLines``).
    public enum OverlongPolicy: String, Sendable, Hashable, Codable {
        /// Keep its first `maxLineLength` bytes.
        case truncate
        /// Leave it out.
        case skip
    }

    public var sources: [FileSource]
    /// Messages received over TCP or UDP (syslog, or lines). Defaults to none.
    public var listeners: [Listener] = []
    /// Holds the checkpoint (`checkpoint.json`) and the dead-letter file (`dead-letter.jsonl`).
    public var stateDirectory: String
    /// How to reach the proxies. The agent sends each group through a client of its own, with this
    /// configuration and an even share of its `buffer` bounds, so that one cluster that is down cannot take the
    /// memory of the others.
    public var client: DataProxyClient.Configuration

    /// Bytes read and not yet acked, over all files: reading stops (never drops) while it is used up. Shared out
    /// evenly among the sources' groups, so that a group whose cluster is down holds at most its part and the
    /// others go on. Defaults to 256 MiB.
    public var maxUnackedBytes = 256 << 20
    /// Bytes read and not yet acked in one file, so that a failing stream holds at most this much of the budget.
    /// Defaults to 16 MiB.
    public var maxUnackedBytesPerFile = 16 << 20
    /// Bytes read from a file at a time (one receipt, one offset range). Defaults to 1 MiB.
    public var readSize = 1 << 20
    /// Files read at once; more matching files wait for a slot. Defaults to 256.
    public var maxOpenFiles = 256
    /// How often the paths are searched for new files. Defaults to 1 s.
    public var scanInterval: Duration = .seconds(1)
    /// How often a file at its end is looked at again. Defaults to 100 ms.
    public var pollInterval: Duration = .milliseconds(100)
    /// How often the checkpoint is written when offsets moved (and always at shutdown). Defaults to 1 s.
    public var checkpointInterval: Duration = .seconds(1)
    /// A file renamed away or deleted is released once it has not grown for this long and all its lines are
    /// acked (a writer may still append to a file it has open after a rotation). Defaults to 5 s.
    public var releaseAfter: Duration = .seconds(5)
    /// On shutdown, how long to wait for acks of what was read before writing the checkpoint. Defaults to 30 s.
    public var shutdownTimeout: Duration = .seconds(30)
    /// A failed resend of retriable failures waits this long first. Defaults to 1 s.
    public var resendDelay: Duration = .seconds(1)
    /// A group whose lines wait and of which none ended for this long is reported stalled (a warning naming its
    /// proxies, ``AgentStatistics/stalledGroups``, the `inlong_agent_stalled_groups` gauge). Defaults to 5 s.
    public var stallAfter: Duration = .seconds(5)

    public init(sources: [FileSource], stateDirectory: String, client: DataProxyClient.Configuration) {
        self.sources = sources
        self.stateDirectory = stateDirectory
        self.client = client
    }

    public var checkpointPath: String { self.stateDirectory + "/checkpoint.json" }
    public var deadLetterPath: String { self.stateDirectory + "/dead-letter.jsonl" }
    /// Where the agent keeps the Manager's last good proxy lists, unless configured otherwise.
    public static func proxyCacheFile(in stateDirectory: String) -> String { stateDirectory + "/proxy-cache.json" }
}
