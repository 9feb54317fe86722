#include "engine/cpu/cpu_net.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <type_traits>

#include "engine/cpu/conv_taps.hpp"
#include "engine/cpu/fast_math.hpp"
#include "engine/cpu/gemm.hpp"
#include "engine/cpu/small_gemm.hpp"
#include "engine/error.hpp"
#include "engine/openmp_guard.hpp"

namespace ebm {
namespace {

// Channel-vector moves: the first layer has cin = 1, where a memcpy/memset call per pixel would cost
// more than the copy itself.
// Whole 64-byte chunks are copied with constant-size moves (inlined vector loads/stores): a libc call per
// 16–64-float channel vector cost as much as the data movement.
template <class T>
inline void copy_channels(T* dst, const T* src, int cin) {
  if (cin == 1) {
    *dst = *src;
    return;
  }
  constexpr int kChunk = 64 / sizeof(T);
  int c = 0;
  for (; c + kChunk <= cin; c += kChunk) __builtin_memcpy(dst + c, src + c, 64);
  for (; c < cin; ++c) dst[c] = src[c];
}
template <class T>
inline void fill_zero(T* dst, int cin) {
  if (cin == 1) {
    *dst = T(0);
    return;
  }
  constexpr int kChunk = 64 / sizeof(T);
  int c = 0;
  for (; c + kChunk <= cin; c += kChunk) __builtin_memset(dst + c, 0, 64);
  for (; c < cin; ++c) dst[c] = T(0);
}

// in [n·h·w][cin] -> col [n·ho·wo][k·k·cin] (row = output pixel; (ky,kx) blocks of cin), zero padding.
template <class T>
void im2col(const ConvShape& s, int n, const T* in, T* col) {
  const int cin = s.cin, kdim = s.k * s.k * cin;
  openmp_region();
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {
    for (int oy = 0; oy < s.hout; ++oy) {
      for (int ox = 0; ox < s.wout; ++ox) {
        T* dst = col + ((int64_t(b) * s.hout + oy) * s.wout + ox) * kdim;
        for (int ky = 0; ky < s.k; ++ky) {
          const int iy = oy * s.stride - s.pad + ky;
          for (int kx = 0; kx < s.k; ++kx, dst += cin) {
            const int ix = ox * s.stride - s.pad + kx;
            if (iy < 0 || iy >= s.hin || ix < 0 || ix >= s.win) {
              fill_zero(dst, cin);
            } else {
              copy_channels(dst, in + ((int64_t(b) * s.hin + iy) * s.win + ix) * cin, cin);
            }
          }
        }
      }
    }
  }
}

// The adjoint of im2col: dcol [n·ho·wo][k·k·cin] summed into din [n·h·w][cin] (overwritten), image by image
// (engine/cpu/conv_taps.hpp); float through the copy of the vector kernels chosen for this CPU.
template <class T>
void col2im(const ConvShape& s, int n, const T* dcol, T* din) {
  openmp_region();
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {  // images own disjoint outputs
    if constexpr (std::is_same_v<T, float>) cpu_vector_kernels().col2im_image(s, b, dcol, din);
    else col2im_image(s, b, dcol, din);
  }
}

// Work buffers only grow: shrinking and regrowing a std::vector re-zeroes it, a memset per call when
// one network alternates between Langevin (n rows) and training (2n rows) batches.
template <class T>
T* ensure(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// C [m][n] = A [m][k] · B [k][n]: the AVX-512 kernel for the float shapes it takes (twice OpenBLAS'
// Haswell kernels here, which the environment pins), BLAS otherwise and for double.
inline void gemm_nn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
  if (!small_sgemm_nn(m, n, k, a, lda, b, ldb, c, ldc)) gemm(false, false, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}
inline void gemm_nn(int m, int n, int k, const double* a, int lda, const double* b, int ldb, double* c, int ldc) {
  gemm(false, false, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}

// Single-channel input (the first layer): z [p][cout] = Σ_t x[tap t of p] · wt [t][cout]. x [n·h·w],
// wt [k·k][cout]. In float with cout % 16 == 0, each 16 output channels are one vector accumulator.
// Returns whether the vector kernel ran, and with swish, applied bias + swish too.
template <class T>
bool conv1_forward(const ConvShape& s, int n, const T* x, const T* wt, T* z, const SwishOut* swish) {
  const int co = s.cout;
  const bool vec = std::is_same_v<T, float> && co % 16 == 0;
  openmp_region();
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {
    if constexpr (std::is_same_v<T, float>) {
      if (vec) {  // the copy of the vector kernels chosen for this CPU (engine/cpu/small_gemm.cpp)
        cpu_vector_kernels().conv1_forward_image(s, b, x, wt, z, swish);
        continue;
      }
    }
    for (int oy = 0; oy < s.hout; ++oy)
      for (int ox = 0; ox < s.wout; ++ox) {
        T* zr = z + ((int64_t(b) * s.hout + oy) * s.wout + ox) * co;
        for (int c = 0; c < co; ++c) zr[c] = T(0);
        for_each_tap(s, b, oy, ox, [&](int t, int64_t i) {
          for (int c = 0; c < co; ++c) zr[c] += x[i] * wt[int64_t(t) * co + c];
        });
      }
  }
  return vec;
}

// Its input gradient: dx [n·h·w] = Σ over (p, t) of dz[p]·wt[t] (a dot over cout), scattered to the
// taps. In float with k·k ≤ 16 the k·k dots of a pixel are one vector: Σ_c dz[p][c] · (wt[0..k·k)[c]).
template <class T>
void conv1_backward_data(const ConvShape& s, int n, const T* dz, const T* wt, T* dx) {
  const int co = s.cout, kk = s.k * s.k;
  const int64_t img = int64_t(s.hin) * s.win;
  std::vector<float> wcol;  // wcol[c·16 + t] = wt[t][c], t < k·k (zero-padded to 16)
  if constexpr (std::is_same_v<T, float>) {
    if (kk <= 16) {
      wcol.assign(size_t(co) * 16, 0.0f);
      for (int t = 0; t < kk; ++t)
        for (int c = 0; c < co; ++c) wcol[size_t(c) * 16 + t] = wt[int64_t(t) * co + c];
    }
  }
  openmp_region();
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b) {
    if constexpr (std::is_same_v<T, float>) {
      if (!wcol.empty()) {  // the copy of the vector kernels chosen for this CPU (engine/cpu/small_gemm.cpp)
        cpu_vector_kernels().conv1_backward_data_image(s, b, dz, wcol.data(), dx);
        continue;
      }
    }
    std::fill(dx + b * img, dx + (b + 1) * img, T(0));
    for (int oy = 0; oy < s.hout; ++oy)
      for (int ox = 0; ox < s.wout; ++ox) {
        const T* g = dz + ((int64_t(b) * s.hout + oy) * s.wout + ox) * co;
        for_each_tap(s, b, oy, ox, [&](int t, int64_t i) {
          T acc = T(0);
          for (int c = 0; c < co; ++c) acc += g[c] * wt[int64_t(t) * co + c];
          dx[i] += acc;
        });
      }
  }
}

// Its filter gradient: dwt [k·k][cout] = Σ_p x[tap t of p] · dz[p].
template <class T>
void conv1_filter_grad(const ConvShape& s, int n, const T* x, const T* dz, T* dwt) {
  const int co = s.cout;
  std::fill(dwt, dwt + int64_t(s.k) * s.k * co, T(0));
  for (int b = 0; b < n; ++b)
    for (int oy = 0; oy < s.hout; ++oy)
      for (int ox = 0; ox < s.wout; ++ox) {
        const T* g = dz + ((int64_t(b) * s.hout + oy) * s.wout + ox) * co;
        for_each_tap(s, b, oy, ox, [&](int t, int64_t i) {
          const T xv = x[i];
          T* w = dwt + int64_t(t) * co;
#pragma omp simd
          for (int c = 0; c < co; ++c) w[c] += xv * g[c];
        });
      }
}

// [a][b][inner] -> [b][a][inner] for each of `batch` blocks; NCHW <-> NHWC with inner = 1.
template <class T>
void transpose_batch(const T* src, T* dst, int batch, int a, int b) {
  if (a == 1 || b == 1) {
    std::copy(src, src + int64_t(batch) * a * b, dst);
    return;
  }
  for (int n = 0; n < batch; ++n) {
    const T* s = src + int64_t(n) * a * b;
    T* d = dst + int64_t(n) * a * b;
    for (int i = 0; i < a; ++i)
      for (int j = 0; j < b; ++j) d[int64_t(j) * a + i] = s[int64_t(i) * b + j];
  }
}

// W [cout][cin][k][k] <-> Wp [cout][k·k][cin]
template <class T>
void permute_weights(const ConvShape& s, const T* w, T* wp) {
  transpose_batch(w, wp, s.cout, s.cin, s.k * s.k);
}

}  // namespace

// Reorders the m rows of a tap table (T taps per row, −1 = padding) and their row ids so that rows padded at the same
// taps are adjacent — stably, keeping their order otherwise — so whole tiles of the implicit GEMMs skip those taps
// (9–30% of the seed net's layers' taps fall outside the image; one Langevin chunk's rows, 8 images, stay in cache in
// any order: measured 11% off a forward + input gradient). A row's own taps and their order are unchanged, so are
// its sums.
void group_rows_by_padding(int T, int32_t* taps, int32_t* rows, int m) {
  if (T > 64 || m < 2) return;
  std::vector<uint64_t> key(static_cast<size_t>(m), 0);
  int64_t padding = 0;
  for (int r = 0; r < m; ++r)
    for (int t = 0; t < T; ++t)
      if (taps[int64_t(r) * T + t] < 0) key[size_t(r)] |= uint64_t(1) << t, ++padding;
  if (padding == 0) return;
  std::vector<int> order(static_cast<size_t>(m));
  for (int r = 0; r < m; ++r) order[size_t(r)] = r;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key[size_t(a)] < key[size_t(b)]; });
  const std::vector<int32_t> t0(taps, taps + int64_t(m) * T), r0(rows, rows + m);
  for (int r = 0; r < m; ++r) {
    const int from = order[size_t(r)];
    std::copy_n(t0.data() + int64_t(from) * T, T, taps + int64_t(r) * T);
    rows[r] = r0[size_t(from)];
  }
}

