// The tiled Langevin chain on the GPU: one block of 512 threads an image, all K steps in one launch, for the nets of
// kernels/langevin_chain_tiled_nets.hpp; the per-thread code is kernels/langevin_chain_tiled.hpp (its design and
// shared-memory layout are described there and in bench/README.md). Before a chain, tiled_pack writes the weights in
// the chain's layout (one small kernel; the training step's graph captures it with the chain).
// Launchers (kernels in langevin_chain_tiled.cu); each returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/langevin_chain.cuh"             // ChainNoiseSource
#include "kernels/langevin_chain_tiled_nets.hpp"  // TiledHome, the nets

namespace ebm::cuda {

// Which compiled kernel runs a net: found = false for a net not listed (the generic chain runs it).
struct TiledKernelInfo {
  bool found = false;
  TiledHome home = TiledHome::kGlobal;
  bool tf32 = false;
  int threads = 0, packed_floats = 0, resident_layers = 0, ring_slots = 0;
  size_t smem_bytes = 0;
  const TiledPlan* plan = nullptr;  // the net's plan (host copy), for tiled_pack
};

// The kernel for a net given by its channels (1 input channel, 32×32, 3×3, stride 2), in `home`, fp32 or tf32.
TiledKernelInfo tiled_chain_info(const std::vector<int>& channels, TiledHome home, bool tf32);

// Lets the kernel take its shared memory (above 48 KB). Once per backend, before any graph capture.
[[nodiscard]] cudaError_t tiled_chain_prepare(const TiledKernelInfo& k);

// packed [k.packed_floats] (device, 16-byte aligned) ← params [num_params] (device) in the chain's layout.
[[nodiscard]] cudaError_t tiled_pack(float* packed, const float* params, const TiledKernelInfo& k,
                                     const TiledParamOffsets& offsets, cudaStream_t s);

// x [n, img] (device) refined in place by p.steps steps on the packed weights; one block an image.
[[nodiscard]] cudaError_t tiled_chain(float* x, const float* packed, int n, const TiledKernelInfo& k,
                                      const TiledSampler& p, const ChainNoiseSource& src, cudaStream_t s);

}  // namespace ebm::cuda
