import InLongWire
import NIOCore
import Testing

@testable import InLongAgent

/// Syslog over TCP: RFC 6587's two framings, and the RFC 5424 and RFC 3164 headers.
@Suite struct SyslogFrameSplitterTests {
    private func split(_ chunks: [String], max: Int = 1024) throws(SyslogFramingError) -> [String] {
        var splitter = SyslogFrameSplitter(maxMessageLength: max)
        var messages: [ByteBuffer] = []
        for chunk in chunks { try splitter.consume(ByteBuffer(string: chunk), appendingTo: &messages) }
        return messages.map { String(buffer: $0) }
    }

    @Test func octetCountedAndNewlineFramesMixAndSplitAnywhere() throws {
        let stream = "11 <13>hello\nx<13>plain\r\n\n<14>nul\u{0}\n14 <13>two\nlines!"
        #expect(try self.split([stream]) == ["<13>hello\nx", "<13>plain", "<14>nul", "<13>two\nlines!"])
        // Every split of the same stream in two gives the same messages.
        for cut in 0...stream.utf8.count {
            let bytes = Array(stream.utf8)
            let chunks = [String(decoding: bytes[..<cut], as: UTF8.self), String(decoding: bytes[cut...], as: UTF8.self)]
            #expect(try self.split(chunks) == ["<13>hello\nx", "<13>plain", "<14>nul", "<13>two\nlines!"], "cut at \(cut)")
        }
    }

    @Test func anUnfinishedFrameIsHeldNotEmitted() throws {
        var splitter = SyslogFrameSplitter(maxMessageLength: 100)
        var messages: [ByteBuffer] = []
        try splitter.consume(ByteBuffer(string: "<13>no end yet"), appendingTo: &messages)
        try splitter.consume(ByteBuffer(string: " and more"), appendingTo: &messages)
        #expect(messages.isEmpty)
        #expect(splitter.heldBytes == 23)
        try splitter.consume(ByteBuffer(string: "\n20 <13>counted"), appendingTo: &messages)
        #expect(messages.map { String(buffer: $0) } == ["<13>no end yet and more"])
        #expect(splitter.heldBytes == 14)
    }

    @Test func aLongNewlineFrameIsCutAndTheRestIsANewFrame() throws {
        var splitter = SyslogFrameSplitter(maxMessageLength: 8)
        var messages: [ByteBuffer] = []
        try splitter.consume(ByteBuffer(string: "<13>abcdefgh\n<13>ok\n"), appendingTo: &messages)
        #expect(messages.map { String(buffer: $0) } == ["<13>abcd", "efgh", "<13>ok"])
        #expect(splitter.cutMessages == 1)
    }

    @Test func framesThatCannotBeFollowedAreErrors() {
        #expect(throws: SyslogFramingError.self) { try self.split(["12x <13>a"]) }
        #expect(throws: SyslogFramingError.self) { try self.split(["2000 <13>a"], max: 100) }
        #expect(throws: SyslogFramingError.self) { try self.split(["123456789"], max: 100) }
        #expect((try? self.split(["99"], max: 100)) == [])  // still a possible length: held
    }

    /// Random messages, each framed either way, in random chunks: exactly the messages come out, in order, and the
    /// splitter never holds more than one frame's worth.
    @Test(arguments: 0..<40 as Range<UInt64>) func randomStreamsInRandomChunks(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let max = 64
        var expected: [[UInt8]] = []
        var stream: [UInt8] = []
        for _ in 0..<200 {
            let length = Int(random.next() % UInt64(max)) + 1
            if random.next() % 2 == 0 {
                // Octet-counted: any bytes.
                let body = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                stream += Array("\(length) ".utf8) + body
                expected.append(body)
            } else {
                // Newline-ended: starts with "<", holds no newline, ends in neither "\r" nor NUL.
                var body = [UInt8(ascii: "<")] + (1..<length).map { _ in UInt8(ascii: "a") + UInt8(random.next() % 26) }
                if body.count >= 3, random.next() % 4 == 0 { body[body.count / 2] = UInt8(ascii: "\r") }
                stream += body + (random.next() % 3 == 0 ? Array("\r\n".utf8) : [UInt8(ascii: "\n")])
                expected.append(body)
            }
        }
        var splitter = SyslogFrameSplitter(maxMessageLength: max)
        var messages: [ByteBuffer] = []
        var index = 0
        while index < stream.count {
            let size = Int(random.next() % 150) + 1
            let end = Swift.min(index + size, stream.count)
            try splitter.consume(ByteBuffer(bytes: stream[index..<end]), appendingTo: &messages)
            #expect(splitter.heldBytes <= max + 3)
            index = end
        }
        let got = messages.map { Array($0.readableBytesView) }
        let firstDifference = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(got.count == expected.count && firstDifference == nil, "\(got.count) of \(expected.count), first difference at \(String(describing: firstDifference))")
        #expect(splitter.heldBytes == 0)
        #expect(splitter.cutMessages == 0)
    }
}

