// The fused Langevin chain: all K steps of DESIGN §1 for a batch in one launch — one thread block per
// kImages images (1 or 2), the image and every activation the backward pass needs in shared memory, weights
// through the read-only cache, a __syncthreads() between layers and no global synchronisation. The per-image
// code is kernels/langevin_chain_block.hpp (also compiled by g++ for the CPU harness); the layout, barriers,
// budget and fallback are described in bench/README.md ("The fused Langevin chain").
// Launchers (kernel in langevin_chain.cu); each returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/langevin_chain_block.hpp"

namespace ebm::cuda {

// Where the chain's normals come from, read from device memory at launch (so a graph replay sees that
// replay's values): step k draws element e of x [n, img] from stream `stream` at block *offset + add + k·blocks,
// seed *seed — kernels/langevin.cuh's NoiseSource, per step.
struct ChainNoiseSource {
  const uint64_t* seed;
  const uint64_t* offset;
  uint64_t stream;
  uint64_t add;
  uint64_t blocks_per_step;
};

// Shared memory one block of `images` images takes (bytes).
inline size_t langevin_chain_smem_bytes(const ChainNet& net, int images) {
  return sizeof(float) * size_t(net.image_floats) * size_t(images);
}

// Lets the kernel for `images` images per block take its shared memory (above the 48 KB default). Call once
// per net before launching (and before any graph capture).
[[nodiscard]] cudaError_t langevin_chain_prepare(const ChainNet& net, int images);

// x [n, img] (device) refined in place by p.steps steps on params [num_params] (device); images ∈ {1, 2}.
[[nodiscard]] cudaError_t langevin_chain(float* x, const float* params, int n, const ChainNet& net, int images,
                                         const ChainSampler& p, const ChainNoiseSource& src, cudaStream_t s);

}  // namespace ebm::cuda
