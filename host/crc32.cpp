#include "host/crc32.hpp"

#include <algorithm>
#include <array>

#if EBM_HAVE_ZLIB
#include <zlib.h>
#endif

namespace ebm {
namespace {

// table[b]: the CRC of the single byte b, one bit at a time (reflected polynomial).
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[b] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

}  // namespace

uint32_t crc32_ieee_table(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = crc ^ 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = kCrcTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t crc32_ieee(const void* data, size_t n, uint32_t crc) {
#if EBM_HAVE_ZLIB
  // zlib counts in uInt on some versions' crc32: feed it in chunks that fit 32 bits.
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (n > 0) {
    const size_t chunk = std::min<size_t>(n, size_t{1} << 30);
    c = ::crc32(c, p, static_cast<uInt>(chunk));
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
#else
  return crc32_ieee_table(data, n, crc);
#endif
}

}  // namespace ebm
