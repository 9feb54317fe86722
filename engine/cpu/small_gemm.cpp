// Register-blocked SGEMM micro-kernels (see small_gemm.hpp). A micro-tile of MR rows × NV·16 columns of C
// lives in MR·NV·kS native vector accumulators (kS = 1 with AVX-512, 2 with AVX2, 4 with SSE); per k, the tile's B
// vectors are loaded, each A[r][k] is broadcast and fused-multiply-added into its row. Column panels are chosen so
// the main width divides N when possible; the tile shapes fit this copy's vector registers.
//
// Compiled more than once (CMakeLists.txt): as part of the engine with the build's own -march, its entry points in
// namespace ebm::isa_build, and on x86-64 once more per instruction set (-march=x86-64, x86-64-v3, x86-64-v4: the
// entry points in ebm::isa_baseline, isa_avx2, isa_avx512), among which engine/cpu/small_gemm_dispatch.cpp picks
// at run time. Everything else here has internal linkage, so no copy's code can stand in for another's at link
// time (tests/cli_cpu_isa.sh checks that these objects define no weak symbols).
#include "engine/cpu/small_gemm.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "engine/cpu/conv_taps.hpp"
#include "engine/cpu/fast_math.hpp"  // bias_swish, philox_normal64: inlined into this copy's entry points
#include "engine/net.hpp"

#ifndef EBM_KERNEL_NS
#define EBM_KERNEL_NS isa_build
#endif

