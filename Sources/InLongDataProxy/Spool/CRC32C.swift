import CInLongCRC32C

/// CRC-32C (Castagnoli), the checksum of each spooled record: the one storage formats use (iSCSI, ext4, Kafka's
/// record batches) for its error detection on short records; computed by the processor's CRC32 instruction
/// where there is one.
enum CRC32C {
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return 0 }
        return inlong_crc32c(0, base, bytes.count)
    }
}