// The forward convolution of layer l without im2col (float, channels ≥ 2, shapes the kernel takes):
// a per-(pixel, tap) table of input pixels, cached per batch size, drives small_conv_nn; its rows are grouped by
// their padding taps (each row still written to its own output pixel).
template <class T>
bool CpuNetT<T>::conv_implicit(const ConvShape& s, int n, size_t l, const T* wpt, const SwishOut* swish) {
  if constexpr (!std::is_same_v<T, float>) {
    return false;
  } else {
    const int kk = s.k * s.k;
    const int64_t p = int64_t(n) * s.hout * s.wout;
    if (s.cin < 2 || s.cout % 16 != 0 || p * kk > INT32_MAX) return false;
    if (taps_n_[l] != n) {
      std::vector<int32_t>& taps = taps_[l];
      taps.assign(size_t(p) * kk, -1);
      for (int b = 0; b < n; ++b)
        for (int oy = 0; oy < s.hout; ++oy)
          for (int ox = 0; ox < s.wout; ++ox)
            for_each_tap(s, b, oy, ox, [&](int t, int64_t i) {
              taps[((int64_t(b) * s.hout + oy) * s.wout + ox) * kk + t] = int32_t(i);
            });
      std::vector<int32_t>& rows = taps_rows_[l];
      rows.resize(size_t(p));
      for (int64_t r = 0; r < p; ++r) rows[size_t(r)] = int32_t(r);
      group_rows_by_padding(kk, taps.data(), rows.data(), int(p));
      taps_n_[l] = n;
    }
    return small_conv_nn(int(p), s.cout, kk, s.cin, taps_[l].data(), in_[l].data(), wpt, s.cout, z_[l].data(),
                         s.cout, taps_rows_[l].data(), swish);
  }
}

