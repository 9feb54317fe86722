#include "host/io/crc32.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define EBM_CRC32C_X86 1
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
#define EBM_CRC32C_ARM 1
#endif

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

// The CRC-32C register (pre- and post-inversion outside): 8 bytes per instruction, then the tail bytewise.
#if EBM_CRC32C_X86
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const uint8_t* p, size_t n, uint32_t c) {
#if defined(__x86_64__)
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = static_cast<uint32_t>(_mm_crc32_u64(c, v));
  }
#endif
  for (; n > 0; ++p, --n) c = _mm_crc32_u8(c, *p);
  return c;
}
// Asked once; __builtin_cpu_init first, as GCC asks of code that may run before the constructors.
bool have_sse42() {
  static const bool have = (__builtin_cpu_init(), __builtin_cpu_supports("sse4.2"));
  return have;
}
#elif EBM_CRC32C_ARM
uint32_t crc32c_armv8(const uint8_t* p, size_t n, uint32_t c) {
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __crc32cd(c, v);
  }
  for (; n > 0; ++p, --n) c = __crc32cb(c, *p);
  return c;
}
#endif

}  // namespace

uint32_t crc32c_bitwise(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = crc ^ 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
#if EBM_CRC32C_X86
  if (have_sse42()) return crc32c_sse42(static_cast<const uint8_t*>(data), n, crc ^ 0xFFFFFFFFu) ^ 0xFFFFFFFFu;
#elif EBM_CRC32C_ARM
  return crc32c_armv8(static_cast<const uint8_t*>(data), n, crc ^ 0xFFFFFFFFu) ^ 0xFFFFFFFFu;
#endif
  return crc32c_bitwise(data, n, crc);
}

const char* crc32c_path() {
#if EBM_CRC32C_X86
  if (have_sse42()) return "sse4.2";
#elif EBM_CRC32C_ARM
  return "armv8-crc32";
#endif
  return "bitwise";
}

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
