import InLongWire
import Testing

@testable import InLongAgent

/// The task rules: which sources start and stop as the desired tasks change, and when a changed task's new source
/// may start.
@Suite struct TaskReconcilerTests {
    func task(_ id: String, _ path: String, group: String = "g") -> AgentTask {
        AgentTask(id: id, source: .init(paths: [path], group: group, stream: "s"))
    }

    @Test func anAddedTaskStartsARemovedOneStops() {
        var reconciler = TaskReconciler()
        #expect(reconciler.desired([self.task("a", "/a/*"), self.task("b", "/b/*")]) == [.start(handle: 0, self.task("a", "/a/*")), .start(handle: 1, self.task("b", "/b/*"))])
        reconciler.instanceStarting(0)
        // a has a file open: it stops, and ends with its last instance.
        #expect(reconciler.desired([self.task("b", "/b/*")]) == [.stop(handle: 0)])
        #expect(reconciler.running.map(\.handle) == [1])
        #expect(reconciler.instanceEnded(0) == [.ended(handle: 0)])
        #expect(reconciler.sources.keys.sorted() == [1])
    }

    @Test func anUnchangedTaskIsLeftAlone() {
        var reconciler = TaskReconciler()
        _ = reconciler.desired([self.task("a", "/a/*")])
        #expect(reconciler.desired([self.task("a", "/a/*")]).isEmpty)
    }

    @Test func aChangedTaskStartsItsNewSourceOnlyOnceTheOldOneLetGoOfItsFiles() {
        var reconciler = TaskReconciler()
        _ = reconciler.desired([self.task("a", "/a/*.log")])
        reconciler.instanceStarting(0)
        reconciler.instanceStarting(0)
        #expect(reconciler.desired([self.task("a", "/a/*")]) == [.stop(handle: 0)])
        #expect(reconciler.running.isEmpty)
        #expect(reconciler.instanceEnded(0).isEmpty)
        #expect(reconciler.instanceEnded(0) == [.ended(handle: 0), .start(handle: 1, self.task("a", "/a/*"))])
    }

    @Test func aSourceWithoutFilesStopsAtOnce() {
        var reconciler = TaskReconciler()
        _ = reconciler.desired([self.task("a", "/a/*")])
        #expect(reconciler.desired([self.task("a", "/b/*")]) == [.stop(handle: 0), .ended(handle: 0), .start(handle: 1, self.task("a", "/b/*"))])
    }

    @Test func twoTasksWithOneIdAreOne() {
        var reconciler = TaskReconciler()
        #expect(reconciler.desired([self.task("a", "/a/*"), self.task("a", "/b/*")]) == [.start(handle: 0, self.task("a", "/a/*"))])
    }

    @Test func aShutdownStopsEverySourceAndStartsNone() {
        var reconciler = TaskReconciler()
        _ = reconciler.desired([self.task("a", "/a/*"), self.task("b", "/b/*")])
        reconciler.instanceStarting(1)
        #expect(reconciler.shutdown() == [.stop(handle: 0), .ended(handle: 0), .stop(handle: 1)])
        #expect(reconciler.desired([self.task("c", "/c/*")]).isEmpty)
        #expect(reconciler.instanceEnded(1) == [.ended(handle: 1)])
        #expect(reconciler.sources.isEmpty)
    }

    @Test func localTasksAreNamedByTheirSources() {
        let a = AgentConfiguration.FileSource(paths: ["/a/*"], group: "g", stream: "s")
        var b = a
        b.stream = "t"
        let tasks = AgentTask.local([a, b, a])
        #expect(tasks.count == 2)
        #expect(tasks[0].id != tasks[1].id)
        #expect(AgentTask.local([a])[0].id == tasks[0].id)
    }

    // MARK: Random schedules

