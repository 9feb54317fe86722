#include "engine/cpu_net.hpp"

#include <algorithm>
#include <cstring>

#include "engine/gemm.hpp"
#include <cmath>

namespace ebm {
namespace {

// Output columns ox whose input column ix = ox·stride − pad + kx lies inside the image: [lo, hi).
inline void valid_columns(const ConvShape& s, int kx, int& lo, int& hi) {
  lo = 0;
  while (lo < s.wout && lo * s.stride - s.pad + kx < 0) ++lo;
  hi = s.wout;
  while (hi > lo && (hi - 1) * s.stride - s.pad + kx >= s.win) --hi;
}

// in [cin][n·h·w] -> col [cin·k·k][n·ho·wo], zero padding outside the image.
template <class T>
void im2col(const ConvShape& s, int n, const T* in, T* col) {
  const int kk = s.k * s.k, p = s.hout * s.wout;
  const int64_t hw = int64_t(s.hin) * s.win;
#pragma omp parallel for collapse(2) schedule(static)
  for (int r = 0; r < s.cin * kk; ++r) {
    for (int b = 0; b < n; ++b) {
      const int ci = r / kk, ky = (r % kk) / s.k, kx = r % s.k;
      int lo, hi;
      valid_columns(s, kx, lo, hi);
      const T* src = in + int64_t(ci) * n * hw + b * hw;
      T* dst = col + int64_t(r) * n * p + int64_t(b) * p;
      for (int oy = 0; oy < s.hout; ++oy) {
        const int iy = oy * s.stride - s.pad + ky;
        T* d = dst + oy * s.wout;
        if (iy < 0 || iy >= s.hin) {
          std::fill(d, d + s.wout, T(0));
          continue;
        }
        const T* row = src + int64_t(iy) * s.win - s.pad + kx;  // row[ox·stride] is pixel ix
        std::fill(d, d + lo, T(0));
        for (int ox = lo; ox < hi; ++ox) d[ox] = row[ox * s.stride];
        std::fill(d + hi, d + s.wout, T(0));
      }
    }
  }
}

// The adjoint of im2col: dcol [cin·k·k][n·ho·wo] summed into din [cin][n·h·w] (overwritten).
template <class T>
void col2im(const ConvShape& s, int n, const T* dcol, T* din) {
  const int kk = s.k * s.k, p = s.hout * s.wout;
  const int64_t hw = int64_t(s.hin) * s.win;
#pragma omp parallel for collapse(2) schedule(static)
  for (int ci = 0; ci < s.cin; ++ci) {
    for (int b = 0; b < n; ++b) {
      T* dst = din + int64_t(ci) * n * hw + b * hw;
      std::fill(dst, dst + hw, T(0));
      for (int q = 0; q < kk; ++q) {
        const int ky = q / s.k, kx = q % s.k;
        int lo, hi;
        valid_columns(s, kx, lo, hi);
        const T* src = dcol + (int64_t(ci) * kk + q) * n * p + int64_t(b) * p;
        for (int oy = 0; oy < s.hout; ++oy) {
          const int iy = oy * s.stride - s.pad + ky;
          if (iy < 0 || iy >= s.hin) continue;
          T* row = dst + int64_t(iy) * s.win - s.pad + kx;
          const T* g = src + oy * s.wout;
          for (int ox = lo; ox < hi; ++ox) row[ox * s.stride] += g[ox];
        }
      }
    }
  }
}

// [n][c][hw] <-> [c][n][hw]; a plain copy when c == 1.
template <class T>
void swap_outer(const T* src, T* dst, int a, int b, int64_t inner) {
  if (a == 1 || b == 1) {
    std::memcpy(dst, src, sizeof(T) * a * b * inner);
    return;
  }
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < a; ++i)
    for (int j = 0; j < b; ++j) std::memcpy(dst + (int64_t(j) * a + i) * inner, src + (int64_t(i) * b + j) * inner, sizeof(T) * inner);
}

}  // namespace

