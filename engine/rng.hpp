// A named random stream on the CPU: Philox counter state that checkpoints as three integers.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/rng_streams.hpp"  // RngStream: the engine's stream ids

namespace ebm {

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

// The training set's order in epoch `epoch`: a Fisher–Yates shuffle of 0..n−1 from stream kShuffle at
// block epoch·2^32, so it depends only on (seed, epoch) and a resumed run needs no shuffle state. Both
// backends use it (the CUDA backend uploads it), so CPU and GPU runs of one seed see the same batches.
std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t n);

}  // namespace ebm
