// Kernel of langevin_chain.cuh: the phase loop of kernels/langevin_chain_block.hpp with a barrier between phases.
#include "kernels/chain_device_lane.cuh"  // DeviceLane
#include "kernels/langevin_chain.cuh"

namespace ebm::cuda {
namespace {

// x (n, img); block b owns images [b·kImages, b·kImages + kImages) ∩ [0, n). __launch_bounds__(256, 2): at most
// 128 registers a thread, so two blocks share an SM where their shared memory does.
template <int kImages>
__global__ void __launch_bounds__(kChainThreads, 2)
    langevin_chain_kernel(float* __restrict__ x, const float* __restrict__ params, int n, const ChainNet net,
                          const ChainSampler p, const ChainNoiseSource src) {
  extern __shared__ float4 smem4[];  // float4: 16-byte aligned
  float* smem = reinterpret_cast<float*>(smem4);
  const int first = blockIdx.x * kImages;
  const int nimg = n - first < kImages ? n - first : kImages;
  const bool noisy = p.noise > 0.0f;
  const ChainNoise nz{noisy ? *src.seed : 0, src.stream, noisy ? *src.offset + src.add : 0, src.blocks_per_step};
  float* xg = x + int64_t(first) * net.img;
  const int phases = chain_phases(net, p.steps);
  DeviceLane lane;
  for (int ph = 0; ph < phases; ++ph) {
    chain_phase<kImages>(lane, ph, threadIdx.x, blockDim.x, smem, net, params, xg, nimg, first, p, nz);
    if (ph + 1 < phases) __syncthreads();
  }
}

template <int kImages>
cudaError_t prepare(const ChainNet& net) {
  return cudaFuncSetAttribute(langevin_chain_kernel<kImages>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              int(langevin_chain_smem_bytes(net, kImages)));
}

template <int kImages>
void launch(float* x, const float* params, int n, const ChainNet& net, const ChainSampler& p,
            const ChainNoiseSource& src, cudaStream_t s) {
  const unsigned blocks = unsigned((n + kImages - 1) / kImages);
  langevin_chain_kernel<kImages>
      <<<blocks, kChainThreads, langevin_chain_smem_bytes(net, kImages), s>>>(x, params, n, net, p, src);
}

}  // namespace

cudaError_t langevin_chain_prepare(const ChainNet& net, int images) {
  if (images == 1) return prepare<1>(net);
  if (images == 2) return prepare<2>(net);
  return cudaErrorInvalidValue;
}

cudaError_t langevin_chain(float* x, const float* params, int n, const ChainNet& net, int images,
                           const ChainSampler& p, const ChainNoiseSource& src, cudaStream_t s) {
  if (n <= 0 || p.steps <= 0) return cudaSuccess;
  if (images == 1) launch<1>(x, params, n, net, p, src, s);
  else if (images == 2) launch<2>(x, params, n, net, p, src, s);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace ebm::cuda