template <class T>
void CpuNetT<T>::forward(const T* params, const T* x, int n, T* f) {
  n_ = n;
  const size_t L = net_.convs.size();
  in_.resize(L); col_.resize(L); z_.resize(L); sig_.resize(L);
  in_[0].resize(size_t(n) * net_.image_size());
  swap_outer(x, in_[0].data(), n, net_.in_c, int64_t(net_.in_h) * net_.in_w);
  for (size_t l = 0; l < L; ++l) {
    const ConvShape& s = net_.convs[l];
    const int kdim = s.cin * s.k * s.k;
    const int64_t p = int64_t(n) * s.hout * s.wout;
    col_[l].resize(size_t(kdim) * p);
    z_[l].resize(size_t(s.cout) * p);
    sig_[l].resize(z_[l].size());
    im2col(s, n, in_[l].data(), col_[l].data());
    // z [cout][p] = W [cout][kdim] · col [kdim][p]
    gemm(false, false, s.cout, int(p), kdim, T(1), params + s.w_off, kdim, col_[l].data(), int(p), T(0),
          z_[l].data(), int(p));
    std::vector<T>& out = (l + 1 < L) ? in_[l + 1] : out_;
    out.resize(z_[l].size());
    const T* bias = params + s.b_off;
    T* z = z_[l].data();
    T* sg = sig_[l].data();
    T* a = out.data();
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < s.cout; ++c) {
      for (int64_t j = 0; j < p; ++j) {
        const int64_t i = int64_t(c) * p + j;
        const T zz = z[i] + bias[c];
        const T sv = T(1) / (T(1) + std::exp(-zz));
        z[i] = zz;
        sg[i] = sv;
        a[i] = zz * sv;
      }
    }
  }
  // Dense over NCHW-flattened features: f_i = b + Σ_c Σ_hw Wd[c·HW + hw] · a[c][i·HW + hw].
  const ConvShape& last = net_.convs.back();
  const int hw = last.hout * last.wout, c_last = last.cout;
  const T* wd = params + net_.dense_w_off;
  const T bd = params[net_.dense_b_off];
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    T acc = T(0);
    for (int c = 0; c < c_last; ++c) {
      const T* a = out_.data() + (int64_t(c) * n + i) * hw;
      for (int q = 0; q < hw; ++q) acc += wd[c * hw + q] * a[q];
    }
    f[i] = acc + bd;
  }
}

template <class T>
void CpuNetT<T>::backward(const T* params, const T* df, T* dx, T* grad) {
  const int n = n_;
  const size_t L = net_.convs.size();
  const ConvShape& last = net_.convs.back();
  const int hw = last.hout * last.wout, c_last = last.cout;
  const T* wd = params + net_.dense_w_off;

  // Dense: da[c][i·HW + q] = df_i·Wd[c·HW + q]; dWd = Σ_i df_i·a_i; db = Σ_i df_i.
  da_.resize(out_.size());
#pragma omp parallel for collapse(2) schedule(static)
  for (int c = 0; c < c_last; ++c)
    for (int i = 0; i < n; ++i) {
      T* d = da_.data() + (int64_t(c) * n + i) * hw;
      for (int q = 0; q < hw; ++q) d[q] = df[i] * wd[c * hw + q];
    }
  if (grad) {
    T* gwd = grad + net_.dense_w_off;
#pragma omp parallel for schedule(static)
    for (int j = 0; j < c_last * hw; ++j) {
      const int c = j / hw, q = j % hw;
      T acc = T(0);
      for (int i = 0; i < n; ++i) acc += df[i] * out_[(int64_t(c) * n + i) * hw + q];
      gwd[j] = acc;
    }
    T gb = T(0);
    for (int i = 0; i < n; ++i) gb += df[i];
    grad[net_.dense_b_off] = gb;
  }

  for (size_t l = L; l-- > 0;) {
    const ConvShape& s = net_.convs[l];
    const int kdim = s.cin * s.k * s.k;
    const int64_t p = int64_t(n) * s.hout * s.wout;
    dz_.resize(size_t(s.cout) * p);
    const T* z = z_[l].data();
    const T* sg = sig_[l].data();
    // dz = da · swish'(z), swish' = σ(1 + z(1 − σ)); the bias gradient is the row sum.
    T* dz = dz_.data();
    const T* da = da_.data();
#pragma omp parallel for schedule(static)
    for (int c = 0; c < s.cout; ++c) {
      T acc = T(0);
      for (int64_t j = int64_t(c) * p; j < int64_t(c + 1) * p; ++j) {
        dz[j] = da[j] * sg[j] * (T(1) + z[j] * (T(1) - sg[j]));
        acc += dz[j];
      }
      if (grad) grad[s.b_off + c] = acc;
    }
    if (grad)  // dW [cout][kdim] = dz [cout][p] · colᵀ [p][kdim]
      gemm(false, true, s.cout, kdim, int(p), T(1), dz, int(p), col_[l].data(), int(p), T(0), grad + s.w_off, kdim);
    if (l == 0 && !dx) break;
    // dcol [kdim][p] = Wᵀ [kdim][cout] · dz [cout][p], then scatter back to the layer's input.
    dcol_.resize(size_t(kdim) * p);
    gemm(true, false, kdim, int(p), s.cout, T(1), params + s.w_off, kdim, dz, int(p), T(0), dcol_.data(), int(p));
    da_prev_.resize(size_t(s.cin) * n * s.hin * s.win);
    col2im(s, n, dcol_.data(), da_prev_.data());
    std::swap(da_, da_prev_);
  }
  if (dx) swap_outer(da_.data(), dx, net_.in_c, n, int64_t(net_.in_h) * net_.in_w);
}

template class CpuNetT<float>;
template class CpuNetT<double>;

}  // namespace ebm
