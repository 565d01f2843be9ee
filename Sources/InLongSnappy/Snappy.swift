/// The snappy raw block format (not the framed stream format): a varint of the uncompressed length followed by
/// literal and copy elements.
///
/// The compressor follows the reference algorithm (64 KiB blocks, a 4-byte hash table of up to 16,384 entries,
/// skipping ahead faster through incompressible data), so its output is accepted by every snappy decoder.
/// The decompressor validates every element before touching memory: a hostile input gives a ``SnappyError``,
/// never a trap or an out-of-bounds access, and it never allocates more than the caller's limit.
///
/// ```swift
/// let compressed = Snappy.compress(Array("hello hello hello".utf8))
/// let original = try Snappy.decompress(compressed, maxUncompressedLength: 1 << 20)
/// ```
public enum Snappy {
    /// The largest output ``compress(_:into:)`` can produce for `inputLength` bytes.
    @inlinable
    public static func maxCompressedLength(forInputLength inputLength: Int) -> Int {
        32 + inputLength + inputLength / 6
    }

    /// Compresses `input` into `output`, which must hold at least
    /// ``maxCompressedLength(forInputLength:)`` bytes, and returns the length of the compressed block at its
    /// start. Bytes of `output` past that length may be overwritten too.
    public static func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int {
        // The block loop writes whole 16-byte literal copies and 4-byte copy elements that may end up to 15 bytes
        // past the bytes kept; output never exceeds the input by more than 1/32 plus a few bytes per block, so
        // the bound's slack (32 + 1/6 of the input) always holds them.
        precondition(
            output.count >= maxCompressedLength(forInputLength: input.count),
            "snappy output buffer is smaller than maxCompressedLength"
        )
        precondition(input.count <= Int(UInt32.max), "snappy input larger than 4 GiB")
        guard let dst = output.baseAddress else { return 0 }
        var d = writeVarint(UInt32(input.count), to: dst)
        guard let src = input.baseAddress, input.count > 0 else { return d }
        return withUnsafeTemporaryAllocation(of: UInt16.self, capacity: maxTableSize) { table in
            var position = 0
            while position < input.count {
                let blockLength = min(input.count - position, maxBlockSize)
                d += compressBlock(
                    src: src + position,
                    count: blockLength,
                    dst: dst + d,
                    table: table.baseAddress!
                )
                position += blockLength
            }
            return d
        }
    }

    /// Compresses a byte array.
    public static func compress(_ input: [UInt8]) -> [UInt8] {
        let capacity = maxCompressedLength(forInputLength: input.count)
        return input.withUnsafeBytes { source in
            [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
                count = compress(source, into: UnsafeMutableRawBufferPointer(buffer))
            }
        }
    }

    /// Reads the uncompressed length from the preamble of a compressed block.
    public static func uncompressedLength(of input: UnsafeRawBufferPointer) throws(SnappyError) -> Int {
        try readPreamble(input).length
    }

    /// Reads the uncompressed length from the preamble of a compressed block.
    public static func uncompressedLength(of input: [UInt8]) throws(SnappyError) -> Int {
        try input.withUnsafeBytes { buffer in
            Result { () throws(SnappyError) in try uncompressedLength(of: buffer) }
        }.get()
    }