ConvBackwardClasses conv_backward_classes(const ConvShape& s, int n) {
  ConvBackwardClasses bc;
  const int st = s.stride;
  for (int cy = 0; cy < st; ++cy)
    for (int cx = 0; cx < st; ++cx) {
      ConvBackwardClasses::Class c;
      for (int ky = s.k - 1; ky >= 0; --ky)
        for (int kx = s.k - 1; kx >= 0; --kx)
          if (ky % st == cy && kx % st == cx) c.tap_index.push_back(ky * s.k + kx);
      c.taps_off = bc.taps.size();
      c.rows_off = bc.rows.size();
      for (int b = 0; b < n; ++b)
        for (int iy = 0; iy < s.hin; ++iy) {
          if ((iy + s.pad) % st != cy) continue;
          for (int ix = 0; ix < s.win; ++ix) {
            if ((ix + s.pad) % st != cx) continue;
            bc.rows.push_back(int32_t((int64_t(b) * s.hin + iy) * s.win + ix));
            for (int t : c.tap_index) {
              const int dy = iy + s.pad - t / s.k, dx = ix + s.pad - t % s.k;  // multiples of the stride
              const int oy = dy / st, ox = dx / st;
              const bool in = dy >= 0 && dx >= 0 && oy < s.hout && ox < s.wout;
              bc.taps.push_back(in ? int32_t((int64_t(b) * s.hout + oy) * s.wout + ox) : -1);
            }
          }
        }
      c.m = int(bc.rows.size() - c.rows_off);
      group_rows_by_padding(int(c.tap_index.size()), bc.taps.data() + c.taps_off, bc.rows.data() + c.rows_off, c.m);
      if (c.m > 0) bc.classes.push_back(std::move(c));
    }
  bc.n = n;
  return bc;
}

