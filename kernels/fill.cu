// Kernels of fill.cuh.
#include "kernels/fill.cuh"

#include "kernels/launch.cuh"
#include "kernels/random.cuh"

namespace ebm::cuda {
namespace {

template <class I>
__global__ void fill_kernel(float* __restrict__ x, I len, float v) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < len; i += I(gridDim.x) * blockDim.x) x[i] = v;
}

template <class I>
__global__ void uniform_fill_kernel(float* __restrict__ out, I len, uint64_t seed, uint64_t stream, uint64_t offset,
                                    float lo, float hi) {
  const I blocks = (len + 3) / 4;
  for (I b = blockIdx.x * I(blockDim.x) + threadIdx.x; b < blocks; b += I(gridDim.x) * blockDim.x) {
    const float4 u = philox_uniform4(seed, stream, offset + b);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const I e = 4 * b + lane;
      if (e < len) out[e] = lo + (hi - lo) * lane_of(u, lane);
    }
  }
}

}  // namespace

cudaError_t fill(float* x, int64_t len, float v, cudaStream_t s) {
  if (len == 0) return cudaSuccess;
  return with_index_type(len, [&](auto zero) {
    using I = decltype(zero);
    fill_kernel<I><<<grid_for(len, 256), 256, 0, s>>>(x, I(len), v);
  });
}

cudaError_t uniform_fill(float* out, int64_t len, uint64_t seed, uint64_t stream, uint64_t offset, float lo, float hi,
                         cudaStream_t s) {
  if (len == 0) return cudaSuccess;
  return with_index_type(len + 3, [&](auto zero) {
    using I = decltype(zero);
    uniform_fill_kernel<I><<<grid_for((len + 3) / 4, 256), 256, 0, s>>>(out, I(len), seed, stream, offset, lo, hi);
  });
}

}  // namespace ebm::cuda
