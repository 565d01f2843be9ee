import CoreMetrics
import Foundation
import InLongTransport
import InLongWire
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Sending ready jobs to connections, in order, and feeding their outcomes back.
extension DataProxyClient {
    /// Submits ready jobs in order, from one task, so that batches of a stream go out in the order they were
    /// sealed; their answers reach the machine through ``drainCompletions()``. Waits for a wake-up (a batch sealed,
    /// a retry due, a connection ready, a route found, the close) whenever nothing can go. Returns once the client
    /// closed and every record ended, or when cancelled.
    func dispatchLoop(group: inout DiscardingTaskGroup) async {
        // Compression output, reused by every batch the loop encodes itself: only the exact-size frame is
        // allocated per batch.
        var scratch = ByteBuffer()
        let scratchPool = ScratchPool()
        for await _ in self.wakeups {
            if self.modifyState({ ($0.isFinished, nil) }) { return }
            // Sealed batches are compressed beside this loop, several at once, so that one core does not
            // compress everything; they become ready in the order they were sealed.
            while let job = self.withMachineState({ $0.nextEncoding() }) {
                let handoff = JobHandoff(job)
                group.addTask { self.encodeAhead(handoff.take(), scratchPool: scratchPool) }
            }
            // Popped one by one, so that the queue's length tells senders how far behind this loop is.
            while let next = self.withMachine({ $0.nextJob(now: .now) }) {
                // No connection ready (starting, or every proxy down): the job is back in the queue, and the
                // router wakes this loop when a connection becomes ready.
                guard self.dispatch(next.job, avoiding: next.avoiding, scratch: &scratch, group: &group) else { break }
            }
        }
    }

    /// Encodes and submits one job; `false` when no connection could take it (it is back in the queue).
    func dispatch(
        _ job: DeliveryJob,
        avoiding: Set<Endpoint>,
        scratch: inout ByteBuffer,
        group: inout DiscardingTaskGroup
    ) -> Bool {
        if let transport = self.httpTransport {
            return self.dispatchOverHTTP(job, avoiding: avoiding, transport: transport, group: &group)
        }
        var job = job
        var pick = self.router.pick(for: job.batch.key.group, avoiding: avoiding)
        if case .noRoute = pick {
            // No proxy for its group yet: it waits for discovery, apart, while other groups go on.
            self.withMachine { ((), $0.awaitRoute(job)) }
            return true
        }
        // The frame holds the records once encoded (a failure report decodes them from it): the block goes back
        // to the accumulator, so memory holds what is on its way rather than twice that.
        var spentBlock: ByteBuffer?
        if job.frame == nil, case .picked = pick {
            do {
                job.frame = try self.encode(job, scratch: &scratch)
                spentBlock = job.batch.block
                job.batch.block = ByteBuffer()
            } catch {
                self.withMachine { ((), $0.encodingFailed(job, "\(error)")) }
                return true
            }
        }
        // A connection that stopped taking requests since it was told ready is dropped from the ready set: pick
        // again.
        while case .picked(let route) = pick {
            guard let future = self.router.submit(.data(uniq: job.uniq, frame: job.frame!), on: route) else {
                pick = self.router.pick(for: job.batch.key.group, avoiding: avoiding)
                continue
            }
            self.submitted(job, route: route, future: future, spentBlock: spentBlock)
            return true
        }
        self.withMachine { ((), $0.notSubmitted(job, spentBlock: spentBlock)) }
        return false
    }

    private func submitted(
        _ job: DeliveryJob,
        route: ProxyRouter.Route,
        future: EventLoopFuture<InLongResponse>,
        spentBlock: ByteBuffer?
    ) {
        let id = job.id
        let key = job.batch.key
        self.withMachine { ((), $0.submitted(job, to: route.endpoint, now: .now, spentBlock: spentBlock)) }
        self.observation.batchSent(key, records: job.batch.recordCount, frameBytes: job.frame!.readableBytes, proxy: route.endpoint)
        // Expected before the callback is set: an answer that came already is posted at once.
        let completions = self.completions
        completions.expect()
        future.whenComplete { result in
            completions.post(Completion(jobID: id, key: key, route: route, outcome: Self.outcome(of: result)))
        }
    }

    /// The answer to a submitted batch, for ``drainCompletions()``.
    struct Completion: Sendable {
        var jobID: Int
        var key: BatchKey
        var route: ProxyRouter.Route
        var outcome: DeliveryOutcome
    }

    /// Tells the machine the answers to submitted batches, all those that came meanwhile under one lock. Returns once
    /// the client closed and every batch submitted was answered.
    func drainCompletions() async {
        let observation = self.observation
        let router = self.router
        while let answered = await self.completions.next() {
            // At most `answersPerTurn` under one lock: a burst of acks does not hold senders back for long.
            for start in stride(from: 0, to: answered.count, by: Self.answersPerTurn) {
                let turn = answered[start..<min(start + Self.answersPerTurn, answered.count)]
                for completion in turn {
                    observation.batchAnswered(completion.key)
                    // The router keeps the proxies' health: it hears of every outcome that says something of the proxy.
                    if let succeeded = completion.outcome.proxySucceeded { router.recordOutcome(completion.route, succeeded: succeeded) }
                }
                let now = ContinuousClock.now
                self.withMachine { machine in
                    var actions = Machine.Actions()
                    for completion in turn { actions.merge(machine.completed(jobID: completion.jobID, outcome: completion.outcome, now: now)) }
                    return ((), actions)
                }
            }
        }
    }