std::vector<int32_t> col2im_offsets(const ConvShape& s, int& T) {
  const ConvBackwardClasses bc = conv_backward_classes(s, 1);
  T = 0;
  for (const ConvBackwardClasses::Class& c : bc.classes) T = std::max(T, int(c.tap_index.size()));
  const int64_t kdim = int64_t(s.k) * s.k * s.cin;
  EBM_CHECK(int64_t(s.hout) * s.wout * kdim <= INT32_MAX, "col2im_offsets: dcol of one image exceeds int32 offsets");
  std::vector<int32_t> offs(size_t(s.hin) * s.win * size_t(T), -1);
  for (const ConvBackwardClasses::Class& c : bc.classes) {
    const int nt = int(c.tap_index.size());
    for (int r = 0; r < c.m; ++r) {
      const int32_t pixel = bc.rows[c.rows_off + size_t(r)];
      for (int t = 0; t < nt; ++t) {
        const int32_t out = bc.taps[c.taps_off + size_t(r) * nt + size_t(t)];
        if (out >= 0) offs[size_t(pixel) * T + size_t(t)] = int32_t(out * kdim + int64_t(c.tap_index[size_t(t)]) * s.cin);
      }
    }
  }
  return offs;
}

// The backward-data convolution of layer l without the column matrix (float, channels ≥ 16): the classes of
// conv_backward_classes through small_conv_tapsum_nn, din with exactly the bits of dcol = dz·Wp + col2im. Taken only
// where that path ran on small_sgemm_nn (k·k·cin ≤ 1024 and a multiple of 16; elsewhere OpenBLAS ran it and its bits
// are kept): the CPU backend's results are unchanged, its column matrix gone. With sig_below and z_below (the layer
// below's σ and z) it writes that layer's dz = din · swish'(z) instead, with swish_grad's bits.
template <class T>
bool CpuNetT<T>::backward_data_implicit(const ConvShape& s, int n, size_t l, const T* dz, T* din, const T* sig_below,
                                        const T* z_below) {
  if constexpr (!std::is_same_v<T, float>) {
    return false;
  } else {
    const int kdim = s.k * s.k * s.cin;
    if (s.cin < 16 || s.cin % 16 != 0 || kdim > 1024 || kdim % 16 != 0 || s.cout > 1024) return false;
    if (int64_t(n) * s.hin * s.win * s.k * s.k > INT32_MAX) return false;
    const CpuVectorKernels& vk = cpu_vector_kernels();
    if (s.cin < 32 && s.cin < vk.widest_tile) {
      // Rows one vector wide (cin 16): the implicit tiles would be 16 columns, one vector load per FMA and load-bound.
      // Instead, an image at a time, dcol = dz·W in tiles 48 wide (N = k·k·cin; the image's dcol stays in L1), then
      // col2im as a gather over it, in raster order (σ and z of the layer below stream).
      const int64_t pout = int64_t(s.hout) * s.wout, pin = int64_t(s.hin) * s.win;
      if (int64_t(pout) * kdim > INT32_MAX) return false;
      if (c2i_[l].empty()) c2i_[l] = col2im_offsets(s, c2i_t_[l]);
      ensure(dcol_, size_t(pout) * kdim);
      for (int b = 0; b < n; ++b) {
        gemm_nn(int(pout), kdim, s.cout, dz + b * pout * s.cout, s.cout, wp_[l].data(), kdim, dcol_.data(), kdim);
        const int64_t at = b * pin * s.cin;  // image b's rows of din, sig and z
        if (!vk.col2im_rows(int(pin), s.cin, c2i_t_[l], c2i_[l].data(), dcol_.data(), din + at, s.cin,
                            sig_below ? sig_below + at : nullptr, z_below ? z_below + at : nullptr))
          return false;
      }
      return true;
    }
    ConvBackwardClasses& bc = bcls_[l];
    if (bc.n != n) bc = conv_backward_classes(s, n);
    std::vector<T>& bw = bw_[l];
    if (bw_version_[l] != weights_version_) {  // the classes' weights, packed once per set of weights
      const T* wp = wp_[l].data();
      bw.clear();
      for (const ConvBackwardClasses::Class& c : bc.classes)
        for (int t : c.tap_index)
          for (int co = 0; co < s.cout; ++co) {
            const T* src = wp + int64_t(co) * kdim + int64_t(t) * s.cin;
            bw.insert(bw.end(), src, src + s.cin);
          }
      bw_version_[l] = weights_version_;
    }
    const T* w = bw.data();
    for (const ConvBackwardClasses::Class& c : bc.classes) {
      const int nt = int(c.tap_index.size());
      if (!small_conv_tapsum_nn(c.m, s.cin, nt, s.cout, bc.taps.data() + c.taps_off, bc.rows.data() + c.rows_off, dz,
                                w, s.cin, din, s.cin, sig_below, z_below))
        return false;
      w += int64_t(nt) * s.cout * s.cin;
    }
    return true;
  }
}

