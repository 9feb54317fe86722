// The engine's named random streams: one Philox stream id per draw site, so no two sites ever share
// numbers. Shared by the CPU backend (engine/rng.hpp) and the kernels, which draw the same streams.
#pragma once
#include <cstdint>

namespace ebm {

enum class RngStream : uint64_t {
  kShuffle = 1, kRealNoise = 2, kBufferChoice = 3, kBufferInit = 4, kLangevin = 5, kValidation = 6,
  kGenerate = 7, kInit = 8,
  kSpectralNorm = 9,  // the initial power-iteration vectors u (engine/spectral_norm.hpp), block 0 on
  kAugment = 10       // data.shift: real row j of the global batch at step t shifts by block t·2^32 + j (stateless)
};

constexpr uint64_t stream_id(RngStream s) { return static_cast<uint64_t>(s); }

}  // namespace ebm
