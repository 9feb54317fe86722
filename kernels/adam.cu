// Kernels of adam.cuh.
#include "kernels/adam.cuh"

#include "kernels/ebm_math.hpp"
#include "kernels/launch.cuh"

namespace ebm::cuda {
namespace {

// t ← t + 1 and this step's hyper-parameters (one thread: pow() once, not once per parameter).
__global__ void adam_prepare_kernel(DeviceState* st) {
  st->adam_t += 1;
  st->hyper = adam_hyper(st->lr, st->beta1, st->beta2, st->eps, st->adam_t);
}

template <class I>
__global__ void adam_kernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                            const float* __restrict__ g, I n, const DeviceState* st) {
  const AdamHyper h = st->hyper;
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x)
    adam_update(p[i], m[i], v[i], g[i], h);
}

template <class I>
__global__ void ema_kernel(float* __restrict__ ema, const float* __restrict__ p, I n, double decay) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) ema_update(ema[i], p[i], decay);
}

}  // namespace

cudaError_t ema_step(float* ema, const float* p, int64_t n, double decay, cudaStream_t s) {
  return with_index_type(n, [&](auto zero) {
    using I = decltype(zero);
    ema_kernel<I><<<grid_for(n, 256, 1024), 256, 0, s>>>(ema, p, I(n), decay);
  });
}

cudaError_t adam_step(float* p, float* m, float* v, const float* g, int64_t n, DeviceState* st, cudaStream_t s) {
  adam_prepare_kernel<<<1, 1, 0, s>>>(st);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  return with_index_type(n, [&](auto zero) {
    using I = decltype(zero);
    adam_kernel<I><<<grid_for(n, 256, 1024), 256, 0, s>>>(p, m, v, g, I(n), st);
  });
}

}  // namespace ebm::cuda
