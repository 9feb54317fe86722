#include "engine/langevin_chain_plan.hpp"

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

}  // namespace ebm