// The conv weights in the kernels' layouts: the first layer's [k·k][cout], the others' Wp [cout][k·k·cin] and
// Wpᵀ [k·k·cin][cout]. Skipped for the weights hold_weights() holds.
template <class T>
void CpuNetT<T>::prepare_weights(const T* params) {
  const size_t L = net_.convs.size();
  wp_.resize(L);
  wpt_.resize(L);
  if (held_ && params == held_) return;
  held_ = nullptr;  // other weights: the held ones are no longer in the layouts
  ++weights_version_;
  for (size_t l = 0; l < L; ++l) {
    const ConvShape& s = net_.convs[l];
    ensure(wp_[l], size_t(s.w_size()));
    if (s.cin == 1) {
      transpose_batch(params + s.w_off, wp_[l].data(), 1, s.cout, s.k * s.k);  // [cout][k·k] -> [k·k][cout]
    } else {
      permute_weights(s, params + s.w_off, wp_[l].data());
      // [kdim][cout] for the forward GEMM
      transpose_batch(wp_[l].data(), ensure(wpt_[l], size_t(s.w_size())), 1, s.cout, s.cin * s.k * s.k);
    }
  }
}

template <class T>
void CpuNetT<T>::hold_weights(const T* params) {
  held_ = nullptr;
  prepare_weights(params);
  held_ = params;
}