@Suite struct SyslogMessageTests {
    @Test func rfc5424ExamplesOfTheRFC() throws {
        let first = try #require(SyslogMessage(Array("<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{FEFF}'su root' failed for lonvick on /dev/pts/8".utf8)))
        #expect(first.format == .rfc5424)
        #expect(first.facility == 4 && first.severity == 2)
        #expect(first.timestamp == "2003-10-11T22:14:15.003Z")
        #expect(first.hostname == "mymachine.example.com")
        #expect(first.appName == "su" && first.procID == nil && first.msgID == "ID47" && first.structuredData == nil)
        #expect(first.message == "'su root' failed for lonvick on /dev/pts/8")

        let second = try #require(SyslogMessage(Array("<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.".utf8)))
        #expect(second.facility == 20 && second.severity == 5)
        #expect(second.hostname == "192.0.2.1" && second.appName == "myproc" && second.procID == "8710" && second.msgID == nil)
        #expect(second.message == "%% It's time to make the do-nuts.")

        let sd = #"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#
        let third = try #require(SyslogMessage(Array("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \(sd)".utf8)))
        #expect(third.structuredData == sd)
        #expect(third.message == "")

        let escaped = #"[id@1 text="a \] b"]"#
        let fourth = try #require(SyslogMessage(Array("<14>1 - host app - - \(escaped) after".utf8)))
        #expect(fourth.timestamp == nil && fourth.structuredData == escaped && fourth.message == "after")
    }

    @Test func rfc3164AsSendersWriteIt() throws {
        let full = try #require(SyslogMessage(Array("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8".utf8)))
        #expect(full.format == .rfc3164)
        #expect(full.facility == 4 && full.severity == 2)
        #expect(full.timestamp == "Oct 11 22:14:15" && full.hostname == "mymachine" && full.appName == "su" && full.procID == nil)
        #expect(full.message == "'su root' failed for lonvick on /dev/pts/8")

        let local = try #require(SyslogMessage(Array("<38>Dec  6 04:40:00 sshd[1234]: Accepted publickey".utf8)))
        #expect(local.timestamp == "Dec  6 04:40:00" && local.hostname == nil && local.appName == "sshd" && local.procID == "1234")
        #expect(local.message == "Accepted publickey")

        let untagged = try #require(SyslogMessage(Array("<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!".utf8)))
        #expect(untagged.hostname == "10.0.0.99" && untagged.appName == nil && untagged.message == "Use the BFG!")

        let bare = try #require(SyslogMessage(Array("<13>just text".utf8)))
        #expect(bare.timestamp == nil && bare.hostname == nil && bare.appName == nil && bare.message == "just text")
    }

    @Test func theHeaderBecomesAttributes() throws {
        let rfc5424 = try #require(SyslogMessage(Array("<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time".utf8)))
        #expect(rfc5424.attributes.map { "\($0)=\($1)" } == [
            "facility=local4", "severity=notice", "hostname=192.0.2.1", "appName=myproc", "procId=8710", "timestamp=2003-08-24T05:14:15.000003-07:00",
        ])
        let rfc3164 = try #require(SyslogMessage(Array("<38>Dec  6 04:40:00 sshd[1234]: Accepted publickey".utf8)))
        #expect(rfc3164.attributes.map { "\($0)=\($1)" } == ["facility=auth", "severity=info", "appName=sshd", "procId=1234", "timestamp=Dec  6 04:40:00"])
        // A value the attribute string cannot carry as it is: percent-encoded.
        let odd = try #require(SyslogMessage(Array("<0>1 - a=b&c app%1 - ID=1 - text".utf8)))
        #expect(odd.attributes.map { "\($0)=\($1)" } == ["facility=kern", "severity=emerg", "hostname=a%3Db%26c", "appName=app%251", "msgId=ID%3D1"])
        // Every priority has its keywords.
        for priority in 0...191 {
            let message = try #require(SyslogMessage(Array("<\(priority)>x".utf8)))
            #expect(message.attributes.count == 2)
        }
    }

    @Test func withoutAPriorityItIsNotSyslog() {
        for text in ["hello", "<>x", "<192>x", "<1234>x", "<12", "<1a>x", ""] {
            #expect(SyslogMessage(Array(text.utf8)) == nil, "\(text)")
        }
    }

    /// Any bytes: parsed or refused, never a trap.
    @Test func anyBytesAreParsedOrRefused() {
        var random = SplitMix64(seed: 5)
        let pieces = ["<", ">", "1", " ", "-", "[", "]", "\\", "13", "Oct 11 22:14:15", ":", "[1]", "a", "\u{FEFF}"]
        for _ in 0..<2000 {
            let count = Int(random.next() % 12)
            let text = (0..<count).map { _ in pieces[Int(random.next() % UInt64(pieces.count))] }.joined()
            for bytes in [Array(("<13>" + text).utf8), Array(text.utf8)] {
                guard let message = SyslogMessage(bytes) else { continue }
                #expect((0...23).contains(message.facility) && (0...7).contains(message.severity))
            }
        }
    }
}
