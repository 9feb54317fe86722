#include "kernels/shuffle.cuh"

#include <thrust/execution_policy.h>
#include <thrust/sort.h>
#include <thrust/system/system_error.h>

#include "engine/rng.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/philox.hpp"

namespace ebm::cuda {
namespace {

__global__ void identity_kernel(int32_t* perm, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    perm[i] = static_cast<int32_t>(i);
}

__global__ void shuffle_keys_kernel(uint64_t* keys, int32_t* perm, int64_t n, uint64_t seed, uint64_t block0) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const Philox4 r = philox4x32_10(seed, static_cast<uint64_t>(RngStream::kShuffle), block0 + i);
    keys[i] = static_cast<uint64_t>(r.v[0]) << 32 | r.v[1];
    perm[i] = static_cast<int32_t>(i);
  }
}

}  // namespace

void identity_permutation(int32_t* perm, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  identity_kernel<<<grid_for(n, 256), 256, 0, s>>>(perm, n);
  EBM_CUDA_LAUNCH_CHECK();
}

void shuffle_permutation(int32_t* perm, uint64_t* keys, int64_t n, uint64_t seed, int64_t epoch, cudaStream_t s) {
  if (n == 0) return;
  shuffle_keys_kernel<<<grid_for(n, 256), 256, 0, s>>>(keys, perm, n, seed, static_cast<uint64_t>(epoch) << 32);
  EBM_CUDA_LAUNCH_CHECK();
  // A radix sort (stable), so even a key tie (probability ~n²/2^65) cannot make the order run-dependent.
  // Thrust allocates its scratch here: begin_epoch is never inside a captured graph.
  try {
    thrust::sort_by_key(thrust::cuda::par.on(s), keys, keys + n, perm);
  } catch (const thrust::system_error& e) {
    fail_at("thrust::sort_by_key", __FILE__, __LINE__, std::string("epoch shuffle failed: ") + e.what());
  }
}

}  // namespace ebm::cuda
