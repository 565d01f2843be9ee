import InLongSnappy
import InLongWire
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func fuzzSnappyDecompress(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    let declared = try? Snappy.uncompressedLength(of: data)
    let output = try? Snappy.decompress(data, maxUncompressedLength: maxUncompressedLength)
    if let output {
        try check(
            output.count == declared,
            "\(output.count) bytes decompressed, \(String(describing: declared)) declared"
        )
    }

    // The ByteBuffer path the wire decoders take must agree.
    let viaBuffer = try? ByteBuffer(bytes: data).snappyDecompressed(maxLength: maxUncompressedLength)
    try check((viaBuffer == nil) == (output == nil), "ByteBuffer and array decompression disagree on success")
    if let viaBuffer, let output {
        try check(
            viaBuffer.withUnsafeReadableBytes { bytes in output.withUnsafeBytes { same(bytes, $0) } },
            "ByteBuffer and array decompression differ"
        )
    }

    // A larger output buffer is allowed; nothing past the declared length may be written.
    guard let declared, declared <= maxUncompressedLength else { return }
    let slack = 16
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: declared + slack, alignment: 1)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0xA5)
    let written = try? Snappy.decompress(data, into: buffer)
    try check((written == nil) == (output == nil), "decompression into a buffer disagrees on success")
    if let written, let output {
        try check(written == declared, "\(written) bytes written, \(declared) declared")
        try check(
            output.withUnsafeBytes { same(UnsafeRawBufferPointer(rebasing: buffer[..<declared]), $0) },
            "decompression into a buffer differs"
        )
        try check(buffer[declared...].allSatisfy { $0 == 0xA5 }, "bytes written past the declared length")
    }
}

/// With a first byte of 0xFF, the rest is also repeated past the 64 KiB block size, where the compressor starts a
/// new block with a new hash table.
func fuzzSnappyRoundTrip(_ data: UnsafeRawBufferPointer) throws(FuzzFailure) {
    try roundTrip(data)
    guard data.first == 0xFF, data.count > 1 else { return }
    let rest = data.dropFirst()
    var long: [UInt8] = []
    long.reserveCapacity(65536 + rest.count)
    while long.count <= 65536 { long.append(contentsOf: rest) }
    let result = long.withUnsafeBytes { bytes in
        Result { () throws(FuzzFailure) in try roundTrip(bytes, viaBuffer: false) }
    }
    try result.get()
}

func roundTrip(_ input: UnsafeRawBufferPointer, viaBuffer checksBuffer: Bool = true) throws(FuzzFailure) {
    let maxLength = Snappy.maxCompressedLength(forInputLength: input.count)
    let compressed = [UInt8](unsafeUninitializedCapacity: maxLength) { buffer, count in
        count = Snappy.compress(input, into: UnsafeMutableRawBufferPointer(buffer))
    }
    try check(compressed.count <= maxLength, "\(compressed.count) compressed bytes, at most \(maxLength) promised")
    let restored: [UInt8]
    do {
        restored = try Snappy.decompress(compressed, maxUncompressedLength: input.count)
    } catch {
        throw FuzzFailure("compressed input does not decompress (\(error)); input \(hex(input))")
    }
    try check(
        restored.withUnsafeBytes { same($0, input) },
        "round trip changes the input \(hex(input)) into \(hex(restored))"
    )

    // The ByteBuffer path the client takes must write the same block (the long inputs skip it: it doubles their time).
    guard checksBuffer else { return }
    var viaBuffer = ByteBuffer()
    viaBuffer.writeSnappyCompressed(ByteBuffer(bytes: input))
    try check(
        viaBuffer.withUnsafeReadableBytes { bytes in compressed.withUnsafeBytes { same(bytes, $0) } },
        "ByteBuffer compression differs"
    )
}

/// Byte equality with `memcmp`: the generic comparison, instrumented per byte, would dominate each run.
func same(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    guard a.count > 0 else { return true }
    return memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
}
