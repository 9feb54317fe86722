// Vectorised float math for the CPU backend's hot loops. glibc's expf is not vectorised without
// -ffast-math (which would also break the divergence guard's isfinite checks), and GCC 12 will not
// if-convert the clamps of a hand-written expf, so the bias+swish row is written with GCC vector
// extensions (lowered to AVX-512/AVX2/SSE, whatever the target has): a Cephes-style expf — range
// reduction to [−ln2/2, ln2/2], degree-6 polynomial, ~1 ulp where it matters.
//
// Every function here is `static inline`: engine/cpu/small_gemm.cpp compiles them once per instruction set, and a
// copy with external linkage could be merged at link time with another's (an AVX-512 expv run by baseline code).
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include "kernels/philox.hpp"

namespace ebm {

namespace fast_math_detail {

// This target's native float vector: kNF floats, one zmm (AVX-512), ymm (AVX, AVX2) or xmm (SSE) register. The
// functions below work lane by lane, so every width gives the same bits; they are written for the native width
// because GCC lowers wider generic vectors into pieces passed through memory (the AVX2 copy's bias + swish, with
// 16-float vectors, took 40% of its Langevin step).
#if defined(__AVX512F__)
constexpr int kNF = 16;
#elif defined(__AVX__)
constexpr int kNF = 8;
#else
constexpr int kNF = 4;
#endif
typedef float fv __attribute__((vector_size(4 * kNF)));
typedef int32_t iv __attribute__((vector_size(4 * kNF)));

// v in every lane, its sign of zero kept (−0 + v is v for every v; +0 + v would turn −0 into +0)
static inline fv splat(float v) { return -fv{} + v; }

// Unaligned vector loads and stores as one vector move. Not std::memcpy: GCC expands a 64-byte memcpy by its
// tuning's "move by pieces" width, which for Intel cores (-march=native on an Ice Lake) is 32 bytes, through a stack
// temporary — and then kept the micro-kernels' accumulators on the stack too (3-4x slower there).
typedef float fv_u __attribute__((vector_size(4 * kNF), aligned(4), may_alias));
static inline void loadv(fv& v, const float* p) { v = *reinterpret_cast<const fv_u*>(p); }
static inline void storev(float* p, const fv& v) { *reinterpret_cast<fv_u*>(p) = v; }

// Three steps of expv, each in one or two instructions where the instruction set has them, and in generic vector code
// otherwise (kGeneric picks the generic form on any target: tests compare the two). Each gives the generic form's
// bits for every float, NaN payloads included (all 2^32 inputs of expv compared on AVX-512 and AVX2 when written).
//
// x clamped to [lo, hi]: vmaxps/vminps return their second operand when either is NaN, as the compares do.
template <bool kGeneric = false>
static inline fv clamp_v(fv x, float lo, float hi) {
#if defined(__AVX512F__)
  if constexpr (!kGeneric) {  // the zero-masked forms, all lanes: GCC 12 warns of its own undefined source in the plain ones
    const __m512 above_lo = _mm512_maskz_max_ps(__mmask16(0xFFFF), _mm512_set1_ps(lo), __m512(x));
    return fv(_mm512_maskz_min_ps(__mmask16(0xFFFF), _mm512_set1_ps(hi), above_lo));
  }
#elif defined(__AVX__)
  if constexpr (!kGeneric) return fv(_mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), __m256(x))));
#endif
  x = x < splat(lo) ? splat(lo) : x;
  return x > splat(hi) ? splat(hi) : x;
}