    /// Random desired sets over time, files opened by the scan for running sources, sources that stop slowly (their
    /// instances end late, in random order), and the real file registry handing files from one source to the next.
    /// After every step: at most one source per task id; every source whose task is gone or changed is stopping; a
    /// running source runs the task as desired; a file is open for one instance at most; committed offsets never move
    /// backwards, and a file opened again starts where it was committed.
    @Test(arguments: 0..<64)
    func randomSchedulesKeepTheTaskRules(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var reconciler = TaskReconciler()
        var registry = FileRegistry(checkpoint: Checkpoint(), maxOpenFiles: 3)
        let files: [UInt64] = [1, 2, 3, 4]
        // Each task variant matches some files: id → which files its paths match.
        let variants: [(id: String, path: String, files: Set<UInt64>)] = [
            ("a", "/x/*", [1, 2]), ("a", "/x/1", [1]), ("b", "/y/*", [3]), ("b", "/x/2", [2]), ("c", "/z/*", [3, 4]),
        ]
        func matches(_ task: AgentTask) -> Set<UInt64> { variants.first { $0.id == task.id && $0.path == task.source.paths[0] }!.files }
        // Open files: inode → (source handle, committed offset).
        var open: [UInt64: (handle: Int, committed: Int64)] = [:]
        var committed: [UInt64: Int64] = [:]
        var size: [UInt64: Int64] = Dictionary(uniqueKeysWithValues: files.map { ($0, 0) })
        func identity(_ inode: UInt64) -> Checkpoint.FileIdentity { .init(device: 1, inode: inode, fingerprint: 1, fingerprintLength: 1) }

        for _ in 0..<300 {
            switch random.next() % 6 {
            case 0:
                // A new desired set: a random choice of variants.
                let desired = variants.filter { _ in random.next() % 2 == 0 }.map { self.task($0.id, $0.path) }
                _ = reconciler.desired(desired)
            case 1:
                // A scan: the running sources' files; the registry decides which to open.
                var found: [FileRegistry.Found] = []
                for (handle, task) in reconciler.running {
                    for inode in matches(task).sorted() {
                        found.append(.init(path: "/f\(inode)", device: 1, inode: inode, source: handle, size: size[inode]!))
                    }
                }
                // Every file stays at its path: its offset is kept while no source matches it.
                let present = Set(files.map { FileRegistry.Key(device: 1, inode: $0) })
                for case .open(let file, let firstScan) in registry.scanned(found, present: present) {
                    reconciler.instanceStarting(file.source)
                    #expect(open[file.inode] == nil, "file \(file.inode) opened twice")
                    let start = registry.start(for: identity(file.inode), firstScan: firstScan, startAtEnd: false) { _ in true }
                    let offset: Int64 = if case .at(let at) = start { at } else { 0 }
                    #expect(offset == committed[file.inode] ?? 0, "file \(file.inode) reopened at \(offset), committed \(committed[file.inode] ?? 0)")
                    registry.opened(identity(file.inode), path: file.path, committed: offset)
                    open[file.inode] = (file.source, offset)
                }
            case 2:
                // Lines are written to a file.
                let inode = files[Int(random.next() % UInt64(files.count))]
                size[inode]! += Int64(random.next() % 100 + 1)
            case 3:
                // An open file's reads are acked up to somewhere it read.
                guard let (inode, file) = open.randomElement(using: &random) else { continue }
                let offset = min(size[inode]!, file.committed + Int64(random.next() % 200))
                #expect(offset >= file.committed)
                open[inode]!.committed = offset
                committed[inode] = offset
                registry.committed(identity(inode), offset: offset)
            default:
                // An instance of a stopping source ends (slowly: only now and then), handing its file over.
                let stopping = open.filter { reconciler.sources[$0.value.handle]?.stopping ?? true }
                guard let (inode, file) = stopping.randomElement(using: &random) else { continue }
                open[inode] = nil
                registry.released(identity(inode))
                _ = reconciler.instanceEnded(file.handle)
            }
            // At most one source per task id.
            let ids = reconciler.sources.values.map(\.task.id)
            #expect(Set(ids).count == ids.count)
            // Running sources run the desired task as it is; the others stop.
            for (_, source) in reconciler.sources where !source.stopping {
                #expect(reconciler.desired[source.task.id] == source.task)
            }
            // Each source counts its open files.
            for (handle, source) in reconciler.sources {
                #expect(source.instances == open.values.filter { $0.handle == handle }.count)
            }
            // A file open belongs to a known source.
            for (_, file) in open { #expect(reconciler.sources[file.handle] != nil) }
        }
    }
}
