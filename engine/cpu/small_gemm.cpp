// Register-blocked SGEMM micro-kernels (see small_gemm.hpp). A micro-tile of MR rows × NV·16 columns of C
// lives in MR·NV vector accumulators; per k, NV vectors of B are loaded, each A[r][k] is broadcast and
// fused-multiply-added into its row. Column panels are chosen so the main width divides N when possible.
//
// Compiled more than once (CMakeLists.txt): as part of the engine with the build's own -march, its entry points in
// namespace ebm::isa_build, and on x86-64 once more per instruction set (-march=x86-64, x86-64-v3, x86-64-v4: the
// entry points in ebm::isa_baseline, isa_avx2, isa_avx512), among which engine/cpu/small_gemm_dispatch.cpp picks
// at run time. Everything else here has internal linkage, so no copy's code can stand in for another's at link
// time (tests/cli_cpu_isa.sh checks that these objects define no weak symbols).
#include "engine/cpu/small_gemm.hpp"

#include <cstddef>
#include <cstdint>
#include <utility>

#include "engine/cpu/conv_taps.hpp"
#include "engine/cpu/fast_math.hpp"  // bias_swish, philox_normal64: inlined into this copy's entry points
#include "engine/net.hpp"

#ifndef EBM_KERNEL_NS
#define EBM_KERNEL_NS isa_build
#endif

