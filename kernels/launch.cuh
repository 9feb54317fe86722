// What every launcher shares. kernels/ is a leaf (it includes no engine or host header), so launchers do
// not throw: each returns cudaGetLastError() after its launches (launch-configuration errors), marked
// [[nodiscard]], and the engine checks it (EBM_CUDA_CHECK, engine/cuda/cuda_check.cuh).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ebm::cuda {

// Grid size for a grid-stride loop over n items: enough blocks to fill the device, no more.
inline unsigned grid_for(int64_t n, int threads, int max_blocks = 4096) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > max_blocks ? max_blocks : b));
}

// The most threads a launch through grid_for has (4096 blocks of at most 1024 threads): a grid-stride loop's
// index i < n, plus this stride, must not wrap in 32 bits.
constexpr int64_t kMaxGridThreads = int64_t(4096) * 1024;

// Element-wise kernels index with 32-bit unsigned math where the tensor allows (a 32-bit division per
// element instead of a 64-bit one), 64-bit from 2^32 − kMaxGridThreads elements on, so that a grid-stride
// step past the end never wraps below n. `fn` is called with a zero of the type.
template <class Fn>
cudaError_t with_index_type(int64_t n, Fn&& fn) {
  if (n < (int64_t(1) << 32) - kMaxGridThreads) fn(uint32_t{0});
  else fn(uint64_t{0});
  return cudaGetLastError();
}

}  // namespace ebm::cuda