    static let answersPerTurn = 64

    private static func outcome(of result: Result<InLongResponse, any Error>) -> DeliveryOutcome {
        switch result {
        case .success(.binaryAck(let ack)) where ack.result.isDelivered: .acked(proxyIP: ack.result.proxyIP)
        case .success(.binaryAck(let ack)): .rejected(ack.result.errorCode, message: ack.result.errorMessage)
        case .success(let other): .unexpectedReply("\(other)")
        case .failure(let error as TransportError): .transportFailed(error)
        case .failure(let error): .transportFailed(TransportError(.connectionClosed, mayHaveBeenDelivered: true, underlying: error))
        }
    }

    /// Encodes a job for the dispatcher, beside it, and reports the frame (or the failure) to the machine.
    private func encodeAhead(_ job: consuming DeliveryJob, scratchPool: ScratchPool) {
        var scratch = scratchPool.take()
        defer { scratchPool.give(scratch) }
        do {
            let frame = try self.encode(job, scratch: &scratch)
            // The machine's copy of the block is then the only one: it is recycled without a new allocation.
            job.batch.block = ByteBuffer()
            self.withMachine { ((), $0.encoded(jobID: job.id, frame: frame)) }
        } catch {
            self.withMachine { ((), $0.encodingFailed(jobID: job.id, "\(error)")) }
        }
    }

    func encode(_ job: DeliveryJob, scratch: inout ByteBuffer) throws -> ByteBuffer {
        let key = job.batch.key
        var extendedField = InLongExtendedField.default.union(self.configuration.batching.extendedField)
        if key.perRecordAttributes { extendedField.insert(.perRecordAttributes) }
        var block = job.batch.block
        var flags: UInt8 = 0
        if let threshold = self.configuration.batching.compressionThreshold, block.readableBytes > threshold {
            scratch.clear()
            scratch.writeSnappyCompressed(block)
            if scratch.readableBytes < block.readableBytes {
                block = scratch
                flags = InLongWireConstants.snappyFlag
            }
        }
        var attributes = "groupId=\(key.group)&streamId=\(key.stream)" + (key.messageAttributes.isEmpty ? "" : "&" + key.messageAttributes)
        if extendedField.contains(.trace) {
            // The trace bit promises the client's hop: where it left and when (the proxy adds node2ip and rtime2).
            attributes += "&node1ip=\(TraceHop.localIPv4)&rtime1=\(TraceHop.epochMilliseconds())"
        }
        let message = InLongBinaryMessage(
            typeFlags: flags,
            extendedField: extendedField,
            dataTime: job.batch.dataTime,
            count: UInt16(job.batch.recordCount),
            uniq: job.uniq,
            body: block,
            attributes: attributes
        )
        var frame = ByteBufferAllocator().buffer(capacity: message.frameLength)
        try message.encode(into: &frame)
        return frame
    }
}

/// A job on its way into an encoder's task, taken out once there: the task keeps no copy of the block that the
/// machine recycles.
final class JobHandoff: Sendable {
    private let job: Mutex<DeliveryJob?>

    init(_ job: DeliveryJob) {
        self.job = Mutex(job)
    }

    func take() -> DeliveryJob {
        self.job.withLock { $0.take()! }
    }
}

/// Compression outputs kept for the encoders, so that a batch does not allocate one.
final class ScratchPool: Sendable {
    private let buffers = Mutex<[ByteBuffer]>([])

    func take() -> ByteBuffer {
        self.buffers.withLock { $0.popLast() } ?? ByteBuffer()
    }

    func give(_ buffer: ByteBuffer) {
        self.buffers.withLock { buffers in
            if buffers.count < 8 { buffers.append(buffer) }
        }
    }
}

/// What trace mode writes of the client's hop (C++ `extend_field` bit 1): `node1ip` and `rtime1`.
package enum TraceHop {
    /// The first IPv4 address of an interface that is up and not loopback, else 127.0.0.1; looked up once.
    package static let localIPv4: String = {
        var addresses: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&addresses) == 0, let first = addresses else { return "127.0.0.1" }
        defer { freeifaddrs(addresses) }
        var found: String?
        for interface in sequence(first: first, next: { $0.pointee.ifa_next }) {
            let flags = Int32(interface.pointee.ifa_flags)
            guard let address = interface.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET),
                flags & Int32(IFF_UP) != 0, flags & Int32(IFF_LOOPBACK) == 0
            else { continue }
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(address, socklen_t(MemoryLayout<sockaddr_in>.size), &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 {
                found = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                break
            }
        }
        return found ?? "127.0.0.1"
    }()

    static func epochMilliseconds() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1_000).rounded(.down))
    }
}
