// Register-blocked SGEMM micro-kernels (see small_gemm.hpp). A micro-tile of MR rows × NV·16 columns of C
// lives in MR·NV vector accumulators; per k, NV vectors of B are loaded, each A[r][k] is broadcast and
// fused-multiply-added into its row. Column panels are chosen so the main width divides N when possible.
#include "engine/cpu/small_gemm.hpp"

#include <cstddef>
#include <cstdint>
#include <utility>

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

}  // namespace ebm