    /// Decompresses `input` into `output`, which must be exactly ``uncompressedLength(of:)-(UnsafeRawBufferPointer)`` bytes long
    /// (a larger buffer is allowed; only the declared length is written). Returns the number of bytes written.
    public static func decompress(
        _ input: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws(SnappyError) -> Int {
        let (length, preambleSize) = try readPreamble(input)
        guard output.count >= length else {
            throw SnappyError(.outputBufferTooSmall, offset: 0)
        }
        if length == 0 {
            guard preambleSize == input.count else { throw SnappyError(.trailingBytes, offset: preambleSize) }
            return 0
        }
        try decompressElements(
            src: input.baseAddress!,
            from: preambleSize,
            count: input.count,
            dst: output.baseAddress!,
            length: length
        )
        return length
    }

    /// Decompresses a byte array, refusing (before allocating) any block that declares more than
    /// `maxUncompressedLength` bytes.
    public static func decompress(_ input: [UInt8], maxUncompressedLength: Int) throws(SnappyError) -> [UInt8] {
        try input.withUnsafeBytes { source in
            Result { () throws(SnappyError) in try decompress(source, maxUncompressedLength: maxUncompressedLength) }
        }.get()
    }

    /// Decompresses raw bytes, refusing (before allocating) any block that declares more than
    /// `maxUncompressedLength` bytes.
    public static func decompress(
        _ input: UnsafeRawBufferPointer,
        maxUncompressedLength: Int
    ) throws(SnappyError) -> [UInt8] {
        let length = try uncompressedLength(of: input)
        guard length <= maxUncompressedLength else {
            throw SnappyError(.lengthLimitExceeded, offset: 0)
        }
        var failure: SnappyError?
        let result = [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            do throws(SnappyError) {
                count = try decompress(input, into: UnsafeMutableRawBufferPointer(buffer))
            } catch {
                failure = error
                count = 0
            }
        }
        if let failure { throw failure }
        return result
    }
}

// MARK: - Compression

extension Snappy {
    @usableFromInline static let maxBlockSize = 65536
    static let maxTableSize = 1 << 14
    /// Bytes at the end of a block that are never searched, so 8- and 16-byte loads stay in bounds.
    static let inputMargin = 16 - 1
    static let minNonLiteralBlockSize = 1 + 1 + inputMargin

    // The hot loop below uses wrapping arithmetic (&+, &-): every index stays inside a 64 KiB block, so the
    // overflow checks of + and - could never fire and only cost instructions.

    @inline(__always)
    private static func load32(_ p: UnsafeRawPointer, _ i: Int) -> UInt32 {
        UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
    }

    @inline(__always)
    private static func load64(_ p: UnsafeRawPointer, _ i: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
    }

    /// Copies 16 bytes with two unaligned 8-byte loads and stores (no memmove call).
    @inline(__always)
    private static func copy16(_ dst: UnsafeMutableRawPointer, _ src: UnsafeRawPointer) {
        let a = src.loadUnaligned(as: UInt64.self)
        let b = src.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        dst.storeBytes(of: a, as: UInt64.self)
        dst.storeBytes(of: b, toByteOffset: 8, as: UInt64.self)
    }

    /// The table index of a 4-byte word: `shift` keeps the top log2(table size) bits, so no mask is needed.
    @inline(__always)
    private static func hash(_ u: UInt32, _ shift: UInt32) -> Int {
        Int(truncatingIfNeeded: (u &* 0x1e35_a7bd) &>> shift)
    }

    private static func writeVarint(_ value: UInt32, to dst: UnsafeMutableRawPointer) -> Int {
        var v = value
        var i = 0
        while v >= 0x80 {
            dst.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: i, as: UInt8.self)
            v >>= 7
            i += 1
        }
        dst.storeBytes(of: UInt8(v), toByteOffset: i, as: UInt8.self)
        return i + 1
    }

    /// Writes a literal tag for `length` bytes (1...65536) and returns its size.
    @inline(__always)
    private static func emitLiteralTag(_ dst: UnsafeMutableRawPointer, length: Int) -> Int {
        let n = length &- 1
        if n < 60 {
            dst.storeBytes(of: UInt8(truncatingIfNeeded: n << 2), as: UInt8.self)
            return 1
        } else if n < 256 {
            dst.storeBytes(of: UInt8(60 << 2), as: UInt8.self)
            dst.storeBytes(of: UInt8(truncatingIfNeeded: n), toByteOffset: 1, as: UInt8.self)
            return 2
        } else {
            // Blocks are at most 64 KiB, so two length bytes always suffice.
            dst.storeBytes(of: UInt8(61 << 2), as: UInt8.self)
            dst.storeBytes(of: UInt16(truncatingIfNeeded: n).littleEndian, toByteOffset: 1, as: UInt16.self)
            return 3
        }
    }

