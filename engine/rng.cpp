#include "engine/rng.hpp"

#include <cmath>
#include <numeric>
#include <utility>

#include "engine/openmp_guard.hpp"
#include "kernels/philox.hpp"

namespace ebm {

void Rng::normal(float* out, int64_t n, float mean, float stddev) {
  if (n > 65536) openmp_region();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = mean + stddev * philox_normal_at(seed, stream, offset, i);
  offset += philox_blocks(n);
}

void Rng::uniform(float* out, int64_t n, float lo, float hi) {
  if (n > 65536) openmp_region();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = lo + (hi - lo) * philox_uniform_at(seed, stream, offset, i);
  offset += philox_blocks(n);
}

uint32_t Rng::next_u32() { return philox4x32_10(seed, stream, offset++).v[0]; }

double Rng::unit() {
  const Philox4 r = philox4x32_10(seed, stream, offset++);
  const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32 | r.v[1]) >> 11;  // 53 bits
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}

uint64_t Rng::below(uint64_t n) {
  // Lemire-free simple rejection on 64 bits: unbiased, and one block per draw almost always.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  for (;;) {
    const Philox4 r = philox4x32_10(seed, stream, offset++);
    const uint64_t x = static_cast<uint64_t>(r.v[0]) << 32 | r.v[1];
    if (x < limit) return x % n;
  }
}

std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t n) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  Rng rng(seed, RngStream::kShuffle);
  rng.offset = static_cast<uint64_t>(epoch) << 32;
  for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
  return perm;
}

}  // namespace ebm