namespace ebm {
namespace {

// The micro-kernels work in this copy's native vectors (fast_math.hpp's fv): kW floats, one zmm, ymm or xmm register,
// kS of them to 16 columns. (GCC lowers 16-float generic vectors on AVX2 or SSE into pieces moved through the stack
// and general-purpose registers when they are held in arrays, as the accumulators are: 10× slower.) Each lane is its
// own FMA chain whatever the vector width, so every width gives the same bits.
constexpr int kW = fast_math_detail::kNF;
constexpr int kS = 16 / kW;
using vn = fast_math_detail::fv;
using fast_math_detail::loadv;  // unaligned vector moves
using fast_math_detail::storev;

// The steps of the implicit-GEMM micro-tiles, k < K: acc[r] += a[r][k] · B[k][0..16·NV) — FMA chains in k order, one
// per accumulator.
template <int MR, int NV>
inline void rank1_updates(int K, const float* const (&a)[MR], const float* __restrict B, std::ptrdiff_t ldb,
                          vn (&acc)[MR][NV * kS]) {
  for (int k = 0; k < K; ++k) {
    vn b[NV * kS];
    for (int v = 0; v < NV * kS; ++v) loadv(b[v], B + k * ldb + kW * v);
    for (int r = 0; r < MR; ++r) {
      const float x = a[r][k];
      for (int v = 0; v < NV * kS; ++v) acc[r][v] += x * b[v];
    }
  }
}

// C[0..MR)[0..16·NV) = A[0..MR)[0..K) · B[0..K)[0..16·NV)
template <int MR, int NV>
inline void micro(int K, const float* __restrict A, std::ptrdiff_t lda, const float* __restrict B,
                  std::ptrdiff_t ldb, float* __restrict C, std::ptrdiff_t ldc) {
  vn acc[MR][NV * kS];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV * kS; ++v) acc[r][v] = vn{};
  for (int k = 0; k < K; ++k) {  // rank1_updates with rows at a stride (one base register, not MR pointers)
    vn b[NV * kS];
    for (int v = 0; v < NV * kS; ++v) loadv(b[v], B + k * ldb + kW * v);
    for (int r = 0; r < MR; ++r) {
      const float a = A[r * lda + k];
      for (int v = 0; v < NV * kS; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV * kS; ++v) storev(C + r * ldc + kW * v, acc[r][v]);
}

// The micro-tiles are sized to this copy's vector registers: a 16-float vector is one zmm register (32 of them), two
// ymm (16) or four xmm (16). A tile whose accumulators, B vectors and broadcast do not fit is spilled to the stack
// on every k — the x86-64-v3 copy with AVX-512's 6×64 tiles ran 20× slower than with 6×16 ones. The tile shape
// leaves the bits as they are — each accumulator lane is its own FMA chain over k, whichever tile it is in — but for
// one edge: a tap that is padding for a row, in a tile where another row has a pixel there, adds 0·b to that row.
// That turns a −0 sum (an FMA whose exact result underflowed below the smallest denormal) into +0, and gives NaN
// with an infinite weight, where a tile that skips the tap leaves the sum as it was. So with 16 output channels
// (8-row tiles on AVX-512, 6 on AVX2) the avx2 and avx512 copies can differ in the sign of such a zero.
#if defined(__AVX512F__)
constexpr int kMaxNV = 4;  // up to 64 columns a tile
#else
constexpr int kMaxNV = 1;  // 16 columns a tile
#endif

template <int NV>
constexpr int mr_for() {
#if defined(__AVX512F__)
  // 8×16 for the 16-wide case (memory-bound at tiny K: fewer concurrent A streams win), else 24 accumulators
  return NV == 1 ? 8 : NV == 2 ? 12 : NV == 3 ? 8 : 6;
#elif defined(__AVX__)
  return 6;  // 12 ymm accumulators, 2 for B, 1 broadcast
#elif defined(__aarch64__)
  return 6;  // 24 of NEON's 32 q registers as accumulators, 4 for B (from the register count: not timed on ARM)
#else
  return 3;  // 12 xmm accumulators, 4 for B (2 and 4 rows ran as fast: 25-27 GFLOP/s, bound by SSE's mul + add)
#endif
}

// Columns [0, N) in panels of 16·NV — the widest of 64/48/32 that divides N (16 alone), else 64 with a narrower
// tail panel — and each panel's rows [0, M) in tiles of MR = mr_for<NV>() rows, the last tile the M % MR left:
// tile(NV, R, i, j) for the R × 16·NV tile at row i, column j, NV and R as std::integral_constant.
template <class Tile>
inline void tiles(int M, int N, Tile&& tile) {
  const auto panel = [&]<int NV>(std::integral_constant<int, NV> nv, int j) {
    constexpr int MR = mr_for<NV>();
    int i = 0;
    for (; i + MR <= M; i += MR) tile(nv, std::integral_constant<int, MR>{}, i, j);
    const int rem = M - i;
    [&]<int... R>(std::integer_sequence<int, R...>) {
      ((rem == R + 1 ? (tile(nv, std::integral_constant<int, R + 1>{}, i, j), 0) : 0), ...);
    }(std::make_integer_sequence<int, MR - 1>{});
  };
  if constexpr (kMaxNV == 1) {
    for (int j = 0; j < N; j += 16) panel(std::integral_constant<int, 1>{}, j);
  } else {
    const int nv = N % 64 == 0 ? 4 : N % 48 == 0 ? 3 : N % 32 == 0 ? 2 : N == 16 ? 1 : 4;
    int j = 0;
    for (; j + 16 * nv <= N; j += 16 * nv) {
      switch (nv) {
        case 4: panel(std::integral_constant<int, 4>{}, j); break;
        case 3: panel(std::integral_constant<int, 3>{}, j); break;
        case 2: panel(std::integral_constant<int, 2>{}, j); break;
        default: panel(std::integral_constant<int, 1>{}, j); break;
      }
    }
    switch ((N - j) / 16) {
      case 3: panel(std::integral_constant<int, 3>{}, j); break;
      case 2: panel(std::integral_constant<int, 2>{}, j); break;
      case 1: panel(std::integral_constant<int, 1>{}, j); break;
      default: break;
    }
  }
}

constexpr float kZeros[1024] = {};  // what a padding tap reads

// Tap t's pixel rows (len floats each) for the MR rows of an implicit-GEMM tile, kZeros for padding (−1); false
// when the tap is padding for every row.
template <int MR>
inline bool tap_rows(const int32_t* __restrict taps, int T, int t, const float* in, int len, const float* (&a)[MR]) {
  bool any = false;
  for (int r = 0; r < MR; ++r) {
    const int32_t px = taps[r * T + t];
    any |= px >= 0;
    a[r] = px < 0 ? kZeros : in + std::ptrdiff_t(px) * len;
  }
  return any;
}

// Bias + swish of a tile's m rows of width columns (row r at rows[r], or r; C and swish's pointers at the tile's
// corner), as bias_swish. Not inlined: the exp's constants would crowd the micro-kernels' registers.
__attribute__((noinline)) void swish_rows(int m, const int32_t* rows, int width, float* C, std::ptrdiff_t ldc,
                                          const SwishOut& swish) {
  for (int r = 0; r < m; ++r) {
    const std::ptrdiff_t o = std::ptrdiff_t(rows ? rows[r] : r) * ldc;
    bias_swish(C + o, swish.sig + o, swish.act + o, 1, width, swish.bias);
  }
}

// Implicit-GEMM micro-tile: row r's A row is the concatenation over taps t of the input pixel
// rows[r·T + t] (cin floats each; −1 = zero padding), so the im2col matrix is never written. Row r goes to C row
// rows[r] (r where rows is null). A tap that is padding for every row of the tile is skipped: it would add 0·b to each
// sum, which leaves the sums as they are.
template <int MR, int NV>
inline void micro_conv(int T, int cin, const int32_t* __restrict taps, const int32_t* __restrict rows,
                       const float* __restrict in, const float* __restrict B, std::ptrdiff_t ldb, float* __restrict C,
                       std::ptrdiff_t ldc, const SwishOut* swish) {
  vn acc[MR][NV * kS];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV * kS; ++v) acc[r][v] = vn{};
  for (int t = 0; t < T; ++t) {
    const float* a[MR];
    if (tap_rows<MR>(taps, T, t, in, cin, a)) rank1_updates<MR, NV>(cin, a, B + std::ptrdiff_t(t) * cin * ldb, ldb, acc);
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV * kS; ++v) storev(C + std::ptrdiff_t(rows ? rows[r] : r) * ldc + kW * v, acc[r][v]);
  if (swish) swish_rows(MR, rows, 16 * NV, C, ldc, *swish);  // while the tile's rows are in L1
}

// The backward-data micro-tile: row r of C (at rows[r]) = Σ over taps t of (Σ_c in[taps[r·T + t]][c] · B[t·K + c]),
// each tap's dot its own FMA chain from 0, the taps added to the row in t order from 0 (0 + the first, then the rest).
// A tap −1 reads zeros and adds +0, which leaves a row's sum as it was; one that is −1 for every row of the tile is
// skipped. With sig and z (rows like C's), the row is then multiplied by swish'(z) = σ(1 + z(1 − σ)) as the backward
// pass's swish_grad does, in the same order of operations.
template <int MR, int NV>
inline void micro_tapsum(int T, int K, const int32_t* __restrict taps, const int32_t* __restrict rows,
                         const float* __restrict in, const float* __restrict B, std::ptrdiff_t ldb, float* __restrict C,
                         std::ptrdiff_t ldc, const float* __restrict sig, const float* __restrict z) {
  float* c[MR];
  for (int r = 0; r < MR; ++r) c[r] = C + std::ptrdiff_t(rows[r]) * ldc;
  const auto finish = [&](int r, int v, vn da) {
    if (sig) {
      vn s, zz;
      loadv(s, sig + std::ptrdiff_t(rows[r]) * ldc + kW * v);
      loadv(zz, z + std::ptrdiff_t(rows[r]) * ldc + kW * v);
      da = da * s * (1.0f + zz * (1.0f - s));
    }
    storev(c[r] + kW * v, da);
  };
  int first = -1, last = -1;  // the taps this tile runs: those with a pixel in some row
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < MR; ++r)
      if (taps[r * T + t] >= 0) {
        if (first < 0) first = t;
        last = t;
        break;
      }
  if (first < 0) {
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV * kS; ++v) finish(r, v, vn{});
    return;
  }
  for (int t = first; t <= last; ++t) {
    const float* a[MR];
    if (!tap_rows<MR>(taps, T, t, in, K, a)) continue;
    vn acc[MR][NV * kS];
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV * kS; ++v) acc[r][v] = vn{};
    rank1_updates<MR, NV>(K, a, B + std::ptrdiff_t(t) * K * ldb, ldb, acc);
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV * kS; ++v) {
        vn sum = vn{};
        if (t > first) loadv(sum, c[r] + kW * v);
        if (t < last) storev(c[r] + kW * v, sum + acc[r][v]);
        else finish(r, v, sum + acc[r][v]);
      }
  }
}

}  // namespace

