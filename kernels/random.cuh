// Device-side draws from the engine's Philox streams (kernels/philox.hpp), with the same conversions as
// engine/rng.cpp: for the same (seed, stream, offset) a kernel draws the numbers the CPU backend draws, so
// the parity tests compare even noisy steps. One thread handles the 4 elements of one Philox block.
//
// Why philox.hpp and not cuRAND's device API: both are counter-based Philox4x32-10 whose state is
// (seed, subsequence, offset), which is what graph replay needs (seed and offset read from device memory by
// the kernels, advanced by a captured kernel); sharing the CPU's generator additionally makes the GPU's
// random numbers testable element by element. cuRAND's host API fills the initial replay buffer.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/philox.hpp"

namespace ebm::cuda {

// Elements 4b..4b+3 of a normal stream at `offset` are philox_normal_at(seed, stream, offset, 4b + lane):
// block offset + b, two Box–Muller pairs.
__device__ __forceinline__ float4 philox_normal4(uint64_t seed, uint64_t stream, uint64_t block) {
  const Philox4 r = philox4x32_10(seed, stream, block);
  const float r0 = sqrtf(-2.0f * logf(u32_to_unit_open0(r.v[0])));
  const float t0 = 6.2831853071795864f * u32_to_unit(r.v[1]);
  const float r1 = sqrtf(-2.0f * logf(u32_to_unit_open0(r.v[2])));
  const float t1 = 6.2831853071795864f * u32_to_unit(r.v[3]);
  return make_float4(r0 * cosf(t0), r0 * sinf(t0), r1 * cosf(t1), r1 * sinf(t1));
}

// Elements 4b..4b+3 of a uniform [0, 1) stream: philox_uniform_at(seed, stream, offset, 4b + lane).
__device__ __forceinline__ float4 philox_uniform4(uint64_t seed, uint64_t stream, uint64_t block) {
  const Philox4 r = philox4x32_10(seed, stream, block);
  return make_float4(u32_to_unit(r.v[0]), u32_to_unit(r.v[1]), u32_to_unit(r.v[2]), u32_to_unit(r.v[3]));
}

__device__ __forceinline__ float lane_of(const float4& v, int lane) {
  return lane == 0 ? v.x : (lane == 1 ? v.y : (lane == 2 ? v.z : v.w));
}

// Rng::unit() at `block`: a uniform double in [0, 1) from 53 bits.
__device__ __forceinline__ double philox_unit(uint64_t seed, uint64_t stream, uint64_t block) {
  const Philox4 r = philox4x32_10(seed, stream, block);
  const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32 | r.v[1]) >> 11;
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}

// Rng::below(n) at `block`, without its rejection step: Rng::below redraws when the 64-bit value lands in
// the last (2^64 mod n) values, probability < n/2^64 (< 1e-15 here); a thread cannot shift its neighbours'
// blocks as the CPU's loop does, so in that event the GPU keeps the (negligibly biased) value and the two
// backends diverge. Everywhere else they draw the same index.
__device__ __forceinline__ uint64_t philox_below(uint64_t seed, uint64_t stream, uint64_t block, uint64_t n) {
  const Philox4 r = philox4x32_10(seed, stream, block);
  return (static_cast<uint64_t>(r.v[0]) << 32 | r.v[1]) % n;
}

// Where a kernel's normals come from: seed and base offset read from device memory (so a graph replay sees
// the values of that replay), plus a constant block offset (e.g. Langevin step k · blocks per step).
struct NoiseSource {
  const uint64_t* seed;
  const uint64_t* offset;
  uint64_t stream;
  uint64_t add;
};

}  // namespace ebm::cuda
