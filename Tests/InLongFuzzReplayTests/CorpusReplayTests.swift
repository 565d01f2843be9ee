import Foundation
import InLongFuzzTargets
import Testing

/// Replays the fuzz corpus (seeds and every past finding) through the fuzz targets, without sanitizers, so that
/// a fixed finding stays fixed. `scripts/fuzz.sh` runs the same targets under libFuzzer.
@Suite struct CorpusReplayTests {
    static let corpus = Bundle.module.url(forResource: "Corpus", withExtension: nil)!

    @Test(arguments: FuzzTarget.allCases)
    func replay(_ target: FuzzTarget) throws {
        let directory = Self.corpus.appendingPathComponent(target.rawValue)
        let files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        var replayed = 0
        for file in files {
            let data = try Data(contentsOf: file)
            do {
                try data.withUnsafeBytes { try target.run($0) }
            } catch {
                Issue.record("\(target.rawValue)/\(file.lastPathComponent): \(error)")
            }
            replayed += 1
        }
        #expect(replayed > 0, "no corpus for \(target.rawValue)")
    }
}
