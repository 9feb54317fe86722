// Adam (Keras form, kernels/ebm_math.hpp) over the flat parameter buffer in one launch. The step count and
// the bias-corrected rate live in device memory, so a captured train step replays with the right t.
// Included by cuda_backend.cu only.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda_check.cuh"
#include "kernels/device_state.cuh"
#include "kernels/ebm_math.hpp"

namespace ebm::cuda {

// t ← t + 1 and this step's hyper-parameters (one thread: pow() once, not once per parameter).
__global__ void adam_prepare_kernel(DeviceState* st) {
  st->adam_t += 1;
  st->hyper = adam_hyper(st->lr, st->beta1, st->beta2, st->eps, st->adam_t);
}

// p, m, v, g (n)
__global__ void adam_kernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                            const float* __restrict__ g, int64_t n, const DeviceState* st) {
  const AdamHyper h = st->hyper;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    adam_update(p[i], m[i], v[i], g[i], h);
}

inline void adam_step(float* p, float* m, float* v, const float* g, int64_t n, DeviceState* st, cudaStream_t s) {
  adam_prepare_kernel<<<1, 1, 0, s>>>(st);
  EBM_CUDA_LAUNCH_CHECK();
  adam_kernel<<<grid_for(n, 256, 1024), 256, 0, s>>>(p, m, v, g, n, st);
  EBM_CUDA_LAUNCH_CHECK();
}

}  // namespace ebm::cuda