namespace EBM_KERNEL_NS {

int widest_tile_columns() { return 16 * kMaxNV; }

bool small_conv_nn(int M, int N, int T, int cin, const int32_t* taps, const float* in, const float* B, int ldb,
                   float* C, int ldc, const int32_t* rows, const SwishOut* swish) {
  if (M < 1 || T < 1 || cin < 1 || cin > 1024 || N < 16 || N > 1024 || N % 16 != 0) return false;
  if (ldb < N || ldc < N || !taps || !in || !B || !C) return false;
  if (swish && (!swish->bias || !swish->sig || !swish->act)) return false;
  tiles(M, N, [&]<int NV, int R>(std::integral_constant<int, NV>, std::integral_constant<int, R>, int i, int j) {
    const std::ptrdiff_t at = (rows ? 0 : std::ptrdiff_t(i) * ldc) + j;  // the tile's corner in C (and sig, act)
    const SwishOut tile = swish ? SwishOut{swish->bias + j, swish->sig + at, swish->act + at} : SwishOut{};
    micro_conv<R, NV>(T, cin, taps + std::ptrdiff_t(i) * T, rows ? rows + i : nullptr, in, B + j, ldb, C + at, ldc,
                      swish ? &tile : nullptr);
  });
  return true;
}

bool small_sgemm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  if (M < 1 || K < 1 || N < 16 || N > 1024 || N % 16 != 0) return false;
  if (lda < K || ldb < N || ldc < N || !A || !B || !C) return false;
  tiles(M, N, [&]<int NV, int R>(std::integral_constant<int, NV>, std::integral_constant<int, R>, int i, int j) {
    micro<R, NV>(K, A + std::ptrdiff_t(i) * lda, lda, B + j, ldb, C + std::ptrdiff_t(i) * ldc + j, ldc);
  });
  return true;
}

