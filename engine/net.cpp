#include "engine/net.hpp"

#include <cmath>
#include <sstream>

#include "engine/error.hpp"
#include "engine/rng.hpp"

namespace ebm {

NetSpec NetSpec::make(const std::vector<int>& channels, int kernel, int stride, int in_hw, int in_c, int outputs) {
  EBM_CHECK(!channels.empty() && kernel > 0 && stride > 0 && in_hw > 0, "bad network shape");
  if (outputs < 1) user_fail("model.outputs must be at least 1, got ", outputs);
  NetSpec n;
  n.in_c = in_c;
  n.outputs = outputs;
  n.in_h = n.in_w = in_hw;
  int c = in_c, h = in_hw, w = in_hw;
  int64_t off = 0;
  for (int cout : channels) {
    ConvShape s{};
    s.cin = c; s.cout = cout; s.k = kernel; s.stride = stride; s.pad = kernel / 2;
    s.hin = h; s.win = w;
    s.hout = (h + 2 * s.pad - kernel) / stride + 1;
    s.wout = (w + 2 * s.pad - kernel) / stride + 1;
    if (s.hout < 1 || s.wout < 1)
      user_fail("model: ", channels.size(), " conv layers of stride ", stride, " reduce a ", in_hw, "x", in_hw,
                " image below 1x1; use fewer layers or a larger data.pad_to");
    s.w_off = off; off += s.w_size();
    s.b_off = off; off += cout;
    n.convs.push_back(s);
    c = cout; h = s.hout; w = s.wout;
  }
  n.dense_in = int64_t(c) * h * w;
  n.dense_w_off = off; off += int64_t(outputs) * n.dense_in;
  n.dense_b_off = off; off += outputs;
  n.num_params = off;
  return n;
}

std::vector<ParamTensor> NetSpec::tensors() const {
  std::vector<ParamTensor> t;
  for (size_t i = 0; i < convs.size(); ++i) {
    const auto& s = convs[i];
    t.push_back({"convs." + std::to_string(i) + ".weight", {s.cout, s.cin, s.k, s.k}, s.w_off, s.w_size()});
    t.push_back({"convs." + std::to_string(i) + ".bias", {s.cout}, s.b_off, s.cout});
  }
  t.push_back({"dense.weight", {outputs, dense_in}, dense_w_off, int64_t(outputs) * dense_in});
  t.push_back({"dense.bias", {outputs}, dense_b_off, outputs});
  return t;
}

std::string NetSpec::summary() const {
  std::ostringstream os;
  os << "input [" << in_c << "," << in_h << "," << in_w << "]\n";
  for (size_t i = 0; i < convs.size(); ++i) {
    const auto& s = convs[i];
    os << "conv" << i << "  " << s.k << "x" << s.k << "/" << s.stride << "  -> [" << s.cout << "," << s.hout << ","
       << s.wout << "]  params " << s.w_size() + s.cout << "\n";
  }
  os << "dense  " << dense_in << " -> " << outputs << "  params " << (dense_in + 1) * outputs << "\n";
  os << "total params " << num_params;
  return os.str();
}

std::vector<float> init_params(const NetSpec& net, uint64_t seed) {
  std::vector<float> p(net.num_params, 0.0f);  // biases stay zero
  Rng rng(seed, RngStream::kInit);
  for (const auto& s : net.convs) {
    const float limit = std::sqrt(6.0f / float(s.cin * s.k * s.k + s.cout * s.k * s.k));
    rng.uniform(p.data() + s.w_off, s.w_size(), -limit, limit);
  }
  const float limit = std::sqrt(6.0f / float(net.dense_in + net.outputs));
  rng.uniform(p.data() + net.dense_w_off, int64_t(net.outputs) * net.dense_in, -limit, limit);
  return p;
}

void check_classes(const std::vector<int32_t>& classes, int K, const char* what) {
  for (size_t i = 0; i < classes.size(); ++i)
    if (classes[i] < 0 || classes[i] >= K)
      user_fail(what, " ", i, " is ", classes[i], ": classes run from 0 to ", K - 1, " (model.outputs = ", K, ")");
}

void check_conditional(const NetSpec& net, const std::vector<int32_t>& classes, int64_t n) {
  if (net.outputs < 2)
    user_fail("class-conditional sampling needs a net with one output per class (a train.objective \"jem\" model); "
              "this one has model.outputs = ", net.outputs);
  EBM_CHECK(int64_t(classes.size()) == n, "class-conditional sampling: one class per chain");
  check_classes(classes, net.outputs, "class of chain");
}

}  // namespace ebm
