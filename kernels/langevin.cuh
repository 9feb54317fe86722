// The Langevin update in one pass over x: the descend half of step k (gradient clip, step, clip) fused with
// the perturb half of step k+1 (x + noise·N(0,1), clip), so a K-step chain launches K+1 update kernels.
// Per-element math from kernels/ebm_math.hpp, noise from kernels/random.cuh. Also the small fills the
// backend needs. Included by cuda_backend.cu only.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda_check.cuh"
#include "kernels/ebm_math.hpp"
#include "kernels/random.cuh"

namespace ebm::cuda {

// x (len): when `descend`, x ← clip(x − step·clip(−dfdx, ±grad_clip), −1, 1); then when `perturb`,
// x ← clip(x + noise·N(0,1), −1, 1) with element e's normal at block *src.offset + src.add + e/4.
__global__ void langevin_update_kernel(float* __restrict__ x, const float* __restrict__ dfdx, int64_t len,
                                       float step_size, float grad_clip, float noise, NoiseSource src, bool descend,
                                       bool perturb) {
  const uint64_t seed = perturb ? *src.seed : 0, base = perturb ? *src.offset + src.add : 0;
  const int64_t blocks = (len + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    float4 nz = make_float4(0.f, 0.f, 0.f, 0.f);
    if (perturb) nz = philox_normal4(seed, src.stream, base + b);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t e = 4 * b + lane;
      if (e >= len) break;
      float v = x[e];
      if (descend) v = langevin_descend(v, dfdx[e], step_size, grad_clip);
      if (perturb) v = langevin_perturb(v, noise, lane_of(nz, lane));
      x[e] = v;
    }
  }
}

inline void langevin_update(float* x, const float* dfdx, int64_t len, float step_size, float grad_clip, float noise,
                            const NoiseSource& src, bool descend, bool perturb, cudaStream_t s) {
  langevin_update_kernel<<<grid_for((len + 3) / 4, 256), 256, 0, s>>>(x, dfdx, len, step_size, grad_clip, noise, src,
                                                                      descend, perturb);
  EBM_CUDA_LAUNCH_CHECK();
}

// out (len) ← lo + (hi − lo)·U[0,1) from (seed, stream, offset): Rng::uniform on the device.
__global__ void uniform_fill_kernel(float* __restrict__ out, int64_t len, uint64_t seed, uint64_t stream,
                                    uint64_t offset, float lo, float hi) {
  const int64_t blocks = (len + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    const float4 u = philox_uniform4(seed, stream, offset + b);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t e = 4 * b + lane;
      if (e < len) out[e] = lo + (hi - lo) * lane_of(u, lane);
    }
  }
}

inline void uniform_fill(float* out, int64_t len, uint64_t seed, uint64_t stream, uint64_t offset, float lo, float hi,
                         cudaStream_t s) {
  uniform_fill_kernel<<<grid_for((len + 3) / 4, 256), 256, 0, s>>>(out, len, seed, stream, offset, lo, hi);
  EBM_CUDA_LAUNCH_CHECK();
}

// x ← a·x + b (maps cuRAND's (0, 1] to (−1, 1]).
__global__ void affine_kernel(float* __restrict__ x, int64_t len, float a, float b) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < len; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = a * x[i] + b;
}

inline void affine(float* x, int64_t len, float a, float b, cudaStream_t s) {
  if (len == 0) return;
  affine_kernel<<<grid_for(len, 256), 256, 0, s>>>(x, len, a, b);
  EBM_CUDA_LAUNCH_CHECK();
}

__global__ void fill_kernel(float* __restrict__ x, int64_t len, float v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < len; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = v;
}

inline void fill(float* x, int64_t len, float v, cudaStream_t s) {
  if (len == 0) return;
  fill_kernel<<<grid_for(len, 256), 256, 0, s>>>(x, len, v);
  EBM_CUDA_LAUNCH_CHECK();
}

}  // namespace ebm::cuda