    /// A literal with exact copies only: for the end of a block, where reading past the literal is not allowed.
    private static func emitLiteral(
        _ dst: UnsafeMutableRawPointer,
        _ src: UnsafeRawPointer,
        _ start: Int,
        _ end: Int
    ) -> Int {
        let length = end - start
        let d = emitLiteralTag(dst, length: length)
        (dst + d).copyMemory(from: src + start, byteCount: length)
        return d + length
    }

    /// A literal inside a block's search area, in whole 16-byte copies up to 64 bytes (no memmove call): `end`
    /// is at most `count - inputMargin`, so the up to 15 bytes read past it are in the block, and the output has
    /// room for the up to 15 bytes written past it (see `compress(_:into:)`), which the next element overwrites.
    @inline(__always)
    private static func emitLiteralFast(
        _ dst: UnsafeMutableRawPointer,
        _ src: UnsafeRawPointer,
        _ start: Int,
        _ end: Int
    ) -> Int {
        let length = end &- start
        let d = emitLiteralTag(dst, length: length)
        if length <= 64 {
            var i = 0
            repeat {
                copy16(dst + (d &+ i), src + (start &+ i))
                i &+= 16
            } while i < length
        } else {
            (dst + d).copyMemory(from: src + start, byteCount: length)
        }
        return d &+ length
    }

    /// Writes one copy element for `length` (4...11) bytes at `offset` (1...65535) and returns its size.
    @inline(__always)
    private static func emitShortCopy(_ dst: UnsafeMutableRawPointer, offset: Int, length: Int) -> Int {
        // The most common case in text: a short match nearby fits the 2-byte form.
        if offset < 2048 {
            let element = (offset >> 8) << 5 | (length &- 4) << 2 | 1 | (offset & 0xff) << 8
            dst.storeBytes(of: UInt16(truncatingIfNeeded: element).littleEndian, as: UInt16.self)
            return 2
        }
        // The 3-byte form as one 4-byte store: the next element overwrites the extra byte.
        let element = UInt32(truncatingIfNeeded: offset << 8 | (length &- 1) << 2 | 2)
        dst.storeBytes(of: element.littleEndian, as: UInt32.self)
        return 3
    }

    /// Writes copy elements for `length` (4...65536) bytes at `offset` (1...65535) and returns their size.
    @inline(__always)
    private static func emitCopy(_ dst: UnsafeMutableRawPointer, offset: Int, length: Int) -> Int {
        var length = length
        var d = 0
        // 3-byte forms (tag, 2-byte offset) as 4-byte stores: each next element overwrites the extra byte.
        let far = UInt32(truncatingIfNeeded: offset) << 8 | 2
        // Pieces of 64 bytes, keeping at least 4 for the last piece.
        while length >= 68 {
            dst.storeBytes(of: (far | 63 << 2).littleEndian, toByteOffset: d, as: UInt32.self)
            d &+= 3
            length &-= 64
        }
        if length > 64 {
            dst.storeBytes(of: (far | 59 << 2).littleEndian, toByteOffset: d, as: UInt32.self)
            d &+= 3
            length &-= 60
        }
        if length < 12 {
            return d &+ emitShortCopy(dst + d, offset: offset, length: length)
        }
        let tag = UInt32(truncatingIfNeeded: length &- 1) << 2
        dst.storeBytes(of: (far | tag).littleEndian, toByteOffset: d, as: UInt32.self)
        return d &+ 3
    }

    /// Extends a match from `s` (candidate side `i`) to its end: 8 bytes at a time, then byte by byte in the
    /// last 8 bytes of the block.
    @inline(__always)
    private static func extendMatch(_ src: UnsafeRawPointer, _ s: Int, _ i: Int, count: Int) -> Int {
        var s = s
        var i = i
        while s &+ 8 <= count {
            let x = load64(src, s) ^ load64(src, i)
            if x != 0 { return s &+ x.trailingZeroBitCount &>> 3 }
            s &+= 8
            i &+= 8
        }
        while s < count && src.load(fromByteOffset: s, as: UInt8.self) == src.load(fromByteOffset: i, as: UInt8.self) {
            s &+= 1
            i &+= 1
        }
        return s
    }

