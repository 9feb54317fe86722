// Kernels of swish.cuh.
#include "kernels/swish.cuh"

#include <cstdint>

#include "kernels/ebm_math.hpp"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace ebm::cuda {
namespace {

// Keeps z (with bias) for backward, which recomputes σ: one exp there is cheaper than writing and re-reading
// a second tensor on these memory-bound passes. I: the index type (launch.cuh's with_index_type).
template <class I>
__global__ void bias_swish_forward_kernel(float* __restrict__ z, float* __restrict__ a, const float* __restrict__ bias,
                                          I C, I HW, I total) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I c = (i / HW) % C;
    const float zz = z[i] + bias[c];
    z[i] = zz;
    a[i] = swishf(zz);
  }
}

// Grid (blocks_per_channel, C): block (x, c) covers a share of channel c, so the bias gradient is a block sum,
// written to partial[c·gridDim.x + x] (skipped when null) and summed in fixed order by bias_grad_kernel.
// kFromDense: the layer feeds the dense head, whose input gradient da[i, c, q] = Σ_k df[i, k]·wd[k, c·HW + q]
// (df (n, K), wd (K, C·HW)) is formed on the fly instead of being written out.
template <bool kFromDense, class I>
__global__ void swish_backward_kernel(const float* da, const float* __restrict__ df, const float* __restrict__ wd,
                                      const float* __restrict__ z, float* dz, float* __restrict__ partial, I n, I C,
                                      I HW, int K) {
  const I c = blockIdx.y;
  const I per_channel = n * HW;
  float acc = 0.0f;
  for (I r = blockIdx.x * I(blockDim.x) + threadIdx.x; r < per_channel; r += I(gridDim.x) * blockDim.x) {
    const I i = r / HW, q = r - i * HW;
    const I idx = (i * C + c) * HW + q;
    float up;
    if constexpr (kFromDense) {
      const I D = C * HW, j = c * HW + q;
      const float* dfi = df + int64_t(i) * K;
      up = dfi[0] * wd[j];
      for (int k = 1; k < K; ++k) up += dfi[k] * wd[int64_t(k) * D + j];
    } else {
      up = da[idx];
    }
    const float g = up * swish_gradf(z[idx]);
    dz[idx] = g;
    acc += g;
  }
  if (partial) {
    acc = block_reduce(acc, SumOp{}, 0.0f);
    if (threadIdx.x == 0) partial[c * gridDim.x + blockIdx.x] = acc;
  }
}

// grad_b[c] = Σ_x partial[c·nb + x]. One warp per channel.
__global__ void bias_grad_kernel(const float* __restrict__ partial, int nb, float* __restrict__ grad_b) {
  const int c = blockIdx.x;
  float acc = 0.0f;
  for (int x = threadIdx.x; x < nb; x += 32) acc += partial[c * nb + x];
  acc = warp_reduce(acc, SumOp{});
  if (threadIdx.x == 0) grad_b[c] = acc;
}

}  // namespace

cudaError_t bias_swish_forward(float* z, float* a, const float* bias, int n, int C, int HW, cudaStream_t s) {
  const int64_t total = int64_t(n) * C * HW;
  if (total == 0) return cudaSuccess;
  return with_index_type(total, [&](auto zero) {
    using I = decltype(zero);
    bias_swish_forward_kernel<I><<<grid_for(total, 256), 256, 0, s>>>(z, a, bias, I(C), I(HW), I(total));
  });
}

cudaError_t swish_backward(const SwishUpstream& up, const float* z, float* dz, float* partial, float* grad_b, int n,
                           int C, int HW, cudaStream_t s) {
  const int nb = swish_backward_blocks(n, HW);
  const dim3 grid(nb, C);
  float* part = grad_b ? partial : nullptr;
  const cudaError_t e = with_index_type(int64_t(n) * C * HW, [&](auto zero) {
    using I = decltype(zero);
    if (up.df)
      swish_backward_kernel<true, I><<<grid, 256, 0, s>>>(nullptr, up.df, up.wd, z, dz, part, I(n), I(C), I(HW), up.K);
    else
      swish_backward_kernel<false, I><<<grid, 256, 0, s>>>(up.da, nullptr, nullptr, z, dz, part, I(n), I(C), I(HW), 1);
  });
  if (e != cudaSuccess || !grad_b) return e;
  bias_grad_kernel<<<C, 32, 0, s>>>(partial, nb, grad_b);
  return cudaGetLastError();
}

}  // namespace ebm::cuda
