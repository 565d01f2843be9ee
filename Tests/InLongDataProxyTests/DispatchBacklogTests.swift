import Testing

@testable import InLongDataProxy

@Suite struct DispatchBacklogTests {
    @Test func sendersWaitAtTheLimitAndGoOnAtHalf() {
        let backlog = DispatchBacklog(limit: 16)
        #expect(backlog.room(ready: 0) == 16)
        #expect(backlog.room(ready: 10) == 6)
        #expect(backlog.room(ready: 16) == 0)
        #expect(backlog.room(ready: 20) == 0)
        #expect(!backlog.releasesWaiters(ready: 16))
        #expect(!backlog.releasesWaiters(ready: 9))
        #expect(backlog.releasesWaiters(ready: 8))
    }

    @Test func aStalledDispatcherHoldsNobodyBack() {
        var backlog = DispatchBacklog(limit: 16)
        backlog.stalled = true
        #expect(backlog.room(ready: 1000) == .max)
        #expect(backlog.releasesWaiters(ready: 1000))
    }

    @Test func noLimitForTheFailFastPolicy() {
        let backlog = DispatchBacklog(limit: .max)
        #expect(backlog.room(ready: 1_000_000) > 1_000_000)
    }
}