    /// Compresses one block of at most 64 KiB; offsets stay inside the block, so 16-bit table entries suffice.
    private static func compressBlock(
        src: UnsafeRawPointer,
        count: Int,
        dst: UnsafeMutableRawPointer,
        table: UnsafeMutablePointer<UInt16>
    ) -> Int {
        if count < minNonLiteralBlockSize {
            return emitLiteral(dst, src, 0, count)
        }
        var shift: UInt32 = 32 - 8
        var tableSize = 1 << 8
        while tableSize < maxTableSize && tableSize < count {
            tableSize <<= 1
            shift -= 1
        }
        table.update(repeating: 0, count: tableSize)

        // Matches start at or before sLimit, so the loads below (up to 16 bytes from there) stay in the block.
        let sLimit = count - inputMargin
        var d = 0
        var nextEmit = 0
        var s = 1
        // The 8 bytes at `s`: the 4-byte words at s, s+1, s+2... are its shifts, so they need no loads of their own.
        var data = load64(src, s)

        outer: while true {
            // Step 1: find a 4-byte match. Positions go one by one at first, then ever faster through data that
            // does not match (skip / 32 bytes per lookup), so incompressible data costs little.
            var candidate = 0
            var skip = 32
            var found = false
            if sLimit &- s >= 16 {
                // The first 16 positions, 4 words from each 8-byte load.
                quick: for j in 0..<4 {
                    for k in 0..<4 {
                        let word = UInt32(truncatingIfNeeded: data)
                        let h = hash(word, shift)
                        candidate = Int(table[h])
                        table[h] = UInt16(truncatingIfNeeded: s &+ j &* 4 &+ k)
                        if load32(src, candidate) == word {
                            s &+= j &* 4 &+ k
                            found = true
                            break quick
                        }
                        data &>>= 8
                    }
                    data = load64(src, s &+ j &* 4 &+ 4)
                }
                if !found {
                    s &+= 16
                    skip &+= 16
                }
            }
            if !found {
                while true {
                    let word = UInt32(truncatingIfNeeded: data)
                    let h = hash(word, shift)
                    let step = skip &>> 5
                    skip &+= step
                    let nextS = s &+ step
                    if nextS > sLimit { break outer }
                    candidate = Int(table[h])
                    table[h] = UInt16(truncatingIfNeeded: s)
                    if load32(src, candidate) == word { break }
                    data = load64(src, nextS)
                    s = nextS
                }
            }

            // Bytes [nextEmit, s) have no match: a literal.
            d &+= emitLiteralFast(dst + d, src, nextEmit, s)

            // Step 2: emit copies as long as the bytes right after one start another match. Each turn waits for
            // the last: match length, then the word at its end, its hash, the table, the candidate's bytes.
            while true {
                let base = s
                let offset = base &- candidate
                // One 8-byte compare after the 4 bytes known to match settles most matches in text (4...11 bytes).
                let a = load64(src, base &+ 4)
                let x = a ^ load64(src, candidate &+ 4)
                let next: UInt32
                if x != 0 {
                    let bits = x.trailingZeroBitCount
                    s = base &+ 4 &+ bits &>> 3
                    d &+= emitShortCopy(dst + d, offset: offset, length: s &- base)
                    // The word at the match end is shifted out of `a` and the 4 bytes after it instead of loaded
                    // at `s`, a load that would lengthen the wait.
                    let after = UInt64(load32(src, base &+ 12))
                    let byteShift = UInt64(truncatingIfNeeded: bits & 56)
                    next = UInt32(truncatingIfNeeded: a &>> byteShift | (after &<< 1) &<< (63 &- byteShift))
                } else {
                    s = extendMatch(src, base &+ 12, candidate &+ 12, count: count)
                    d &+= emitCopy(dst + d, offset: offset, length: s &- base)
                    next = s < sLimit ? load32(src, s) : 0
                }
                nextEmit = s
                if s >= sLimit { break outer }

                // Index s-1 (for later matches) and look s up: if it matches, another copy follows at once.
                table[hash(load32(src, s &- 1), shift)] = UInt16(truncatingIfNeeded: s &- 1)
                let h = hash(next, shift)
                candidate = Int(table[h])
                table[h] = UInt16(truncatingIfNeeded: s)
                if load32(src, candidate) != next {
                    s &+= 1
                    data = load64(src, s)
                    break
                }
            }
        }
        if nextEmit < count {
            d &+= emitLiteral(dst + d, src, nextEmit, count)
        }
        return d
    }
}