template <class T>
void CpuNetT<T>::forward(const T* params, const T* x, int n, T* f) {
  n_ = n;
  const size_t L = net_.convs.size();
  prepare_weights(params);
  taps_rows_.resize(L); bcls_.resize(L); c2i_.resize(L); c2i_t_.resize(L, 0); bw_.resize(L); bw_version_.resize(L, -1); in_.resize(L); taps_.resize(L); taps_n_.resize(L, -1); col_ready_.resize(L); col_.resize(L); z_.resize(L); sig_.resize(L);
  const int hw0 = net_.in_h * net_.in_w;
  ensure(in_[0], size_t(n) * net_.image_size());
  transpose_batch(x, in_[0].data(), n, net_.in_c, hw0);  // NCHW -> NHWC
  for (size_t l = 0; l < L; ++l) {
    const ConvShape& s = net_.convs[l];
    const int kdim = s.cin * s.k * s.k;
    const int64_t p = int64_t(n) * s.hout * s.wout;
    ensure(z_[l], size_t(p) * s.cout);
    ensure(sig_[l], size_t(p) * s.cout);
    std::vector<T>& out = (l + 1 < L) ? in_[l + 1] : out_;
    ensure(out, size_t(p) * s.cout);
    // In float the convolution kernels apply bias + swish as they write z (sig_ and out filled too: swished)
    SwishOut epilogue{};
    if constexpr (std::is_same_v<T, float>) epilogue = SwishOut{params + s.b_off, sig_[l].data(), out.data()};
    const SwishOut* swish = std::is_same_v<T, float> ? &epilogue : nullptr;
    bool kernel;  // a vector kernel wrote z, with bias + swish where swish is given
    if (s.cin == 1) {  // the first layer: a direct convolution, no im2col or GEMM (K = k·k is tiny)
      kernel = conv1_forward(s, n, in_[l].data(), wp_[l].data(), z_[l].data(), swish);
    } else {
      T* wpt = wpt_[l].data();
      col_ready_[l] = false;
      kernel = conv_implicit(s, n, l, wpt, swish);
      if (!kernel) {
        ensure(col_[l], size_t(p) * kdim);
        im2col(s, n, in_[l].data(), col_[l].data());
        col_ready_[l] = true;
        // z [p][cout] = col [p][kdim] · Wpᵀ [kdim][cout]
        gemm_nn(int(p), s.cout, kdim, col_[l].data(), kdim, wpt, s.cout, z_[l].data(), s.cout);
      }
    }
    if (kernel && swish) continue;
    if constexpr (std::is_same_v<T, float>)  // the copy of the vector kernels chosen for this CPU
      cpu_vector_kernels().bias_swish(z_[l].data(), sig_[l].data(), out.data(), p, s.cout, params + s.b_off);
    else
      bias_swish(z_[l].data(), sig_[l].data(), out.data(), p, s.cout, params + s.b_off);
  }
  // Dense over NCHW-flattened features: f_ik = b_k + Σ_c Σ_q Wd[k][c·HW + q] · a[i·HW + q][c].
  const ConvShape& last = net_.convs.back();
  const int hw = last.hout * last.wout, c_last = last.cout, K = net_.outputs;
  const int64_t D = net_.dense_in;
  openmp_region();
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < K; ++k) {
      const T* wd = params + net_.dense_w_off + k * D;
      T acc = T(0);
      for (int q = 0; q < hw; ++q) {
        const T* a = out_.data() + (int64_t(i) * hw + q) * c_last;
        for (int c = 0; c < c_last; ++c) acc += wd[c * hw + q] * a[c];
      }
      f[int64_t(i) * K + k] = acc + params[net_.dense_b_off + k];
    }
  }
}

template <class T>
void CpuNetT<T>::features(T* out) const {
  const ConvShape& last = net_.convs.back();
  transpose_batch(out_.data(), out, n_, last.hout * last.wout, last.cout);  // NHWC -> NCHW
}

