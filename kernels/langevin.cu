// Kernel of langevin.cuh.
#include "kernels/langevin.cuh"

#include "kernels/ebm_math.hpp"
#include "kernels/launch.cuh"
#include "kernels/random.cuh"

namespace ebm::cuda {
namespace {

template <class I>
__global__ void langevin_update_kernel(float* __restrict__ x, const float* __restrict__ dfdx, I len, float step_size,
                                       float grad_clip, float noise, NoiseSource src, bool descend, bool perturb) {
  const uint64_t seed = perturb ? *src.seed : 0, base = perturb ? *src.offset + src.add : 0;
  const I blocks = (len + 3) / 4;
  for (I b = blockIdx.x * I(blockDim.x) + threadIdx.x; b < blocks; b += I(gridDim.x) * blockDim.x) {
    float4 nz = make_float4(0.f, 0.f, 0.f, 0.f);
    if (perturb) nz = philox_normal4(seed, src.stream, base + b);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const I e = 4 * b + lane;
      if (e >= len) break;
      float v = x[e];
      if (descend) v = langevin_descend(v, dfdx[e], step_size, grad_clip);
      if (perturb) v = langevin_perturb(v, noise, lane_of(nz, lane));
      x[e] = v;
    }
  }
}

}  // namespace

cudaError_t langevin_update(float* x, const float* dfdx, int64_t len, float step_size, float grad_clip, float noise,
                            const NoiseSource& src, bool descend, bool perturb, cudaStream_t s) {
  if (len == 0) return cudaSuccess;
  return with_index_type(len + 3, [&](auto zero) {
    using I = decltype(zero);
    langevin_update_kernel<I><<<grid_for((len + 3) / 4, 256), 256, 0, s>>>(x, dfdx, I(len), step_size, grad_clip,
                                                                           noise, src, descend, perturb);
  });
}

}  // namespace ebm::cuda
