public import InLongSnappy
public import NIOCore

extension ByteBuffer {
    /// Appends the snappy raw-block compression of `source`'s readable bytes and returns the bytes written.
    @discardableResult
    public mutating func writeSnappyCompressed(_ source: ByteBuffer) -> Int {
        let maxLength = Snappy.maxCompressedLength(forInputLength: source.readableBytes)
        return source.withUnsafeReadableBytes { input in
            self.writeWithUnsafeMutableBytes(minimumWritableBytes: maxLength) { output in
                Snappy.compress(input, into: output)
            }
        }
    }

    /// Decompresses the readable bytes, which must be one snappy raw block, refusing before allocating any block
    /// that declares more than `maxLength` bytes.
    public func snappyDecompressed(
        maxLength: Int,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(SnappyError) -> ByteBuffer {
        let result: Result<ByteBuffer, SnappyError> = self.withUnsafeReadableBytes { input in
            do throws(SnappyError) {
                let length = try Snappy.uncompressedLength(of: input)
                guard length <= maxLength else { throw SnappyError(.lengthLimitExceeded, offset: 0) }
                var output = allocator.buffer(capacity: length)
                var failure: SnappyError?
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { destination in
                    do throws(SnappyError) {
                        return try Snappy.decompress(input, into: UnsafeMutableRawBufferPointer(rebasing: destination[0..<length]))
                    } catch {
                        failure = error
                        return 0
                    }
                }
                if let failure { throw failure }
                return .success(output)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
