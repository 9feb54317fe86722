// Whether the fused Langevin chain (kernels/langevin_chain.cuh) takes a network, and its shared-memory layout:
// the host side of the kernel's plan, in plain C++ so that the CPU harness and the CUDA backend share it.
#pragma once
#include <cstddef>
#include <string>

#include "engine/net.hpp"
#include "kernels/langevin_chain_block.hpp"  // ChainNet, chain_layout

namespace ebm {

// The chain's view of an energy net: layer shapes, parameter offsets, shared-memory offsets.
ChainNet chain_net_for(const NetSpec& net);

// Shared memory one image takes (bytes).
size_t chain_image_bytes(const ChainNet& net);

// Why the fused chain cannot run `net` with at most `smem_per_block` bytes of shared memory per block (the
// device's opt-in limit): "" when it can. One line, for the fallback message.
std::string chain_refusal(const NetSpec& net, size_t smem_per_block);

// Images per block (2 or 1): 2 where two blocks of two images fit in `smem_per_sm` bytes (so two blocks can
// share an SM and each weight load serves two images), else 1. Only for nets chain_refusal accepts.
int chain_images_per_block(const ChainNet& net, size_t smem_per_block, size_t smem_per_sm);

}  // namespace ebm
