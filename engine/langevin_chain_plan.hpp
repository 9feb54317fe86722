// Whether a fused Langevin chain takes a network, which kernel runs it, and the generic kernel's shared-memory layout:
// the host side of the kernels' plans, in plain C++ so that the CPU harnesses and the CUDA backend share it.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "engine/backend.hpp"                     // ChainKernel
#include "engine/net.hpp"
#include "kernels/langevin_chain_block.hpp"       // ChainNet, chain_layout
#include "kernels/langevin_chain_tiled.hpp"       // TiledParamOffsets

namespace ebm {

// The generic chain's view of an energy net: layer shapes, parameter offsets, shared-memory offsets.
ChainNet chain_net_for(const NetSpec& net);

// Shared memory one image takes in the generic chain (bytes).
size_t chain_image_bytes(const ChainNet& net);

// Why the generic chain cannot run `net` with at most `smem_per_block` bytes of shared memory per block (the
// device's opt-in limit): "" when it can. One line, for the fallback message.
std::string chain_refusal(const NetSpec& net, size_t smem_per_block);

// Images per block of the generic chain (2 or 1): 2 where two blocks of two images fit in `smem_per_sm` bytes (so two
// blocks can share an SM and each weight load serves two images), else 1. Only for nets chain_refusal accepts.
int chain_images_per_block(const ChainNet& net, size_t smem_per_block, size_t smem_per_sm);

// The channels of `net` when the tiled chain is compiled for it (kernels/langevin_chain_tiled_nets.hpp: one input
// channel, 32×32, 3×3 kernels, stride 2, one output, listed channels); empty when it is not.
std::vector<int> tiled_channels(const NetSpec& net);

// Shared memory a block of the tiled chain takes for `net` in `kernel` (kTiled or kResident), fp32 or tf32; 0 when not
// compiled in.
size_t tiled_smem_bytes(const NetSpec& net, ChainKernel kernel, bool tf32 = false);

// Where the engine keeps the net's parameters, for the tiled chain's packing.
TiledParamOffsets tiled_offsets(const NetSpec& net);

// Which kernel runs the chains of `net` when cuda.chain asks for `want`, on a device with `smem_per_block` bytes of
// opt-in shared memory a block: `kernel` (kGeneric, kTiled or kResident) and one line saying so, and why when it is not
// what was asked for; `fused` false when no chain kernel takes the net (then the per-layer path runs, `line` says why).
// With tf32 (cuda.precision "tf32") the tiled kernels' TF32 builds are chosen; the generic kernel has none (the line
// says so).
struct ChainChoice {
  bool fused = false;
  ChainKernel kernel = ChainKernel::kGeneric;
  bool tf32 = false;
  std::string line;
};
// cc_major: the device's compute capability (the tiled kernels' bulk copies and mbarriers need 9.0).
ChainChoice choose_chain(const NetSpec& net, ChainKernel want, size_t smem_per_block, bool tf32 = false,
                         int cc_major = 9);

}  // namespace ebm
