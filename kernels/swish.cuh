// The conv layers' element-wise halves: bias + swish forward, and swish backward fused with the bias
// gradient (and, for the layer that feeds the dense head, with the dense layer's input gradient).
// Activations are NCHW: element (i, c, q) of a layer with C channels and HW = H·W pixels is at (i·C + c)·HW + q.
// Included by cuda_backend.cu only.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda_check.cuh"
#include "kernels/ebm_math.hpp"
#include "kernels/reduce.cuh"

namespace ebm::cuda {

// z (n, C, HW) in place: z ← z + b[c]; a ← swish(z). Keeps z (with bias) for backward, which recomputes σ:
// one exp there is cheaper than writing and re-reading a second tensor on these memory-bound passes.
__global__ void bias_swish_forward_kernel(float* __restrict__ z, float* __restrict__ a, const float* __restrict__ bias,
                                          int C, int HW, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>((i / HW) % C);
    const float zz = z[i] + bias[c];
    z[i] = zz;
    a[i] = swishf(zz);
  }
}

inline void bias_swish_forward(float* z, float* a, const float* bias, int n, int C, int HW, cudaStream_t s) {
  const int64_t total = int64_t(n) * C * HW;
  bias_swish_forward_kernel<<<grid_for(total, 256), 256, 0, s>>>(z, a, bias, C, HW, total);
  EBM_CUDA_LAUNCH_CHECK();
}

// Blocks per channel for swish_backward: ~8 elements per thread, so even the 2×2 last layer gets a block
// per channel and the 16×16 first layer enough blocks to fill the device.
inline int swish_backward_blocks(int n, int HW) {
  const int64_t b = (int64_t(n) * HW + 2047) / 2048;
  return static_cast<int>(b < 1 ? 1 : (b > 256 ? 256 : b));
}

// dz (n, C, HW) = da ⊙ swish'(z). Grid (blocks_per_channel, C): block (x, c) covers a share of channel c,
// so the bias gradient is a block sum, written to partial[c·gridDim.x + x] (skipped when null) and summed
// in fixed order by bias_grad_kernel — no atomics, so graph replays and eager runs agree bit for bit.
// kFromDense: the layer feeds the dense head, whose input gradient da[i, c, q] = df[i]·wd[c·HW + q] is
// formed on the fly instead of being written out. dz may alias da (in place).
template <bool kFromDense>
__global__ void swish_backward_kernel(const float* da, const float* __restrict__ df, const float* __restrict__ wd,
                                      const float* __restrict__ z, float* dz, float* __restrict__ partial, int n, int C,
                                      int HW) {
  const int c = blockIdx.y;
  const int64_t per_channel = int64_t(n) * HW;
  float acc = 0.0f;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < per_channel;
       r += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = r / HW;
    const int q = static_cast<int>(r % HW);
    const int64_t idx = (i * C + c) * HW + q;
    const float up = kFromDense ? df[i] * wd[c * HW + q] : da[idx];
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

// Upstream gradient: da (n, C, HW), or, for the last conv layer, the dense head's df (n) and weights wd (C·HW).
struct SwishUpstream {
  const float* da = nullptr;
  const float* df = nullptr;
  const float* wd = nullptr;
};

// dz (n, C, HW); grad_b (C) when non-null, using partial (C·swish_backward_blocks(n, HW)) as scratch.
inline void swish_backward(const SwishUpstream& up, const float* z, float* dz, float* partial, float* grad_b, int n,
                           int C, int HW, cudaStream_t s) {
  const int nb = swish_backward_blocks(n, HW);
  const dim3 grid(nb, C);
  float* part = grad_b ? partial : nullptr;
  if (up.df)
    swish_backward_kernel<true><<<grid, 256, 0, s>>>(nullptr, up.df, up.wd, z, dz, part, n, C, HW);
  else
    swish_backward_kernel<false><<<grid, 256, 0, s>>>(up.da, nullptr, nullptr, z, dz, part, n, C, HW);
  EBM_CUDA_LAUNCH_CHECK();
  if (grad_b) {
    bias_grad_kernel<<<C, 32, 0, s>>>(partial, nb, grad_b);
    EBM_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace ebm::cuda