template <class T>
void CpuNetT<T>::backward(const T* params, const T* df, T* dx, T* grad) {
  const int n = n_;
  const size_t L = net_.convs.size();
  const ConvShape& last = net_.convs.back();
  const int hw = last.hout * last.wout, c_last = last.cout;
  const int K = net_.outputs;
  const int64_t D = net_.dense_in;
  const T* wd = params + net_.dense_w_off;  // [K][D]

  // Dense: da[i·HW + q][c] = Σ_k df_ik·Wd[k][c·HW + q]; dWd[k] = Σ_i df_ik·a_i; db_k = Σ_i df_ik.
  ensure(da_, size_t(n) * hw * c_last);
  openmp_region();
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i)
    for (int q = 0; q < hw; ++q) {
      T* d = da_.data() + (int64_t(i) * hw + q) * c_last;
      const T* dfi = df + int64_t(i) * K;
      for (int c = 0; c < c_last; ++c) d[c] = dfi[0] * wd[c * hw + q];
      for (int k = 1; k < K; ++k)
        for (int c = 0; c < c_last; ++c) d[c] += dfi[k] * wd[k * D + c * hw + q];
    }
  if (grad) {
    T* gwd = grad + net_.dense_w_off;
    std::fill(gwd, gwd + K * D, T(0));
    for (int k = 0; k < K; ++k) {
      T* gk = gwd + k * D;
      T gb = T(0);
      for (int i = 0; i < n; ++i) {
        const T dfik = df[int64_t(i) * K + k];
        for (int q = 0; q < hw; ++q) {
          const T* a = out_.data() + (int64_t(i) * hw + q) * c_last;
          for (int c = 0; c < c_last; ++c) gk[c * hw + q] += dfik * a[c];
        }
        gb += dfik;
      }
      grad[net_.dense_b_off + k] = gb;
    }
  }

  bool dz_ready = false;  // da_ holds this layer's dz already: swish' was applied by the backward-data pass above
  for (size_t l = L; l-- > 0;) {
    const ConvShape& s = net_.convs[l];
    const int kdim = s.cin * s.k * s.k;
    const int64_t p = int64_t(n) * s.hout * s.wout;
    T* dz = da_.data();
    if (!dz_ready) {  // dz = da · swish'(z), swish' = σ(1 + z(1 − σ))
      dz = ensure(dz_, size_t(p) * s.cout);
      const T* z = z_[l].data();
      const T* sg = sig_[l].data();
      const T* da = da_.data();
      const int64_t len = p * s.cout;
      openmp_region();
      if constexpr (std::is_same_v<T, float>) {  // slices of 4096 through the copy of the vector kernels in use
        const auto swish_grad = cpu_vector_kernels().swish_grad;
        const int64_t slices = (len + 4095) / 4096;
#pragma omp parallel for schedule(static)
        for (int64_t q = 0; q < slices; ++q)
          swish_grad(dz + q * 4096, da + q * 4096, sg + q * 4096, z + q * 4096, std::min<int64_t>(4096, len - q * 4096));
      } else {
#pragma omp parallel for simd schedule(static)
        for (int64_t j = 0; j < len; ++j) dz[j] = da[j] * sg[j] * (T(1) + z[j] * (T(1) - sg[j]));
      }
    }
    if (grad) {
      T* gb = grad + s.b_off;  // bias gradient: column sums of dz
      std::fill(gb, gb + s.cout, T(0));
      for (int64_t r = 0; r < p; ++r)
        for (int c = 0; c < s.cout; ++c) gb[c] += dz[r * s.cout + c];
      ensure(dw_, size_t(s.w_size()));
      if (s.cin == 1) {  // dWt [k·k][cout] accumulated directly, then [cout][1][k][k]
        conv1_filter_grad(s, n, in_[l].data(), dz, dw_.data());
        transpose_batch(dw_.data(), grad + s.w_off, 1, s.k * s.k, s.cout);
      } else {  // dWp [cout][kdim] = dzᵀ [cout][p] · col [p][kdim], then back to [cout][cin][k][k]
        if (!col_ready_[l]) {  // the forward ran as an implicit GEMM: the filter gradient needs the matrix
          ensure(col_[l], size_t(p) * kdim);
          im2col(s, n, in_[l].data(), col_[l].data());
          col_ready_[l] = true;
        }
        gemm(true, false, s.cout, kdim, int(p), T(1), dz, s.cout, col_[l].data(), kdim, T(0), dw_.data(), kdim);
        transpose_batch(dw_.data(), grad + s.w_off, s.cout, s.k * s.k, s.cin);
      }
    }
    if (l == 0 && !dx) break;
    if (s.cin == 1) {
      if (l == 0 && net_.in_c == 1) {  // one channel: NHWC is NCHW, the input gradient goes straight to dx
        conv1_backward_data(s, n, dz, wp_[l].data(), dx);
        return;
      }
      ensure(da_prev_, size_t(n) * s.hin * s.win);
      conv1_backward_data(s, n, dz, wp_[l].data(), da_prev_.data());
      std::swap(da_, da_prev_);
      dz_ready = false;
      continue;
    }
    ensure(da_prev_, size_t(n) * s.hin * s.win * s.cin);
    // Above the first layer the implicit pass also applies the layer below's swish', giving its dz.
    const T* sg_below = l > 0 ? sig_[l - 1].data() : nullptr;
    const T* z_below = l > 0 ? z_[l - 1].data() : nullptr;
    const bool implicit = backward_data_implicit(s, n, l, dz, da_prev_.data(), sg_below, z_below);
    if (!implicit) {
      // dcol [p][kdim] = dz [p][cout] · Wp [cout][kdim], then scatter back to the layer's input.
      ensure(dcol_, size_t(p) * kdim);
      gemm_nn(int(p), kdim, s.cout, dz, s.cout, wp_[l].data(), kdim, dcol_.data(), kdim);
      col2im(s, n, dcol_.data(), da_prev_.data());
    }
    dz_ready = implicit && l > 0;
    std::swap(da_, da_prev_);
  }
  if (dx) transpose_batch(da_.data(), dx, n, net_.in_h * net_.in_w, net_.in_c);  // NHWC -> NCHW
}

template class CpuNetT<float>;
template class CpuNetT<double>;

}  // namespace ebm
