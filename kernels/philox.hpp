// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based
// generator, so a stream's whole state is (key, counter) and any element can be drawn independently —
// what makes exact resume and thread-parallel noise easy. Counter layout: c0,c1 = 64-bit block index
// (the stream's offset), c2,c3 = 64-bit stream id; key = 64-bit seed.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/hostdevice.hpp"

namespace ebm {

struct Philox4 {
  uint32_t v[4];
};

EBM_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

EBM_HD Philox4 philox4x32_10(uint64_t seed, uint64_t stream, uint64_t block) {
  uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in (0, 1]: never 0, so log() in Box-Muller is finite.
EBM_HD float u32_to_unit_open0(uint32_t x) { return (static_cast<float>(x >> 8) + 1.0f) * (1.0f / 16777216.0f); }
// Uniform in [0, 1).
EBM_HD float u32_to_unit(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }

// Element i of a normal stream: block i/4 gives two Box-Muller pairs.
EBM_HD float philox_normal_at(uint64_t seed, uint64_t stream, uint64_t offset, uint64_t i) {
  const Philox4 r = philox4x32_10(seed, stream, offset + i / 4);
  const int lane = static_cast<int>(i % 4);
  const uint32_t a = r.v[lane & 2], b = r.v[(lane & 2) + 1];
  const float radius = sqrtf(-2.0f * logf(u32_to_unit_open0(a)));
  const float theta = 6.2831853071795864f * u32_to_unit(b);
  return (lane & 1) ? radius * sinf(theta) : radius * cosf(theta);
}

// The four normals of block `offset + b` (elements 4b..4b+3 of philox_normal_at): one Philox call
// and two logs for four numbers, for loops that walk a stream in order.
EBM_HD void philox_normal4(uint64_t seed, uint64_t stream, uint64_t block, float out[4]) {
  const Philox4 r = philox4x32_10(seed, stream, block);
  for (int pair = 0; pair < 2; ++pair) {
    const float radius = sqrtf(-2.0f * logf(u32_to_unit_open0(r.v[2 * pair])));
    const float theta = 6.2831853071795864f * u32_to_unit(r.v[2 * pair + 1]);
    out[2 * pair] = radius * cosf(theta);
    out[2 * pair + 1] = radius * sinf(theta);
  }
}

EBM_HD float philox_uniform_at(uint64_t seed, uint64_t stream, uint64_t offset, uint64_t i) {
  const Philox4 r = philox4x32_10(seed, stream, offset + i / 4);
  return u32_to_unit(r.v[i % 4]);
}

// Blocks consumed by n elements (what a stream's offset advances by).
EBM_HD uint64_t philox_blocks(uint64_t n) { return (n + 3) / 4; }

}  // namespace ebm
