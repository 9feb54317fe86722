// Fills: a constant, and uniform noise from one of the engine's Philox streams (Rng::uniform on the device:
// the same numbers as the CPU for the same stream position). Launchers (kernels in fill.cu); each returns
// cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ebm::cuda {

// x (len) ← v.
[[nodiscard]] cudaError_t fill(float* x, int64_t len, float v, cudaStream_t s);

// out (len) ← lo + (hi − lo)·U[0,1), element e from block offset + e/4 of (seed, stream).
[[nodiscard]] cudaError_t uniform_fill(float* out, int64_t len, uint64_t seed, uint64_t stream, uint64_t offset,
                                       float lo, float hi, cudaStream_t s);

}  // namespace ebm::cuda
