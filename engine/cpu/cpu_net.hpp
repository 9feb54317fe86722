// The energy network on the CPU: im2col + GEMM convolutions with fused bias+swish, and the two
// backward passes the method needs (w.r.t. the input for Langevin, w.r.t. the parameters for Adam).
//
// Activations are kept pixel-major, "NHWC": layer l's output is [n·H_l·W_l][C_l], so im2col and its
// adjoint move whole channel vectors (16–64 contiguous floats) instead of single strided floats, and
// each conv is one GEMM over the whole batch: z [n·Ho·Wo, Cout] = col [n·Ho·Wo, k·k·Cin] · Wᵀ, with the
// weights permuted once per pass from the checkpoint's [Cout, Cin, k, k] to [Cout, k, k, Cin].
#pragma once
#include <cstdint>
#include <vector>

#include "engine/net.hpp"

namespace ebm {

// T = float for the engine; T = double for the finite-difference gradient checks of the same code.
template <class T>
class CpuNetT {
 public:
  explicit CpuNetT(const NetSpec& net) : net_(net) {}
  const NetSpec& spec() const { return net_; }

  // f [n][K] (row-major; K = spec().outputs) = f(x) for x [n,in_c,H,W]. Keeps what backward() needs.
  void forward(const T* params, const T* x, int n, T* f);

  // After forward(): the dense layer's input [n][D], the last conv activation NCHW-flattened (D = C·H·W).
  void features(T* out) const;

  // After forward(): with upstream weights df [n][K] (dL/df_ik), writes
  //   dx   [n,in_c,H,W] = dL/dx   (skipped when null)
  //   grad [num_params] = dL/dθ   (skipped when null; overwritten, not accumulated)
  void backward(const T* params, const T* df, T* dx, T* grad);

 private:
  bool conv_implicit(const ConvShape& s, int n, size_t l, const T* wpt);

  NetSpec net_;
  int n_ = 0;
  std::vector<std::vector<T>> wp_;   // per layer: weights as [Cout][k][k][Cin] (backward-data GEMM)
  std::vector<std::vector<T>> wpt_;  // per layer: the same, transposed to [k·k·Cin][Cout] (forward GEMM)
  std::vector<std::vector<T>> in_;   // per layer: its input, NHWC [n·H·W][Cin]
  std::vector<std::vector<T>> col_;  // per layer: im2col [n·Ho·Wo][k·k·Cin]
  std::vector<std::vector<T>> z_;    // per layer: pre-activation [n·Ho·Wo][Cout]
  std::vector<std::vector<T>> sig_;  // per layer: σ(z), so backward needs no exp
  std::vector<T> out_;               // last activation [n·H_L·W_L][C_L]
  std::vector<std::vector<int32_t>> taps_;  // per layer: input pixel of each (output pixel, tap), −1 = pad
  std::vector<int> taps_n_;                 // the batch size taps_ was built for
  std::vector<char> col_ready_;             // col_ holds this forward's im2col (implicit GEMM skips it)
  std::vector<T> dz_, dcol_, da_, da_prev_, dw_;
};

using CpuNet = CpuNetT<float>;
extern template class CpuNetT<float>;
extern template class CpuNetT<double>;

}  // namespace ebm
