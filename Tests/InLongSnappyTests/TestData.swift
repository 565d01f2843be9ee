import InLongWire

enum TestData {
    static func random(count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    /// Log-like text: a fixed structure with varying numbers, as application logs look.
    static func logLines(bytes: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes + 200)
        var i = 0
        while out.count < bytes {
            let line =
                "2026-11-21 10:\(i % 60):\(i % 59).\(i % 1000)|INFO|order-service|user=\(i * 7919 % 100_000)"
                + "|action=checkout|items=\(i % 9)|amount=\(i % 500).90|region=eu-west-1|status=OK\n"
            out += line.utf8
            i += 1
        }
        return Array(out.prefix(bytes))
    }

    static func bytes(hex: String) -> [UInt8] {
        var result = [UInt8]()
        var iterator = hex.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            result.append(nibble(high) << 4 | nibble(low))
        }
        return result
    }

    private static func nibble(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: c - UInt8(ascii: "A") + 10
        }
    }
}