namespace ebm {
namespace {

typedef float v16 __attribute__((vector_size(64)));

// by reference: vector arguments/returns by value would draw -Wpsabi on targets without AVX-512
inline void load16(v16& v, const float* p) { __builtin_memcpy(&v, p, sizeof v); }  // unaligned load
inline void store16(float* p, const v16& v) { __builtin_memcpy(p, &v, sizeof v); }

// C[0..MR)[0..16·NV) = A[0..MR)[0..K) · B[0..K)[0..16·NV)
template <int MR, int NV>
inline void micro(int K, const float* __restrict A, std::ptrdiff_t lda, const float* __restrict B,
                  std::ptrdiff_t ldb, float* __restrict C, std::ptrdiff_t ldc) {
  v16 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = v16{};
  for (int k = 0; k < K; ++k) {
    v16 b[NV];
    for (int v = 0; v < NV; ++v) load16(b[v], B + k * ldb + 16 * v);
    for (int r = 0; r < MR; ++r) {
      const float a = A[r * lda + k];
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) store16(C + r * ldc + 16 * v, acc[r][v]);
}

template <int NV>
constexpr int mr_for() {
  // 8×16 for the 16-wide case (memory-bound at tiny K: fewer concurrent A streams win), else 24 accumulators
  return NV == 1 ? 8 : NV == 2 ? 12 : NV == 3 ? 8 : 6;
}

// rows [0, M) for one column panel of width 16·NV
template <int NV>
void panel(int M, int K, const float* A, std::ptrdiff_t lda, const float* B, std::ptrdiff_t ldb, float* C,
           std::ptrdiff_t ldc) {
  constexpr int MR = mr_for<NV>();
  int i = 0;
  for (; i + MR <= M; i += MR) micro<MR, NV>(K, A + i * lda, lda, B, ldb, C + i * ldc, ldc);
  const int rem = M - i;
  if (rem == 0) return;
  A += i * lda;
  C += i * ldc;
  // tail: at most MR-1 rows
  [&]<int... R>(std::integer_sequence<int, R...>) {
    ((rem == R + 1 ? (micro<R + 1, NV>(K, A, lda, B, ldb, C, ldc), 0) : 0), ...);
  }(std::make_integer_sequence<int, MR - 1>{});
}

// Implicit-GEMM micro-tile: row r's A row is the concatenation over taps t of the input pixel
// rows[r·T + t] (cin floats each; −1 = zero padding), so the im2col matrix is never written.
template <int MR, int NV>
inline void micro_conv(int T, int cin, const int32_t* __restrict taps, const float* __restrict in,
                       const float* __restrict B, std::ptrdiff_t ldb, float* __restrict C, std::ptrdiff_t ldc) {
  static const float kZeros[1024] = {};
  v16 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = v16{};
  for (int t = 0; t < T; ++t) {
    const float* a[MR];
    for (int r = 0; r < MR; ++r) {
      const int32_t px = taps[r * T + t];
      a[r] = px < 0 ? kZeros : in + std::ptrdiff_t(px) * cin;
    }
    const float* bt = B + std::ptrdiff_t(t) * cin * ldb;
    for (int c = 0; c < cin; ++c) {
      v16 b[NV];
      for (int v = 0; v < NV; ++v) load16(b[v], bt + c * ldb + 16 * v);
      for (int r = 0; r < MR; ++r) {
        const float x = a[r][c];
        for (int v = 0; v < NV; ++v) acc[r][v] += x * b[v];
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) store16(C + r * ldc + 16 * v, acc[r][v]);
}

template <int NV>
void conv_panel(int M, int T, int cin, const int32_t* taps, const float* in, const float* B, std::ptrdiff_t ldb,
                float* C, std::ptrdiff_t ldc) {
  constexpr int MR = mr_for<NV>();
  int i = 0;
  for (; i + MR <= M; i += MR) micro_conv<MR, NV>(T, cin, taps + std::ptrdiff_t(i) * T, in, B, ldb, C + i * ldc, ldc);
  const int rem = M - i;
  if (rem == 0) return;
  taps += std::ptrdiff_t(i) * T;
  C += i * ldc;
  [&]<int... R>(std::integer_sequence<int, R...>) {
    ((rem == R + 1 ? (micro_conv<R + 1, NV>(T, cin, taps, in, B, ldb, C, ldc), 0) : 0), ...);
  }(std::make_integer_sequence<int, MR - 1>{});
}

}  // namespace

namespace EBM_KERNEL_NS {

bool small_conv_nn(int M, int N, int T, int cin, const int32_t* taps, const float* in, const float* B, int ldb,
                   float* C, int ldc) {
  if (M < 1 || T < 1 || cin < 1 || cin > 1024 || N < 16 || N > 1024 || N % 16 != 0) return false;
  if (ldb < N || ldc < N || !taps || !in || !B || !C) return false;
  const int nv = N % 64 == 0 ? 4 : N % 48 == 0 ? 3 : N % 32 == 0 ? 2 : N == 16 ? 1 : 4;
  const int w = 16 * nv;
  int j = 0;
  for (; j + w <= N; j += w) {
    switch (nv) {
      case 4: conv_panel<4>(M, T, cin, taps, in, B + j, ldb, C + j, ldc); break;
      case 3: conv_panel<3>(M, T, cin, taps, in, B + j, ldb, C + j, ldc); break;
      case 2: conv_panel<2>(M, T, cin, taps, in, B + j, ldb, C + j, ldc); break;
      default: conv_panel<1>(M, T, cin, taps, in, B + j, ldb, C + j, ldc); break;
    }
  }
  switch ((N - j) / 16) {
    case 3: conv_panel<3>(M, T, cin, taps, in, B + j, ldb, C + j, ldc); break;
    case 2: conv_panel<2>(M, T, cin, taps, in, B + j, ldb, C + j, ldc); break;
    case 1: conv_panel<1>(M, T, cin, taps, in, B + j, ldb, C + j, ldc); break;
    default: break;
  }
  return true;
}

bool small_sgemm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  if (M < 1 || K < 1 || N < 16 || N > 1024 || N % 16 != 0) return false;
  if (lda < K || ldb < N || ldc < N || !A || !B || !C) return false;
  // main panel width: the widest of 64/48/32 that divides N, else 64 with a narrower tail panel
  const int nv = N % 64 == 0 ? 4 : N % 48 == 0 ? 3 : N % 32 == 0 ? 2 : N == 16 ? 1 : 4;
  const int w = 16 * nv;
  int j = 0;
  for (; j + w <= N; j += w) {
    switch (nv) {
      case 4: panel<4>(M, K, A, lda, B + j, ldb, C + j, ldc); break;
      case 3: panel<3>(M, K, A, lda, B + j, ldb, C + j, ldc); break;
      case 2: panel<2>(M, K, A, lda, B + j, ldb, C + j, ldc); break;
      default: panel<1>(M, K, A, lda, B + j, ldb, C + j, ldc); break;
    }
  }
  switch ((N - j) / 16) {
    case 3: panel<3>(M, K, A, lda, B + j, ldb, C + j, ldc); break;
    case 2: panel<2>(M, K, A, lda, B + j, ldb, C + j, ldc); break;
    case 1: panel<1>(M, K, A, lda, B + j, ldb, C + j, ldc); break;
    default: break;
  }
  return true;
}

// The first layer (one input channel), image b: z [p][cout] = Σ_t x[tap t of p] · wt [t][cout], 16 output channels
// to a vector accumulator (cout % 16 == 0); an interior pixel's taps without bounds checks.
void conv1_forward_image(const ConvShape& s, int b, const float* x, const float* wt, float* z) {
  using fast_math_detail::f16;
  const int co = s.cout;
  for (int oy = 0; oy < s.hout; ++oy)
    for (int ox = 0; ox < s.wout; ++ox) {
      float* zr = z + ((int64_t(b) * s.hout + oy) * s.wout + ox) * co;
      const int iy0 = oy * s.stride - s.pad, ix0 = ox * s.stride - s.pad;
      if (iy0 >= 0 && ix0 >= 0 && iy0 + s.k <= s.hin && ix0 + s.k <= s.win) {
        const float* xb = x + (int64_t(b) * s.hin + iy0) * s.win + ix0;
        for (int cb = 0; cb < co; cb += 16) {
          f16 acc = {};
          for (int ky = 0; ky < s.k; ++ky)
            for (int kx = 0; kx < s.k; ++kx) {
              f16 w;
              __builtin_memcpy(&w, wt + int64_t(ky * s.k + kx) * co + cb, sizeof w);
              acc += xb[ky * s.win + kx] * w;
            }
          __builtin_memcpy(zr + cb, &acc, sizeof acc);
        }
        continue;
      }
      for (int cb = 0; cb < co; cb += 16) {
        f16 acc = {};
        for_each_tap(s, b, oy, ox, [&](int t, int64_t i) {
          f16 w;
          __builtin_memcpy(&w, wt + int64_t(t) * co + cb, sizeof w);
          acc += x[i] * w;
        });
        __builtin_memcpy(zr + cb, &acc, sizeof acc);
      }
    }
}

// Its input gradient for image b (dx's image zeroed by the caller): the k·k dots of a pixel (k·k ≤ 16) as one
// vector Σ_c dz[p][c] · wcol[c] (wcol [cout][16]: wt transposed, zero-padded), scattered to the taps.
void conv1_backward_data_image(const ConvShape& s, int b, const float* dz, const float* wcol, float* dx) {
  using fast_math_detail::f16;
  const int co = s.cout;
  for (int oy = 0; oy < s.hout; ++oy)
    for (int ox = 0; ox < s.wout; ++ox) {
      const float* g = dz + ((int64_t(b) * s.hout + oy) * s.wout + ox) * co;
      f16 acc = {};
      for (int c = 0; c < co; ++c) {
        f16 w;
        __builtin_memcpy(&w, wcol + int64_t(c) * 16, sizeof w);
        acc += g[c] * w;
      }
      const int iy0 = oy * s.stride - s.pad, ix0 = ox * s.stride - s.pad;
      if (iy0 >= 0 && ix0 >= 0 && iy0 + s.k <= s.hin && ix0 + s.k <= s.win) {
        float* db = dx + (int64_t(b) * s.hin + iy0) * s.win + ix0;
        for (int ky = 0; ky < s.k; ++ky)
          for (int kx = 0; kx < s.k; ++kx) db[ky * s.win + kx] += acc[ky * s.k + kx];
        continue;
      }
      for_each_tap(s, b, oy, ox, [&](int t, int64_t i) { dx[i] += acc[t]; });
    }
}

// The adjoint of im2col for image b (engine/cpu/conv_taps.hpp), in this copy's instruction set.
void col2im_image(const ConvShape& s, int b, const float* dcol, float* din) { ebm::col2im_image<float>(s, b, dcol, din); }

// dz = da · swish'(z) over n elements, swish' = σ(1 + z(1 − σ)) from the forward's σ.
void swish_grad(float* dz, const float* da, const float* sg, const float* z, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dz[j] = da[j] * sg[j] * (1.0f + z[j] * (1.0f - sg[j]));
}

void bias_swish_rows(float* z, float* sig, float* a, int64_t rows, int cols, const float* bias) {
  bias_swish(z, sig, a, rows, cols, bias);
}

void normal64(uint64_t seed, uint64_t stream, uint64_t first, float out[64]) {
  philox_normal64(seed, stream, first, out);
}

}  // namespace EBM_KERNEL_NS
}  // namespace ebm
