// The energy network on the CPU: convolutions as GEMMs with fused bias+swish, and the two backward passes the
// method needs (w.r.t. the input for Langevin, w.r.t. the parameters for Adam).
//
// Activations are kept pixel-major, "NHWC": layer l's output is [n·H_l·W_l][C_l], so each conv is one GEMM over the
// whole batch, z [n·Ho·Wo, Cout] = col [n·Ho·Wo, k·k·Cin] · Wᵀ, with the weights permuted from the checkpoint's
// [Cout, Cin, k, k] to [Cout, k, k, Cin] (once per pass, or once per Langevin chain: hold_weights). The forward runs
// as an implicit GEMM (rows of col read from the input through a tap table, never written), the input gradient as
// implicit GEMMs over the input pixels' residue classes (conv_backward_classes: no column matrix, no col2im), with
// the rows of both grouped so that tiles skip the taps outside the image (16-channel inputs, where those tiles would be
// one vector wide, as dcol = dz·W in wide tiles gathered by col2im_offsets); the weight gradient uses
// the explicit im2col matrix and BLAS. The first (one-channel) layer is a direct convolution, its input gradient
// through the stride² residue classes of its plane.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/cpu/small_gemm.hpp"  // SwishOut
#include "engine/net.hpp"

namespace ebm {

// The backward-data pass of conv layer s for a batch of n without the column matrix: din = col2im(dz · Wp) as stride²
// implicit GEMMs (small_conv_tapsum_nn), one per residue class ((iy + pad) mod stride, (ix + pad) mod stride) of the
// input pixels. The pixels of a class share their taps (ky, kx) ≡ the class; each tap reads output pixel
// ((iy + pad − ky) / stride, (ix + pad − kx) / stride) of dz, or nothing (−1) outside it. The taps are listed in
// col2im's order — the output pixels that read an input pixel in raster order, i.e. ky then kx descending — so the
// kernel's sums have col2im's bits. A class's rows are grouped by their padding taps (tiles skip taps that are padding
// for all their rows). A class's weights are [taps·cout][cin]: row t·cout + co is Wp[co][tap t's cin].
struct ConvBackwardClasses {
  struct Class {
    std::vector<int> tap_index;        // ky·k + kx of each tap, in col2im's order
    size_t taps_off = 0, rows_off = 0;  // where its rows' entries start in taps and rows
    int m = 0;                          // its rows: input pixels over the batch
  };
  int n = -1;                    // the batch size
  std::vector<Class> classes;    // those with at least one pixel
  std::vector<int32_t> taps;     // per row of each class: its taps' dz pixels (−1: none)
  std::vector<int32_t> rows;     // per row of each class: its input pixel b·hin·win + iy·win + ix
};
ConvBackwardClasses conv_backward_classes(const ConvShape& s, int n);

// col2im of one image as a gather table (for small_gemm.hpp's conv_col2im_rows): for input pixel i = iy·win + ix in
// raster order, T entries (T = ⌈k/stride⌉², set here) of the elements of dcol [hout·wout][k·k·cin] it sums, in
// col2im's order (the output pixels that read it in raster order): entry = output pixel · k·k·cin + tap · cin, or −1
// (none: padding, or fewer taps in the pixel's residue class).
std::vector<int32_t> col2im_offsets(const ConvShape& s, int& T);

// Reorders the m rows of a tap table (T taps per row, −1 = padding; rows[r] = where row r's result goes) so that rows
// padded at the same taps are adjacent, stably; the implicit GEMMs' tiles then skip the taps that are padding for all
// their rows. Each row keeps its taps in their order. Tables with more than 64 taps per row are left as they are.
void group_rows_by_padding(int T, int32_t* taps, int32_t* rows, int m);

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

  // A Langevin chain runs many passes with one set of weights: hold_weights(params) puts them in the kernels'
  // layouts once, and forward()/backward() given that same pointer skip it until release_weights() or a pass with
  // other weights. The caller promises not to change params meanwhile (the CPU backend holds them for one
  // langevin() call).
  void hold_weights(const T* params);
  void release_weights() { held_ = nullptr; }

 private:
  void prepare_weights(const T* params);
  bool conv_implicit(const ConvShape& s, int n, size_t l, const T* wpt, const SwishOut* swish);
  bool backward_data_implicit(const ConvShape& s, int n, size_t l, const T* dz, T* din, const T* sig_below,
                              const T* z_below);

  NetSpec net_;
  int n_ = 0;
  const T* held_ = nullptr;      // hold_weights()
  int64_t weights_version_ = 0;  // counts prepare_weights() runs that changed wp_
  std::vector<std::vector<T>> wp_;   // per layer: weights as [Cout][k][k][Cin] (backward-data GEMM)
  std::vector<std::vector<T>> wpt_;  // per layer: the same, transposed to [k·k·Cin][Cout] (forward GEMM)
  std::vector<std::vector<T>> in_;   // per layer: its input, NHWC [n·H·W][Cin]
  std::vector<std::vector<T>> col_;  // per layer: im2col [n·Ho·Wo][k·k·Cin]
  std::vector<std::vector<T>> z_;    // per layer: pre-activation [n·Ho·Wo][Cout]
  std::vector<std::vector<T>> sig_;  // per layer: σ(z), so backward needs no exp
  std::vector<T> out_;               // last activation [n·H_L·W_L][C_L]
  std::vector<std::vector<int32_t>> taps_;  // per layer: input pixel of each (output pixel, tap), −1 = pad
  std::vector<std::vector<int32_t>> taps_rows_;  // per layer: the output pixel of each row of taps_
  std::vector<int> taps_n_;                 // the batch size taps_ was built for
  std::vector<ConvBackwardClasses> bcls_;   // per layer: the implicit backward-data pass's tables (batch bcls_[l].n)
  std::vector<std::vector<int32_t>> c2i_;  // per layer where dcol is gathered: col2im_offsets (one image)
  std::vector<int> c2i_t_;                 // … and its entries per pixel
  std::vector<std::vector<T>> bw_;          // per layer: its classes' weights, one after the other
  std::vector<int64_t> bw_version_;         // per layer: the weights_version_ bw_ was packed from
  std::vector<char> col_ready_;             // col_ holds this forward's im2col (implicit GEMM skips it)
  std::vector<T> dz_, dcol_, da_, da_prev_, dw_;
};

using CpuNet = CpuNetT<float>;
extern template class CpuNetT<float>;
extern template class CpuNetT<double>;

}  // namespace ebm
