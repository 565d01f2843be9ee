#ifndef C_INLONG_CRC32C_H
#define C_INLONG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli) of `length` bytes, continuing from `crc` (0 to start). Uses the processor's CRC32
/// instruction where there is one (x86-64 SSE 4.2, ARMv8 CRC), a table otherwise.
uint32_t inlong_crc32c(uint32_t crc, const void *data, size_t length);

/// The same by the table alone: what a processor without the instruction computes (for tests).
uint32_t inlong_crc32c_software(uint32_t crc, const void *data, size_t length);

#endif
