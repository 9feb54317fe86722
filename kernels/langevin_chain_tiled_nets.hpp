// The nets the tiled Langevin chain (kernels/langevin_chain_tiled.hpp) is compiled for, and its two weight homes.
// One list for the kernels (kernels/langevin_chain_tiled.cu instantiates each), the engine's plan (which net takes
// which kernel: engine/langevin_chain_plan.cpp) and the tests. A net not listed runs the generic chain
// (kernels/langevin_chain.cuh). Every entry: 1 input channel, 32×32 (data.pad_to 32), 3×3 kernels, stride 2, pad 1.
#pragma once
#include <vector>

#include "kernels/langevin_chain_tiled.hpp"

namespace ebm {

using TiledSeedNet = TiledNet<1, 32, 16, 32, 64, 64>;  // DESIGN §1: the seed's net and every shipped config's
using TiledSmallNet = TiledNet<1, 32, 8, 16>;          // the tests' small net
using TiledWide3Net = TiledNet<1, 32, 32, 64, 64>;     // the tests' wide net (116 KB of activations an image)

constexpr int kTiledThreads = 512;  // threads a block of the engine's tiled kernels (the sweep times 256 too)

// Where a variant keeps the weights: read from global memory through L1/L2 (tiled), or on chip — leading layers in
// shared memory for the whole chain, the rest streamed through a ring (resident).
enum class TiledHome { kGlobal, kShared };

// The engine's kernel for a net, home and precision (tf32: layers after the first on TF32 tensor cores).
template <class Net, TiledHome H, bool kTf32 = false>
using TiledKernel = TiledChain<Net, kTiledThreads, H == TiledHome::kShared, kTf32>;

// Calls f(Net{}, channels) for every listed net.
template <class F>
void for_each_tiled_net(F&& f) {
  f(TiledSeedNet{}, std::vector<int>{16, 32, 64, 64});
  f(TiledSmallNet{}, std::vector<int>{8, 16});
  f(TiledWide3Net{}, std::vector<int>{32, 64, 64});
}

}  // namespace ebm
