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

}  // namespace ebm
