// Kernels of langevin_chain_tiled.cuh: the chain (TiledChain<Net, 512, home>::run through DeviceLane) for every net
// of kernels/langevin_chain_tiled_nets.hpp in both homes, and the weight packing.
#include <vector>

#include "kernels/chain_device_lane.cuh"  // DeviceLane
#include "kernels/langevin_chain_tiled.cuh"

namespace ebm::cuda {
namespace {

// x (n, img); block b refines image b. __launch_bounds__(512, 1): up to 128 registers a thread.
template <class Chain>
__global__ void __launch_bounds__(Chain::P.nt, 1)
    tiled_chain_kernel(float* __restrict__ x, const float* __restrict__ packed, TiledSampler p, ChainNoiseSource src) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const bool noisy = p.noise > 0.0f;
  const TiledNoise nz{noisy ? *src.seed : 0, src.stream, noisy ? *src.offset + src.add : 0, src.blocks_per_step};
  DeviceLane lane;
  const int64_t image = blockIdx.x;
  constexpr int img = Chain::P.cin[0] * Chain::P.hin[0] * Chain::P.hin[0];
  Chain::run(lane, smem, packed, x + image * img, image, p, nz);
}

__global__ void tiled_pack_kernel(float* __restrict__ packed, const float* __restrict__ params, const TiledPlan P,
                                  const TiledParamOffsets o) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < P.packed_floats; i += gridDim.x * blockDim.x) {
    const int64_t s = tiled_pack_source(P, o, i);
    const float v = s >= 0 ? params[s] : 0.0f;
    packed[i] = tiled_pack_tf32(P, i) ? round_tf32(v) : v;  // a TF32 layer's weights, as the tensor cores read them
  }
}

template <class Chain>
TiledKernelInfo info_of(TiledHome home) {
  static constexpr TiledPlan plan = Chain::P;
  TiledKernelInfo k;
  k.found = true;
  k.home = home;
  k.tf32 = plan.tf32_mask != 0;
  k.threads = plan.nt;
  k.packed_floats = plan.packed_floats;
  k.resident_layers = plan.resident ? plan.resident_layers : 0;
  k.ring_slots = plan.resident ? plan.ring_slots : 0;
  k.smem_bytes = size_t(Chain::smem_bytes());
  k.plan = &plan;
  return k;
}

// Calls f(Chain{}) for every kernel this file compiles: each listed net, both homes, both precisions.
template <class F>
void for_each_kernel(F&& f) {
  for_each_tiled_net([&](auto net, const std::vector<int>&) {
    using Net = decltype(net);
    f(TiledKernel<Net, TiledHome::kGlobal, false>{});
    f(TiledKernel<Net, TiledHome::kShared, false>{});
    f(TiledKernel<Net, TiledHome::kGlobal, true>{});
    f(TiledKernel<Net, TiledHome::kShared, true>{});
  });
}

// The kernel of a found net: the one whose plan is k's.
template <class F>
bool with_kernel(const TiledKernelInfo& k, F&& f) {
  bool done = false;
  for_each_kernel([&](auto chain) {
    using C = decltype(chain);
    if (!done && k.plan == info_of<C>(k.home).plan) done = true, f(tiled_chain_kernel<C>);
  });
  return done;
}

}  // namespace

TiledKernelInfo tiled_chain_info(const std::vector<int>& channels, TiledHome home, bool tf32) {
  TiledKernelInfo out;
  for_each_tiled_net([&](auto net, const std::vector<int>& ch) {
    using Net = decltype(net);
    if (out.found || ch != channels) return;
    if (home == TiledHome::kShared)
      out = tf32 ? info_of<TiledKernel<Net, TiledHome::kShared, true>>(home)
                 : info_of<TiledKernel<Net, TiledHome::kShared, false>>(home);
    else
      out = tf32 ? info_of<TiledKernel<Net, TiledHome::kGlobal, true>>(home)
                 : info_of<TiledKernel<Net, TiledHome::kGlobal, false>>(home);
  });
  return out;
}

cudaError_t tiled_chain_prepare(const TiledKernelInfo& k) {
  cudaError_t err = cudaErrorInvalidValue;
  with_kernel(k, [&](auto kernel) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(k.smem_bytes));
  });
  return err;
}

cudaError_t tiled_pack(float* packed, const float* params, const TiledKernelInfo& k, const TiledParamOffsets& offsets,
                       cudaStream_t s) {
  if (!k.found) return cudaErrorInvalidValue;
  const int threads = 256, blocks = (k.packed_floats + threads - 1) / threads;
  tiled_pack_kernel<<<blocks, threads, 0, s>>>(packed, params, *k.plan, offsets);
  return cudaGetLastError();
}

cudaError_t tiled_chain(float* x, const float* packed, int n, const TiledKernelInfo& k, const TiledSampler& p,
                        const ChainNoiseSource& src, cudaStream_t s) {
  if (n <= 0 || p.steps <= 0) return cudaSuccess;
  if (!with_kernel(k, [&](auto kernel) { kernel<<<unsigned(n), unsigned(k.threads), k.smem_bytes, s>>>(x, packed, p, src); }))
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace ebm::cuda