// floor(t) for |t| < 2^31 (vrndscaleps / vroundps; generically truncate, then one less where that rounded up)
template <bool kGeneric = false>
static inline fv floor_v(fv t) {
#if defined(__AVX512F__)
  if constexpr (!kGeneric) return fv(_mm512_maskz_roundscale_ps(__mmask16(0xFFFF), __m512(t), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
#elif defined(__AVX__)
  if constexpr (!kGeneric) return fv(_mm256_round_ps(__m256(t), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
#endif
  const fv f = __builtin_convertvector(__builtin_convertvector(t, iv), fv);
  return f > t ? f - 1.0f : f;
}

// y·2^n for integral n in [−126, 127] (vscalefps: one rounding, as the product with the float 2^n has)
template <bool kGeneric = false>
static inline fv scale_pow2_v(fv y, fv n) {
#if defined(__AVX512F__)
  if constexpr (!kGeneric) return fv(_mm512_maskz_scalef_ps(__mmask16(0xFFFF), __m512(y), __m512(n)));
#endif
  const iv bits = (__builtin_convertvector(n, iv) + 127) << 23;  // 2^n
  return y * (fv)bits;  // a vector cast reinterprets the bits
}

// exp(x) lane by lane.
template <bool kGeneric = false>
static inline fv expv(fv x) {
  x = clamp_v<kGeneric>(x, -87.3f, 88.3f);
  const fv t = x * 1.44269504088896341f + 0.5f;
  const fv fx = floor_v<kGeneric>(t);
  fv r = x - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  fv p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const fv y = p * r * r + r + 1.0f;
  return scale_pow2_v<kGeneric>(y, fx);
}

// log(x) for x in (0, 1] (Cephes logf: x = m·2^e with m in [√½, √2), degree-8 polynomial; ~1 ulp).
static inline fv logv(fv x) {
  iv bits = (iv)x;
  iv e = ((bits >> 23) & 0xff) - 126;
  bits = (bits & 0x007fffff) | 0x3f000000;  // m in [0.5, 1)
  fv m = (fv)bits;
  const iv small = m < 0.70710678118654752f;  // -1 lanes where m < √½: use 2m, e − 1
  e += small;
  m = small ? m + m - 1.0f : m - 1.0f;
  const fv z = m * m;
  fv y = splat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const fv fe = __builtin_convertvector(e, fv);
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  return m + y + fe * 0.693359375f;
}

// sin and cos of t for t in [0, 2π) (Cephes sinf/cosf polynomials): t = j·π/2 + y with |y| ≤ π/4,
// then the quadrant j picks and signs the two.
static inline void sincosv(fv t, fv& sn, fv& cs) {
  const iv q = __builtin_convertvector(t * 0.63661977236758134f + 0.5f, iv);  // nearest j, 0..4
  const fv j = __builtin_convertvector(q, fv);
  const fv y = ((t - j * 1.5703125f) - j * 4.837512969970703125e-4f) - j * 7.54978995489188216e-8f;  // Cody–Waite
  const fv z = y * y;
  fv s = splat(-1.9515295891e-4f);
  s = s * z + 8.3321608736e-3f;
  s = s * z - 1.6666654611e-1f;
  s = s * z * y + y;
  fv c = splat(2.443315711809948e-5f);
  c = c * z - 1.388731625493765e-3f;
  c = c * z + 4.166664568298827e-2f;
  c = c * z * z - 0.5f * z + 1.0f;
  const iv swap = (q & 1) != 0;        // quadrants 1, 3: sin(t) = ±cos(y), cos(t) = ∓sin(y)
  const iv sneg = (q & 2) != 0;        // quadrants 2, 3
  const iv cneg = ((q + 1) & 2) != 0;  // quadrants 1, 2
  sn = swap ? c : s;
  cs = swap ? s : c;
  sn = sneg ? -sn : sn;
  cs = cneg ? -cs : cs;
}

}  // namespace fast_math_detail

#if defined(__AVX512F__) || defined(__AVX2__)
namespace fast_math_detail {
namespace {  // internal linkage: each instruction set's copy keeps its own (see the top of this file)

// The vector instructions philox4x32_10_lanes needs, for AVX-512 (16 lanes) and AVX2 (8). The AVX-512 forms are the
// zero-masked ones: GCC 12 warns of its own undefined source in the plain ones.
#if defined(__AVX512F__)
struct PhiloxLanes {
  using V = __m512i;
  static constexpr int kLanes = 16;
  static V load(const uint32_t* p) { return _mm512_load_si512(p); }  // 64-byte aligned
  static void store(uint32_t* p, V v) { _mm512_store_si512(p, v); }
  static V set1(uint32_t x) { return _mm512_set1_epi32(int(x)); }
  static V set1_64(uint64_t x) { return _mm512_set1_epi64(int64_t(x)); }
  static V mul_even(V a, V m) { return _mm512_maskz_mul_epu32(__mmask8(0xFF), a, m); }  // 32×32 → 64 on even lanes
  static V up(V a) { return _mm512_maskz_srli_epi64(__mmask8(0xFF), a, 32); }           // high halves down
  static V down(V a) { return _mm512_maskz_slli_epi64(__mmask8(0xFF), a, 32); }         // low halves up
  static V blend_odd(V even, V odd) { return _mm512_mask_blend_epi32(__mmask16(0xAAAA), even, odd); }
  static V xor3(V a, V b, V c) { return _mm512_xor_si512(_mm512_xor_si512(a, b), c); }
};
#else
struct PhiloxLanes {
  using V = __m256i;
  static constexpr int kLanes = 8;
  static V load(const uint32_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }  // 32-byte aligned
  static void store(uint32_t* p, V v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }
  static V set1(uint32_t x) { return _mm256_set1_epi32(int(x)); }
  static V set1_64(uint64_t x) { return _mm256_set1_epi64x(int64_t(x)); }
  static V mul_even(V a, V m) { return _mm256_mul_epu32(a, m); }
  static V up(V a) { return _mm256_srli_epi64(a, 32); }
  static V down(V a) { return _mm256_slli_epi64(a, 32); }
  static V blend_odd(V even, V odd) { return _mm256_blend_epi32(even, odd, 0xAA); }
  static V xor3(V a, V b, V c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
};
#endif

}  // namespace

// kernels/philox.hpp's philox4x32_10 for the kLanes blocks first .. first+kLanes−1 at once, one block per 32-bit lane:
// the same integer arithmetic (32×32 → 64-bit products by vpmuludq on the even and the odd lanes), so the same bits.
// (GCC's generic vectors would multiply with 64-bit vpmullq, slower than the scalar code.)
static inline void philox4x32_10_lanes(uint64_t seed, uint64_t stream, uint64_t first, PhiloxLanes::V out[4]) {
  using L = PhiloxLanes;
  alignas(64) uint32_t lo[L::kLanes], hi[L::kLanes];
  for (int j = 0; j < L::kLanes; ++j)
    lo[j] = uint32_t(first + uint64_t(j)), hi[j] = uint32_t((first + uint64_t(j)) >> 32);
  L::V c0 = L::load(lo), c1 = L::load(hi), c2 = L::set1(uint32_t(stream)), c3 = L::set1(uint32_t(stream >> 32));
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  const L::V m0 = L::set1_64(0xD2511F53), m1 = L::set1_64(0xCD9E8D57);
  for (int r = 0; r < 10; ++r) {
    const L::V e0 = L::mul_even(c0, m0), o0 = L::mul_even(L::up(c0), m0);
    const L::V e1 = L::mul_even(c2, m1), o1 = L::mul_even(L::up(c2), m1);
    const L::V lo0 = L::blend_odd(e0, L::down(o0)), hi0 = L::blend_odd(L::up(e0), o0);
    const L::V lo1 = L::blend_odd(e1, L::down(o1)), hi1 = L::blend_odd(L::up(e1), o1);
    c0 = L::xor3(hi1, c1, L::set1(k0));
    c1 = lo1;
    c2 = L::xor3(hi0, c3, L::set1(k1));
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

}  // namespace fast_math_detail
#endif

// 64 normals: elements 4·b .. 4·b+3 of blocks b = first .. first+15 of a Philox stream, by Box–Muller
// with the vector log and sincos above (within a few ulp of kernels/philox.hpp's philox_normal_at). With AVX-512 the
// 16 Philox blocks are drawn at once in vector lanes, with AVX2 8 at a time (the scalar generator's bits).
static inline void philox_normal64(uint64_t seed, uint64_t stream, uint64_t first, float out[64]) {
  using namespace fast_math_detail;
  alignas(64) float u[32], v[32];  // pair p of block b: u = radius source, v = angle source
#if defined(__AVX512F__) || defined(__AVX2__)
  alignas(64) uint32_t w[4][16];  // word i of block first + b
  for (int h = 0; h < 16; h += PhiloxLanes::kLanes) {
    PhiloxLanes::V r[4];
    philox4x32_10_lanes(seed, stream, first + uint64_t(h), r);
    for (int i = 0; i < 4; ++i) PhiloxLanes::store(w[i] + h, r[i]);
  }
  for (int b = 0; b < 16; ++b) {
    u[2 * b] = u32_to_unit_open0(w[0][b]);
    v[2 * b] = u32_to_unit(w[1][b]);
    u[2 * b + 1] = u32_to_unit_open0(w[2][b]);
    v[2 * b + 1] = u32_to_unit(w[3][b]);
  }
#else
  for (int b = 0; b < 16; ++b) {
    const Philox4 r = philox4x32_10(seed, stream, first + uint64_t(b));
    u[2 * b] = u32_to_unit_open0(r.v[0]);
    v[2 * b] = u32_to_unit(r.v[1]);
    u[2 * b + 1] = u32_to_unit_open0(r.v[2]);
    v[2 * b + 1] = u32_to_unit(r.v[3]);
  }
#endif
  alignas(64) float lg[32], sn[32], cs[32];
  for (int h = 0; h < 32 / kNF; ++h) {
    fv uu, vv, sv, cv;
    loadv(uu, u + kNF * h);
    loadv(vv, v + kNF * h);
    const fv l = -2.0f * logv(uu);
    sincosv(6.2831853071795864f * vv, sv, cv);
#if defined(__AVX512F__)
    // pair p = 16h + j gives elements 2p (cos) and 2p+1 (sin): the products interleaved; vsqrtps is IEEE's sqrt,
    // the scalar sqrtf's bits
    const fv radius = fv(_mm512_maskz_sqrt_ps(__mmask16(0xFFFF), __m512(l)));  // maskz: see PhiloxLanes
    const fv c = radius * cv, s = radius * sv;
    const fv lo = __builtin_shufflevector(c, s, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const fv hi = __builtin_shufflevector(c, s, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    storev(out + 32 * h, lo);
    storev(out + 32 * h + 16, hi);
#else
    storev(lg + kNF * h, l);
    storev(sn + kNF * h, sv);
    storev(cs + kNF * h, cv);
#endif
  }
#if !defined(__AVX512F__)
  for (int p = 0; p < 32; ++p) {  // pair p = (block p/2, pair p%2) gives elements 2p (cos) and 2p+1 (sin)
    const float radius = __builtin_sqrtf(lg[p]);  // no std:: inline wrapper: kept out of the per-ISA copies
    out[2 * p] = radius * cs[p];
    out[2 * p + 1] = radius * sn[p];
  }
#else
  (void)lg, (void)sn, (void)cs;
#endif
}

// Bias + swish of one vector: z = acc + b, σ = 1 / (1 + exp(−z)), a = z·σ — the formula bias_swish and the GEMM
// epilogues that apply it share, so both give the same bits.
static inline void bias_swish_v(fast_math_detail::fv acc, fast_math_detail::fv b, fast_math_detail::fv& z,
                                fast_math_detail::fv& s, fast_math_detail::fv& a) {
  z = acc + b;
  s = 1.0f / (1.0f + fast_math_detail::expv(-z));
  a = z * s;
}

// Fused bias + swish over a [rows][cols] block (NHWC: one row per pixel, channels along it):
// z ← z + bias[col], σ ← σ(z), a ← z·σ.
static inline void bias_swish(float* z, float* sig, float* a, int64_t rows, int cols, const float* bias) {
  using namespace fast_math_detail;
  const auto vector_at = [&](int64_t i, int j) {  // elements i .. i + kNF (z, sig, a), columns j .. j + kNF
    fv acc, bb, zz, s, out;
    loadv(acc, z + i);
    loadv(bb, bias + j);
    bias_swish_v(acc, bb, zz, s, out);
    storev(z + i, zz);
    storev(sig + i, s);
    storev(a + i, out);
  };
  if (cols % kNF == 0) {  // one flat loop: a row of 16 channels is one vector, and a loop per row reloaded the
                          // polynomial's constants for each (a third of the time)
    const int64_t len = rows * cols;
    for (int64_t i = 0, j = 0; i < len; i += kNF, j = j + kNF == cols ? 0 : j + kNF) vector_at(i, int(j));
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = r * cols;
    int j = 0;
    for (; j + kNF <= cols; j += kNF) vector_at(row + j, j);
    for (; j < cols; ++j) {  // tail: the same formula, one lane
      fv zz, s, out;
      bias_swish_v(splat(z[row + j]), splat(bias[j]), zz, s, out);
      z[row + j] = zz[0];
      sig[row + j] = s[0];
      a[row + j] = out[0];
    }
  }
}

// The double path (gradient checks) stays exact.
static inline void bias_swish(double* z, double* sig, double* a, int64_t rows, int cols, const double* bias) {
  for (int64_t i = 0; i < rows * cols; ++i) {
    const double zz = z[i] + bias[i % cols], s = 1.0 / (1.0 + std::exp(-zz));
    z[i] = zz;
    sig[i] = s;
    a[i] = zz * s;
  }
}

}  // namespace ebm
