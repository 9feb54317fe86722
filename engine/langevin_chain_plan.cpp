#include "engine/langevin_chain_plan.hpp"

#include "kernels/langevin_chain_tiled_nets.hpp"  // the compiled nets and their plans

namespace ebm {

ChainNet chain_net_for(const NetSpec& net) {
  ChainNet c;
  if (net.convs.size() > size_t(kChainMaxLayers)) return c;  // layers = 0: chain_refusal says why
  c.layers = int(net.convs.size());
  for (int l = 0; l < c.layers; ++l) {
    const ConvShape& s = net.convs[size_t(l)];
    c.l[l] = ChainLayer{s.cin, s.cout, s.k, s.stride, s.pad, s.hin, s.win, s.hout, s.wout, s.w_off, s.b_off, -1};
  }
  c.dense_w_off = net.dense_w_off;
  c.img = int(net.image_size());
  chain_layout(c);
  return c;
}

size_t chain_image_bytes(const ChainNet& net) { return sizeof(float) * size_t(net.image_floats); }

std::string chain_refusal(const NetSpec& net, size_t smem_per_block) {
  if (net.outputs != 1) return "the net has " + std::to_string(net.outputs) + " outputs; the chain needs f scalar";
  if (net.convs.empty()) return "the net has no conv layers";
  if (net.convs.size() > size_t(kChainMaxLayers))
    return std::to_string(net.convs.size()) + " conv layers, the kernel takes at most " + std::to_string(kChainMaxLayers);
  const size_t need = chain_image_bytes(chain_net_for(net));
  if (need > smem_per_block)
    return "one image needs " + std::to_string((need + 1023) / 1024) + " KB of shared memory (image, swish' of every " +
           "layer but the last, two activation buffers), the device gives a block " +
           std::to_string(smem_per_block / 1024) + " KB";
  return "";
}

int chain_images_per_block(const ChainNet& net, size_t smem_per_block, size_t smem_per_sm) {
  constexpr size_t kReservedPerBlock = 1024;  // the runtime's shared memory per resident block (sm_80+)
  const size_t two = 2 * chain_image_bytes(net);
  return two <= smem_per_block && 2 * (two + kReservedPerBlock) <= smem_per_sm ? 2 : 1;
}

std::vector<int> tiled_channels(const NetSpec& net) {
  if (net.outputs != 1 || net.in_c != 1 || net.in_h != 32 || net.in_w != 32) return {};
  std::vector<int> ch;
  for (const ConvShape& c : net.convs) {
    if (c.k != 3 || c.stride != 2 || c.pad != 1) return {};
    ch.push_back(c.cout);
  }
  bool listed = false;
  for_each_tiled_net([&](auto, const std::vector<int>& c) { listed = listed || c == ch; });
  return listed ? ch : std::vector<int>{};
}

namespace {

// What a compiled plan says about a net in a kernel (found = false when the net is not compiled in).
struct TiledSummary {
  bool found = false;
  int threads = 0, resident_layers = 0, ring_slots = 0;
  size_t smem_bytes = 0;
};

TiledSummary tiled_summary(const NetSpec& net, ChainKernel kernel, bool tf32) {
  const std::vector<int> ch = tiled_channels(net);
  TiledSummary out;
  for_each_tiled_net([&](auto n, const std::vector<int>& c) {
    using Net = decltype(n);
    if (ch.empty() || c != ch) return;
    auto take = [&](auto chain) {
      using C = decltype(chain);
      out = {true, C::P.nt, C::P.resident ? C::P.resident_layers : 0, C::P.resident ? C::P.ring_slots : 0,
             size_t(C::smem_bytes())};
    };
    if (kernel == ChainKernel::kResident && !tf32) take(TiledKernel<Net, TiledHome::kShared, false>{});
    if (kernel == ChainKernel::kTiled && !tf32) take(TiledKernel<Net, TiledHome::kGlobal, false>{});
    if (kernel == ChainKernel::kResident && tf32) take(TiledKernel<Net, TiledHome::kShared, true>{});
    if (kernel == ChainKernel::kTiled && tf32) take(TiledKernel<Net, TiledHome::kGlobal, true>{});
  });
  return out;
}

}  // namespace

size_t tiled_smem_bytes(const NetSpec& net, ChainKernel kernel, bool tf32) {
  return tiled_summary(net, kernel, tf32).smem_bytes;
}

TiledParamOffsets tiled_offsets(const NetSpec& net) {
  TiledParamOffsets o;
  for (size_t l = 0; l < net.convs.size() && l < size_t(kTiledMaxLayers); ++l) {
    o.w_off[l] = net.convs[l].w_off;
    o.b_off[l] = net.convs[l].b_off;
  }
  o.dense_w_off = net.dense_w_off;
  return o;
}

ChainChoice choose_chain(const NetSpec& net, ChainKernel want, size_t smem_per_block, bool tf32, int cc_major) {
  ChainChoice c;
  auto kb = [](size_t b) { return std::to_string((b + 1023) / 1024) + " KB"; };
  // Why the tiled kernel asked for does not run, as the start of the line ("" when it does, or none was asked for).
  std::string why;
  if (cc_major < 9) {
    if (want == ChainKernel::kResident || want == ChainKernel::kTiled)
      why = std::string("cuda.chain \"") + chain_kernel_name(want) + "\" needs compute capability 9.0 (its bulk copies " +
            "and mbarriers), this GPU has " + std::to_string(cc_major) + ".x; ";
  } else if (want == ChainKernel::kResident || want == ChainKernel::kTiled) {
    const TiledSummary s = tiled_summary(net, want, tf32);
    if (!s.found)
      why = std::string("cuda.chain \"") + chain_kernel_name(want) +
            "\" is compiled for 1×32×32 inputs, 3×3 stride-2 layers of channels [16,32,64,64], [8,16] or [32,64,64] "
            "(kernels/langevin_chain_tiled_nets.hpp), not this net; ";
    else if (s.smem_bytes > smem_per_block)
      why = std::string("cuda.chain \"") + chain_kernel_name(want) + "\" needs " + kb(s.smem_bytes) +
            " of shared memory a block, the device gives " + std::to_string(smem_per_block / 1024) + " KB; ";
  }
  std::vector<ChainKernel> order;
  if (want == ChainKernel::kAuto || want == ChainKernel::kResident) order = {ChainKernel::kResident, ChainKernel::kTiled};
  if (want == ChainKernel::kTiled) order = {ChainKernel::kTiled};
  if (cc_major < 9) order.clear();
  for (ChainKernel k : order) {
    const TiledSummary s = tiled_summary(net, k, tf32);
    if (!s.found || s.smem_bytes > smem_per_block) continue;
    c.fused = true;
    c.kernel = k;
    c.tf32 = tf32;
    c.line = why + "fused Langevin chain: the " + chain_kernel_name(k) + " kernel (" + std::to_string(s.threads) +
             " threads, " + kb(s.smem_bytes) + " of shared memory, " +
             (tf32 ? "layers 2–" + std::to_string(net.convs.size()) + " on TF32 tensor cores, " : "");
    if (k == ChainKernel::kTiled) c.line += "weights read through L1/L2)";
    else if (s.ring_slots == 0) c.line += "every layer's weights on chip)";
    else
      c.line += std::to_string(s.resident_layers) + " of " + std::to_string(net.convs.size()) +
                " layers' weights on chip, the others streamed through " + std::to_string(s.ring_slots) + " slots)";
    return c;
  }
  const std::string refusal = chain_refusal(net, smem_per_block);
  if (!refusal.empty()) {
    c.line = why + "cuda.langevin \"fused\" falls back to the per-layer path: " + refusal;
    return c;
  }
  c.fused = true;
  c.kernel = ChainKernel::kGeneric;
  c.line = why + "fused Langevin chain: the generic kernel (shapes at run time" +
           std::string(want == ChainKernel::kGeneric ? ", as cuda.chain asks" : "; no tiled kernel is compiled for this net") +
           (tf32 ? "; fp32: it has no TF32 build)" : ")");
  return c;
}

}  // namespace ebm