bool small_conv_tapsum_nn(int M, int N, int T, int K, const int32_t* taps, const int32_t* rows, const float* in,
                          const float* B, int ldb, float* C, int ldc, const float* sig, const float* z) {
  if (M < 1 || T < 0 || K < 1 || K > 1024 || N < 16 || N > 1024 || N % 16 != 0) return false;
  if (ldb < N || ldc < N || !taps || !rows || !in || !B || !C || !sig != !z) return false;
  tiles(M, N, [&]<int NV, int R>(std::integral_constant<int, NV>, std::integral_constant<int, R>, int i, int j) {
    micro_tapsum<R, NV>(T, K, taps + std::ptrdiff_t(i) * T, rows + i, in, B + j, ldb, C + j, ldc, sig ? sig + j : sig,
                        z ? z + j : z);
  });
  return true;
}

bool conv_col2im_rows(int M, int N, int T, const int32_t* offs, const float* dcol, float* C, int ldc,
                      const float* sig, const float* z) {
  if (M < 1 || T < 0 || N < 16 || N > 1024 || N % 16 != 0) return false;
  if (ldc < N || (T > 0 && !offs) || !dcol || !C || !sig != !z) return false;
  for (int r = 0; r < M; ++r) {
    const int32_t* tr = offs + std::ptrdiff_t(r) * T;
    const std::ptrdiff_t row = std::ptrdiff_t(r) * ldc;
    for (int v = 0; v < N; v += kW) {
      vn sum = vn{};  // +0, then the entries in col2im's order
      for (int t = 0; t < T; ++t)
        if (tr[t] >= 0) {
          vn d;
          loadv(d, dcol + tr[t] + v);
          sum = sum + d;
        }
      if (sig) {  // swish' as micro_tapsum's finish and swish_grad write it
        vn s, zz;
        loadv(s, sig + row + v);
        loadv(zz, z + row + v);
        sum = sum * s * (1.0f + zz * (1.0f - s));
      }
      storev(C + row + v, sum);
    }
  }
  return true;
}

