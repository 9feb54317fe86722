// Device-side draws from the engine's Philox streams through cuRAND's device API (curand_kernel.h), with the
// same conversions as engine/rng.cpp, so for the same (seed, stream, offset) a kernel draws the numbers the
// CPU backend draws and the parity tests compare even noisy steps. One thread handles the 4 elements of
// one Philox block.
//
// Why that is the CPU's generator: kernels/philox.hpp's philox4x32_10(seed, stream, block) is, bit for bit,
// cuRAND's Philox4_32_10 after curand_init(seed, subsequence = stream, offset = 4·block) — curand_init puts
// the block in counter words 0–1, the subsequence in words 2–3 and the seed in the key, as philox.hpp does.
// tests/test_curand_philox.cpp checks it against cuRAND's host generator on this machine; the CudaParity
// tests check the kernels' draws against the CPU's on a GPU. Counter-based state (seed, offset) is what graph
// replay needs: kernels read seed and offset from device memory, advanced by a captured kernel.
#pragma once
#include <cuda_runtime.h>
#include <curand_kernel.h>

#include <cstdint>

#include "kernels/philox.hpp"

namespace ebm::cuda {

// The four 32-bit words of Philox block `block` of stream `stream` (curand_init's work is a few integer
// adds for Philox; the compiler drops the look-ahead block that curand4 computes into the dead state).
// curand_init's offset counts 32-bit words, so blocks from 2^62 on are out of its reach (the CPU's
// philox4x32_10 has no such limit); the engine's offsets stay far below (validation's largest is epoch·2^40).
__device__ __forceinline__ uint4 philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
  curandStatePhilox4_32_10_t s;
  curand_init(seed, stream, 4 * block, &s);
  return curand4(&s);
}

// Elements 4b..4b+3 of a normal stream: philox_normal_at(seed, stream, offset, 4b + lane) — two Box–Muller
// pairs of block offset + b.
__device__ __forceinline__ float4 philox_normal4(uint64_t seed, uint64_t stream, uint64_t block) {
  const uint4 r = philox_block(seed, stream, block);
  const float r0 = sqrtf(-2.0f * logf(u32_to_unit_open0(r.x)));
  const float t0 = 6.2831853071795864f * u32_to_unit(r.y);
  const float r1 = sqrtf(-2.0f * logf(u32_to_unit_open0(r.z)));
  const float t1 = 6.2831853071795864f * u32_to_unit(r.w);
  return make_float4(r0 * cosf(t0), r0 * sinf(t0), r1 * cosf(t1), r1 * sinf(t1));
}

// Elements 4b..4b+3 of a uniform [0, 1) stream: philox_uniform_at(seed, stream, offset, 4b + lane).
__device__ __forceinline__ float4 philox_uniform4(uint64_t seed, uint64_t stream, uint64_t block) {
  const uint4 r = philox_block(seed, stream, block);
  return make_float4(u32_to_unit(r.x), u32_to_unit(r.y), u32_to_unit(r.z), u32_to_unit(r.w));
}

__device__ __forceinline__ float lane_of(const float4& v, int lane) {
  return lane == 0 ? v.x : (lane == 1 ? v.y : (lane == 2 ? v.z : v.w));
}

// Rng::unit() at `block`: a uniform double in [0, 1) from 53 bits.
__device__ __forceinline__ double philox_unit(uint64_t seed, uint64_t stream, uint64_t block) {
  const uint4 r = philox_block(seed, stream, block);
  const uint64_t bits = (static_cast<uint64_t>(r.x) << 32 | r.y) >> 11;
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}

// Rng::below(n) at `block`, without its rejection step: Rng::below redraws when the 64-bit value lands in
// the last (2^64 mod n) values, probability < n/2^64 (< 1e-15 here); a thread cannot shift its neighbours'
// blocks as the CPU's loop does, so in that event the GPU keeps the (negligibly biased) value and the two
// backends diverge. Everywhere else they draw the same index.
__device__ __forceinline__ uint64_t philox_below(uint64_t seed, uint64_t stream, uint64_t block, uint64_t n) {
  const uint4 r = philox_block(seed, stream, block);
  return (static_cast<uint64_t>(r.x) << 32 | r.y) % n;
}

}  // namespace ebm::cuda
