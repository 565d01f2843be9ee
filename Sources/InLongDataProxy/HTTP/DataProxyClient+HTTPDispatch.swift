import InLongTransport
import NIOCore

/// Sending ready jobs over DataProxy's HTTP API: the same jobs, outcomes and machine as the TCP path; a job's
/// batch is posted as one form instead of written as one type-7 frame.
extension DataProxyClient {
    /// Posts one job; `false` when every proxy of its group has its cap of requests in flight (the job is back in
    /// the queue, and the end of a request wakes the dispatcher). A job whose group has no proxy yet waits for the
    /// Manager apart, as on TCP.
    func dispatchOverHTTP(
        _ job: DeliveryJob,
        avoiding: Set<Endpoint>,
        transport: HTTPBatchTransport,
        group: inout DiscardingTaskGroup
    ) -> Bool {
        let proxy: Endpoint
        switch transport.pick(group: job.batch.key.group, avoiding: avoiding) {
        case .noRoute(let newlyUnrouted):
            if newlyUnrouted { self.discoveryWake.yield() }
            self.withMachine { ((), $0.awaitRoute(job)) }
            return true
        case .full:
            self.withMachine { ((), $0.notSubmitted(job, spentBlock: nil)) }
            return false
        case .picked(let picked, let newlyUnrouted):
            if newlyUnrouted { self.discoveryWake.yield() }
            proxy = picked
        }
        let form: ByteBuffer
        do {
            form = try HTTPBatchEncoding.form(of: job.batch)
        } catch {
            transport.finished(proxy, succeeded: true)
            self.withMachine { ((), $0.encodingFailed(job, error.description)) }
            return true
        }
        let id = job.id
        let key = job.batch.key
        let records = job.batch.recordCount
        let deadline = job.deadline
        let observation = self.observation
        // The job stays handed over until the request head is written (a connection may still be made first): only
        // then may the proxy have its records, so only then is it submitted. The block stays with the job: a retry
        // encodes it again, and a failure report decodes its records.
        group.addTask {
            let (outcome, written) = await transport.post(form, to: proxy, deadline: deadline) {
                self.withMachine { ((), $0.submitted(job, to: proxy, now: .now, spentBlock: nil)) }
                observation.batchSent(key, records: records, frameBytes: form.readableBytes, proxy: proxy)
            }
            transport.finished(proxy, succeeded: outcome.proxySucceeded ?? true)
            if written {
                observation.batchAnswered(key)
                self.withMachine { ((), $0.completed(jobID: id, outcome: outcome, now: .now)) }
            } else {
                self.withMachine { ((), $0.failedBeforeWriting(job, to: proxy, outcome: outcome, now: .now)) }
            }
            // A request slot is free: jobs that found every proxy at its cap can go.
            self.wake.yield()
        }
        return true
    }
}
