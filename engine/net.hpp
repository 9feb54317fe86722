// The energy network's shape: conv layers (k×k, stride s, zero pad k/2, bias, swish), then a dense
// layer to K outputs f(x) [K] (K = `outputs`: 1 for the energy net, K > 1 for a classifier's logits). All
// parameters live in one flat float buffer, in checkpoint order (PyTorch's nn.Linear(D, K) for the head):
//   convs.0.weight [C0,Cin,k,k], convs.0.bias [C0], ..., dense.weight [K, D], dense.bias [K],
// D = C·H·W of the last conv layer, NCHW-flattened.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ebm {

struct ConvShape {
  int cin, cout, k, stride, pad;
  int hin, win, hout, wout;
  int64_t w_off, b_off;  // offsets into the flat parameter buffer
  int64_t w_size() const { return int64_t(cout) * cin * k * k; }
};

struct ParamTensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset, size;
};

struct NetSpec {
  int in_c = 1, in_h = 32, in_w = 32;
  std::vector<ConvShape> convs;
  int64_t dense_in = 0, dense_w_off = 0, dense_b_off = 0;  // D; dense.weight [K, D] and dense.bias [K] offsets
  int outputs = 1;                                          // K
  int64_t num_params = 0;

  static NetSpec make(const std::vector<int>& channels, int kernel, int stride, int in_hw, int in_c = 1,
                      int outputs = 1);
  std::vector<ParamTensor> tensors() const;
  int64_t image_size() const { return int64_t(in_c) * in_h * in_w; }
  std::string summary() const;  // a Keras-like table
};

// Class indices for a K-output net (JEM's labels, class-conditional sampling): each in [0, K). UserError naming
// `what`, its index and value, and K, at the first one out of range; check_conditional also needs K > 1 and
// one class per chain (n).
void check_classes(const std::vector<int32_t>& classes, int K, const char* what);
void check_conditional(const NetSpec& net, const std::vector<int32_t>& classes, int64_t n);

// Keras' defaults: Glorot-uniform kernels (limit √(6/(fan_in+fan_out))), zero biases.
std::vector<float> init_params(const NetSpec& net, uint64_t seed);

}  // namespace ebm