// The first layer's image b through a zero-padded copy of its plane (rows and columns pad.. of hp × wp), so every
// output pixel reads all k·k taps without bounds checks; a padded tap adds 0·w, which leaves the sum as skipping it
// did. Planes up to kPlaneMax floats (a 90×90 image) take this path, larger ones the bounds-checked loops.
constexpr int kPlaneMax = 8192;
constexpr int kGroup = 8;  // output pixels per group: 8 independent FMA chains hide the FMA latency
struct Plane {
  int hp, wp;
  explicit Plane(const ConvShape& s)
      : hp(std::max(s.pad + s.hin, (s.hout - 1) * s.stride + s.k)),
        wp(std::max(s.pad + s.win, (s.wout - 1) * s.stride + s.k)) {}
  bool fits() const { return int64_t(hp) * wp <= kPlaneMax; }
  // the top-left tap of output pixel p (row-major over hout × wout) in the padded plane
  int64_t origin(const ConvShape& s, int p) const { return int64_t(p / s.wout) * s.stride * wp + int64_t(p % s.wout) * s.stride; }
};

namespace {

// The first layer's forward from its zero-padded plane xp into one image's z [hout·wout][cout]: per row of output
// pixels, kGroup at a time (the last group of a row repeats its last pixel in the spare chains), each kW output
// channels a vector FMA chain over the taps in (ky, kx) order from 0. K: s.k as a constant for the common 3×3 (the
// taps unrolled), 0 for any.
template <int K>
void conv1_forward_plane(const ConvShape& s, const Plane& pl, const float* xp, const float* wt, float* z,
                         const SwishOut* swish) {
  const int k = K > 0 ? K : s.k, co = s.cout;
  for (int oy = 0; oy < s.hout; ++oy) {
    for (int ox0 = 0; ox0 < s.wout; ox0 += kGroup) {
      const int g = std::min(kGroup, s.wout - ox0);
      const float* base = xp + int64_t(oy) * s.stride * pl.wp + int64_t(ox0) * s.stride;
      int64_t off[kGroup];  // pixel j's top-left tap from base
      for (int j = 0; j < kGroup; ++j) off[j] = int64_t(std::min(j, g - 1)) * s.stride;
      for (int cb = 0; cb < co; cb += kW) {
        vn acc[kGroup] = {};
        for (int ky = 0; ky < k; ++ky)
          for (int kx = 0; kx < k; ++kx) {
            vn w;
            loadv(w, wt + int64_t(ky * k + kx) * co + cb);
            const float* r = base + int64_t(ky) * pl.wp + kx;
            for (int j = 0; j < kGroup; ++j) acc[j] += r[off[j]] * w;
          }
        for (int j = 0; j < g; ++j) storev(z + (int64_t(oy) * s.wout + ox0 + j) * co + cb, acc[j]);
      }
    }
    if (swish) {  // the row's bias + swish while it is in L1 (out of the FMA loops: the exp's constants need registers)
      const int64_t o = int64_t(oy) * s.wout * co;
      bias_swish(z + o, swish->sig + o, swish->act + o, s.wout, co, swish->bias);
    }
  }
}
}  // namespace

