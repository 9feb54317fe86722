// The energy network on the CPU: im2col + SGEMM convolutions with fused bias+swish, and the two
// backward passes the method needs (w.r.t. the input for Langevin, w.r.t. the parameters for Adam).
//
// Activations are kept channel-major, "CNHW": layer l's output is [C_l][n·H_l·W_l], so each conv is one
// GEMM over the whole batch, W[Cout, Cin·k·k] × col[Cin·k·k, n·Ho·Wo], with no transposes between
// layers. The input [n,1,H,W] is already CNHW when in_c == 1.
#pragma once
#include <vector>

#include "engine/net.hpp"

namespace ebm {

// T = float for the engine; T = double for the finite-difference gradient checks of the same code.
template <class T>
class CpuNetT {
 public:
  explicit CpuNetT(const NetSpec& net) : net_(net) {}
  const NetSpec& spec() const { return net_; }

  // f [n] = f(x) for x [n,in_c,H,W]. Keeps what backward() needs.
  void forward(const T* params, const T* x, int n, T* f);

  // After forward(): with upstream weights df [n] (dL/df_i), writes
  //   dx   [n,in_c,H,W] = dL/dx   (skipped when null)
  //   grad [num_params] = dL/dθ   (skipped when null; overwritten, not accumulated)
  void backward(const T* params, const T* df, T* dx, T* grad);

 private:
  NetSpec net_;
  int n_ = 0;
  std::vector<std::vector<T>> in_;   // per layer: its input, CNHW [Cin][n·H·W]
  std::vector<std::vector<T>> col_;  // per layer: im2col [Cin·k·k][n·Ho·Wo]
  std::vector<std::vector<T>> z_;    // per layer: pre-activation [Cout][n·Ho·Wo]
  std::vector<std::vector<T>> sig_;  // per layer: σ(z), so backward needs no exp
  std::vector<T> out_;               // last activation [C_L][n·H_L·W_L]
  std::vector<T> dz_, dcol_, da_, da_prev_;
};

using CpuNet = CpuNetT<float>;
extern template class CpuNetT<float>;
extern template class CpuNetT<double>;

}  // namespace ebm
