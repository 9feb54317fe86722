// Vectorised float math for the CPU backend's hot loops. glibc's expf is not vectorised without
// -ffast-math (which would also break the divergence guard's isfinite checks), and GCC 12 will not
// if-convert the clamps of a hand-written expf, so the bias+swish row is written with GCC vector
// extensions (lowered to AVX-512/AVX2/SSE, whatever the target has): a Cephes-style expf — range
// reduction to [−ln2/2, ln2/2], degree-6 polynomial, ~1 ulp where it matters.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace ebm {

namespace fast_math_detail {

typedef float f16 __attribute__((vector_size(64)));
typedef int32_t i16 __attribute__((vector_size(64)));

inline f16 splat(float v) { return f16{} + v; }

// exp(x) lane by lane.
inline f16 expf16(f16 x) {
  x = x < splat(-87.3f) ? splat(-87.3f) : x;
  x = x > splat(88.3f) ? splat(88.3f) : x;
  const f16 t = x * 1.44269504088896341f + 0.5f;
  f16 fx = __builtin_convertvector(__builtin_convertvector(t, i16), f16);
  fx = fx > t ? fx - 1.0f : fx;  // floor
  f16 r = x - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  f16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const f16 y = p * r * r + r + 1.0f;
  const i16 bits = (__builtin_convertvector(fx, i16) + 127) << 23;  // 2^fx
  f16 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

}  // namespace fast_math_detail

// Fused bias + swish over a [rows][cols] block (NHWC: one row per pixel, channels along it):
// z ← z + bias[col], σ ← σ(z), a ← z·σ.
inline void bias_swish(float* z, float* sig, float* a, int64_t rows, int cols, const float* bias) {
  using namespace fast_math_detail;
  for (int64_t r = 0; r < rows; ++r) {
    float* zr = z + r * cols;
    float* sr = sig + r * cols;
    float* ar = a + r * cols;
    int j = 0;
    for (; j + 16 <= cols; j += 16) {
      f16 zz, bb;
      std::memcpy(&zz, zr + j, sizeof zz);
      std::memcpy(&bb, bias + j, sizeof bb);
      zz = zz + bb;
      const f16 s = 1.0f / (1.0f + expf16(-zz));
      const f16 out = zz * s;
      std::memcpy(zr + j, &zz, sizeof zz);
      std::memcpy(sr + j, &s, sizeof s);
      std::memcpy(ar + j, &out, sizeof out);
    }
    for (; j < cols; ++j) {  // tail: the same formula, one lane
      const f16 zz = splat(zr[j] + bias[j]);
      const f16 s = 1.0f / (1.0f + expf16(-zz));
      zr[j] = zz[0];
      sr[j] = s[0];
      ar[j] = zz[0] * s[0];
    }
  }
}

// The double path (gradient checks) stays exact.
inline void bias_swish(double* z, double* sig, double* a, int64_t rows, int cols, const double* bias) {
  for (int64_t i = 0; i < rows * cols; ++i) {
    const double zz = z[i] + bias[i % cols], s = 1.0 / (1.0 + std::exp(-zz));
    z[i] = zz;
    sig[i] = s;
    a[i] = zz * s;
  }
}

}  // namespace ebm