// The first layer (one input channel), image b: z [p][cout] = Σ_t x[tap t of p] · wt [t][cout], taps in (ky, kx)
// order, kW output channels to a vector accumulator (cout % 16 == 0), kGroup output pixels at a time; with swish,
// bias + swish as the rows are written.
void conv1_forward_image(const ConvShape& s, int b, const float* x, const float* wt, float* z, const SwishOut* swish) {
  const int co = s.cout, P = s.hout * s.wout;
  const int64_t img = int64_t(b) * P * co;  // image b's rows in z (and sig, act)
  const Plane pl(s);
  if (!pl.fits()) {
    for (int p = 0; p < P; ++p)
      for (int cb = 0; cb < co; cb += kW) {
        vn acc = {};
        for_each_tap(s, b, p / s.wout, p % s.wout, [&](int t, int64_t i) {
          vn w;
          loadv(w, wt + int64_t(t) * co + cb);
          acc += x[i] * w;
        });
        storev(z + (int64_t(b) * P + p) * co + cb, acc);
      }
    if (swish) bias_swish(z + img, swish->sig + img, swish->act + img, P, co, swish->bias);
    return;
  }
  float xp[kPlaneMax];
  std::fill(xp, xp + pl.hp * pl.wp, 0.0f);
  for (int iy = 0; iy < s.hin; ++iy)
    std::copy_n(x + (int64_t(b) * s.hin + iy) * s.win, s.win, xp + int64_t(iy + s.pad) * pl.wp + s.pad);
  const SwishOut image = swish ? SwishOut{swish->bias, swish->sig + img, swish->act + img} : SwishOut{};
  if (s.k == 3) conv1_forward_plane<3>(s, pl, xp, wt, z + img, swish ? &image : nullptr);
  else conv1_forward_plane<0>(s, pl, xp, wt, z + img, swish ? &image : nullptr);
}