// MARK: - Decompression

extension Snappy {
    private static func readPreamble(_ input: UnsafeRawBufferPointer) throws(SnappyError) -> (length: Int, size: Int) {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var i = 0
        while true {
            guard i < input.count else { throw SnappyError(.truncatedPreamble, offset: i) }
            guard i < 5 else { throw SnappyError(.invalidPreamble, offset: i) }
            let byte = input[i]
            result |= UInt64(byte & 0x7f) << shift
            i += 1
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        guard result <= UInt64(UInt32.max) else { throw SnappyError(.invalidPreamble, offset: 0) }
        return (Int(result), i)
    }

    private static func decompressElements(
        src: UnsafeRawPointer,
        from start: Int,
        count: Int,
        dst: UnsafeMutableRawPointer,
        length: Int
    ) throws(SnappyError) {
        var s = start
        var d = 0
        while s < count {
            let tag = Int(src.load(fromByteOffset: s, as: UInt8.self))
            switch tag & 3 {
            case 0:
                var n = tag >> 2
                if n < 60 {
                    s += 1
                } else {
                    let extra = n - 59
                    guard s + 1 + extra <= count else { throw SnappyError(.truncatedElement, offset: s) }
                    n = 0
                    for k in 0..<extra {
                        n |= Int(src.load(fromByteOffset: s + 1 + k, as: UInt8.self)) << (8 * k)
                    }
                    s += 1 + extra
                }
                let literalLength = n + 1
                guard literalLength <= count - s else { throw SnappyError(.truncatedElement, offset: s) }
                guard literalLength <= length - d else { throw SnappyError(.outputOverrun, offset: s) }
                (dst + d).copyMemory(from: src + s, byteCount: literalLength)
                d += literalLength
                s += literalLength
                continue
            case 1:
                guard s + 2 <= count else { throw SnappyError(.truncatedElement, offset: s) }
                let copyLength = 4 + ((tag >> 2) & 7)
                let offset = (tag & 0xe0) << 3 | Int(src.load(fromByteOffset: s + 1, as: UInt8.self))
                try copy(dst, at: &d, offset: offset, length: copyLength, limit: length, element: s)
                s += 2
            case 2:
                guard s + 3 <= count else { throw SnappyError(.truncatedElement, offset: s) }
                let copyLength = 1 + (tag >> 2)
                let offset =
                    Int(src.load(fromByteOffset: s + 1, as: UInt8.self))
                    | Int(src.load(fromByteOffset: s + 2, as: UInt8.self)) << 8
                try copy(dst, at: &d, offset: offset, length: copyLength, limit: length, element: s)
                s += 3
            default:
                guard s + 5 <= count else { throw SnappyError(.truncatedElement, offset: s) }
                let copyLength = 1 + (tag >> 2)
                let offset = Int(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: s + 1, as: UInt32.self)))
                try copy(dst, at: &d, offset: offset, length: copyLength, limit: length, element: s)
                s += 5
            }
        }
        guard d == length else { throw SnappyError(.lengthMismatch, offset: s) }
    }

    @inline(__always)
    private static func copy(
        _ dst: UnsafeMutableRawPointer,
        at d: inout Int,
        offset: Int,
        length: Int,
        limit: Int,
        element: Int
    ) throws(SnappyError) {
        guard offset > 0, offset <= d else { throw SnappyError(.invalidOffset, offset: element) }
        guard length <= limit - d else { throw SnappyError(.outputOverrun, offset: element) }
        if offset >= length {
            (dst + d).copyMemory(from: dst + (d - offset), byteCount: length)
        } else {
            // Overlapping copy: the pattern repeats, so copy forward in chunks of `offset` growing bytes.
            var copied = 0
            var chunk = offset
            while copied < length {
                let n = min(chunk, length - copied)
                (dst + d + copied).copyMemory(from: dst + (d - offset), byteCount: n)
                copied += n
                chunk = offset + copied
            }
        }
        d += length
    }
}
