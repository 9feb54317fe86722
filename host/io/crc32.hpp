// CRC-32 as zlib computes it (IEEE 802.3: polynomial 0xEDB88320 reflected, initial and final XOR
// 0xFFFFFFFF): what a checkpoint records of its training set (dataset_fingerprint). zlib's own where the
// build has it, else a table-driven copy giving the same values, so a checkpoint written by one build
// resumes in the other.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ebm {

// CRC-32 of n bytes, continuing from `crc` (0 to start): crc32(b, n2, crc32(a, n1)) = crc32(a ++ b).
uint32_t crc32_ieee(const void* data, size_t n, uint32_t crc = 0);

// The table-driven fallback crc32_ieee uses in a build without zlib; always built, so tests compare it
// with zlib's where the build has both.
uint32_t crc32_ieee_table(const void* data, size_t n, uint32_t crc = 0);

// CRC-32C (Castagnoli: polynomial 0x82F63B78 reflected, initial and final XOR 0xFFFFFFFF; "123456789" gives
// 0xE3069283): what the TFRecord framing of TensorBoard event files checks (host/io/tensorboard.hpp). The CPU's
// own instruction where it has one — SSE4.2's crc32 on x86-64 (checked at run time), ARMv8's CRC32C — else
// bit by bit. Continues from `crc` as crc32_ieee does.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

// The bit-by-bit CRC-32C, always built: tests compare it with the instruction's path.
uint32_t crc32c_bitwise(const void* data, size_t n, uint32_t crc = 0);

// Which path crc32c() takes on this CPU: "sse4.2", "armv8-crc32" or "bitwise".
const char* crc32c_path();

}  // namespace ebm
