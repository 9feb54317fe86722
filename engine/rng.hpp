// A named random stream on the CPU: Philox counter state that checkpoints as three integers.
#pragma once
#include <cstdint>

namespace ebm {

// Stream ids used by the engine: one per draw site, so no two sites ever share numbers.
enum class RngStream : uint64_t {
  kShuffle = 1, kRealNoise = 2, kBufferChoice = 3, kBufferInit = 4, kLangevin = 5, kValidation = 6,
  kGenerate = 7, kInit = 8
};

struct Rng {
  uint64_t seed = 0;
  uint64_t stream = 0;
  uint64_t offset = 0;  // in 128-bit Philox blocks

  Rng() = default;
  Rng(uint64_t s, RngStream id) : seed(s), stream(static_cast<uint64_t>(id)) {}

  void normal(float* out, int64_t n, float mean, float stddev);   // parallel over elements
  void uniform(float* out, int64_t n, float lo, float hi);
  uint32_t next_u32();                                            // one block per call
  uint64_t below(uint64_t n);                                     // uniform integer in [0, n)
  double unit();                                                  // uniform double in [0, 1)
};

}  // namespace ebm