namespace {  // internal linkage, as the helpers above (no copy's code can stand in for another's)

// kW-lane zips of a and b: their low halves' lanes interleaved (a0 b0 a1 b1 …), and their high halves'.
template <int... I>
inline vn zip_lo(vn a, vn b, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(a, b, (I % 2 ? kW + I / 2 : I / 2)...);
}
template <int... I>
inline vn zip_hi(vn a, vn b, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(a, b, (I % 2 ? kW + kW / 2 + I / 2 : kW / 2 + I / 2)...);
}
inline vn zip_lo(vn a, vn b) { return zip_lo(a, b, std::make_integer_sequence<int, kW>{}); }
inline vn zip_hi(vn a, vn b) { return zip_hi(a, b, std::make_integer_sequence<int, kW>{}); }

// A kW × kW block in registers transposed (r[i] lane j ↔ r[j] lane i): log2(kW) rounds of the perfect shuffle.
inline void transpose(vn (&r)[kW]) {
  for (int round = 1; round < kW; round *= 2) {
    vn t[kW];
    for (int i = 0; i < kW / 2; ++i) t[2 * i] = zip_lo(r[i], r[i + kW / 2]), t[2 * i + 1] = zip_hi(r[i], r[i + kW / 2]);
    for (int i = 0; i < kW; ++i) r[i] = t[i];
  }
}

// The first layer's input gradient for image b through the stride² residue classes of its padded plane: input
// pixel (py, px) of the padded plane (py = iy + pad) lies in class (py mod stride, px mod stride) at (py / stride,
// px / stride), where the kW output pixels of a row that read tap (ky, kx) land on kW adjacent columns. Per row of
// output pixels, kW at a time: their dz rows are transposed into channel vectors, each tap's value is a kW-lane FMA
// chain over the channels from 0 (Σ_c dz[p][c]·wt[t][c], as the scatter below), and the taps are added to their class
// planes, rows of output pixels in order and kx descending within one (so each input pixel gets its output pixels in
// raster order, from +0: the scatter's bits); then the planes are interleaved into dx's image. false (nothing written)
// for shapes the planes do not take: k·k > 16, cout not a multiple of kW, planes beyond kPlaneMax floats.
template <int K>  // s.k, a constant for the common 3×3 (the taps' accumulators then stay in registers); 0: any
bool conv1_backward_data_classes(const ConvShape& s, int b, const float* dz, const float* wcol, float* dx) {
  const int co = s.cout, k = K > 0 ? K : s.k, st = s.stride, kk = k * k;
  if (kk > 16 || co % kW != 0 || st < 1) return false;
  const int wv = (s.wout + kW - 1) / kW;                       // vectors of output pixels per row
  const int hc = s.hout + (k - 1) / st, wc = wv * kW + (k - 1) / st;  // a class plane: every tap's row fits
  if ((s.hin - 1 + s.pad) / st >= hc || (s.win - 1 + s.pad) / st >= wc) return false;  // and every input pixel
  const int64_t plane = int64_t(hc) * wc;
  if (int64_t(st) * st * plane > kPlaneMax) return false;
  float cls[kPlaneMax];
  std::fill(cls, cls + st * st * plane, 0.0f);
  const int64_t P = int64_t(s.hout) * s.wout;
  for (int oy = 0; oy < s.hout; ++oy)
    for (int v = 0; v < wv; ++v) {
      const int ox0 = v * kW, valid = std::min(kW, s.wout - ox0);
      const float* g = dz + (int64_t(b) * P + int64_t(oy) * s.wout + ox0) * co;
      vn acc[16];
      for (int t = 0; t < kk; ++t) acc[t] = vn{};
      for (int cb = 0; cb < co; cb += kW) {
        vn r[kW];
        for (int j = 0; j < kW; ++j) {
          if (j < valid) loadv(r[j], g + int64_t(j) * co + cb);
          else r[j] = vn{};
        }
        transpose(r);  // r[c]: channel cb + c of the kW pixels
        for (int c = 0; c < kW; ++c) {
          const float* w = wcol + int64_t(cb + c) * 16;
          for (int t = 0; t < kk; ++t) acc[t] += r[c] * w[t];
        }
      }
      if (valid < kW) {  // lanes past the row add nothing (+0 even where a weight is not finite)
        vn lane;
        for (int j = 0; j < kW; ++j) lane[j] = float(j);
        for (int t = 0; t < kk; ++t) acc[t] = lane < float(valid) ? acc[t] : vn{};
      }
      for (int kx = k - 1; kx >= 0; --kx)
        for (int ky = 0; ky < k; ++ky) {
          float* d = cls + ((ky % st) * st + kx % st) * plane + int64_t(oy + ky / st) * wc + ox0 + kx / st;
          vn cur;
          loadv(cur, d);
          storev(d, cur + acc[ky * k + kx]);
        }
    }
  float* out = dx + int64_t(b) * s.hin * s.win;
  for (int iy = 0; iy < s.hin; ++iy) {
    const int py = iy + s.pad;
    const float* row = cls + (py % st) * st * plane + int64_t(py / st) * wc;  // class (py mod st, 0), row py / st
    float* o = out + int64_t(iy) * s.win;
    int ix = 0;
    if (st == 2) {  // the two classes' rows zipped: dx[ix] from class (px mod 2) at px / 2, px = ix + pad
      const float* a = row + (s.pad % 2) * plane + s.pad / 2;            // even ix
      const float* c = row + ((s.pad + 1) % 2) * plane + (s.pad + 1) / 2;  // odd ix
      for (; ix + 2 * kW <= s.win; ix += 2 * kW) {
        vn va, vc;
        loadv(va, a + ix / 2);
        loadv(vc, c + ix / 2);
        storev(o + ix, zip_lo(va, vc));
        storev(o + ix + kW, zip_hi(va, vc));
      }
    }
    for (; ix < s.win; ++ix) {
      const int px = ix + s.pad;
      o[ix] = row[(px % st) * plane + px / st];
    }
  }
  return true;
}

}  // namespace

// Its input gradient for image b (dx's image overwritten): the k·k dots of an output pixel (k·k ≤ 16) as one vector
// Σ_c dz[p][c] · wcol[c] (wcol [cout][16]: wt transposed, zero-padded), kGroup pixels at a time, scattered to the
// taps in raster order of the output pixels (each input pixel sums its taps in that order from 0).
void conv1_backward_data_image(const ConvShape& s, int b, const float* dz, const float* wcol, float* dx) {
  const int co = s.cout, P = s.hout * s.wout;
  const int64_t img = int64_t(s.hin) * s.win;
  if (s.k == 3 ? conv1_backward_data_classes<3>(s, b, dz, wcol, dx) : conv1_backward_data_classes<0>(s, b, dz, wcol, dx))
    return;
  const Plane pl(s);
  if (!pl.fits()) {
    std::fill(dx + b * img, dx + (b + 1) * img, 0.0f);
    for (int p = 0; p < P; ++p) {
      const float* g = dz + (int64_t(b) * P + p) * co;
      alignas(64) float t16[16];
      for (int h = 0; h < kS; ++h) {
        vn acc = {};
        for (int c = 0; c < co; ++c) {
          vn w;
          loadv(w, wcol + int64_t(c) * 16 + kW * h);
          acc += g[c] * w;
        }
        storev(t16 + kW * h, acc);
      }
      for_each_tap(s, b, p / s.wout, p % s.wout, [&](int t, int64_t i) { dx[i] += t16[t]; });
    }
    return;
  }
  float dp[kPlaneMax];
  std::fill(dp, dp + pl.hp * pl.wp, 0.0f);
  for (int p0 = 0; p0 < P; p0 += kGroup) {
    const int g = std::min(kGroup, P - p0);
    const float* gr[kGroup];
    for (int j = 0; j < kGroup; ++j) gr[j] = dz + (int64_t(b) * P + p0 + std::min(j, g - 1)) * co;
    alignas(64) float t[kGroup][16];
    for (int h = 0; h < kS; ++h) {  // taps kW·h .. kW·h + kW − 1
      vn acc[kGroup] = {};
      for (int c = 0; c < co; ++c) {
        vn w;
        loadv(w, wcol + int64_t(c) * 16 + kW * h);
        for (int j = 0; j < kGroup; ++j) acc[j] += gr[j][c] * w;
      }
      for (int j = 0; j < kGroup; ++j) storev(t[j] + kW * h, acc[j]);
    }
    const auto scatter = [&]<int K>(std::integral_constant<int, K>) {  // K = s.k, a constant for the common 3×3
      const int k = K > 0 ? K : s.k;
      for (int j = 0; j < g; ++j) {
        float* d = dp + pl.origin(s, p0 + j);
        for (int ky = 0; ky < k; ++ky)
          for (int kx = 0; kx < k; ++kx) d[int64_t(ky) * pl.wp + kx] += t[j][ky * k + kx];
      }
    };
    if (s.k == 3) scatter(std::integral_constant<int, 3>{});
    else scatter(std::integral_constant<int, 0>{});
  }
  for (int iy = 0; iy < s.hin; ++iy)
    std::copy_n(dp + int64_t(iy + s.pad) * pl.wp + s.pad, s.win, dx + b * img + int64_t(iy) * s.win);
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
