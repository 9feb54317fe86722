// Convolution index walks shared by the CPU backend's net (engine/cpu/cpu_net.cpp) and its per-instruction-set
// vector kernels (engine/cpu/small_gemm.cpp): `static`, so each copy keeps its own.
#pragma once
#include <cstdint>

#include "engine/net.hpp"

namespace ebm {

// Calls fn(b, oy, ox, t, input_pixel_index) for every in-image tap t = ky·k + kx of every output pixel.
template <class Fn>
static inline void for_each_tap(const ConvShape& s, int b, int oy, int ox, Fn&& fn) {
  for (int ky = 0; ky < s.k; ++ky) {
    const int iy = oy * s.stride - s.pad + ky;
    if (iy < 0 || iy >= s.hin) continue;
    for (int kx = 0; kx < s.k; ++kx) {
      const int ix = ox * s.stride - s.pad + kx;
      if (ix >= 0 && ix < s.win) fn(ky * s.k + kx, (int64_t(b) * s.hin + iy) * s.win + ix);
    }
  }
}

// The adjoint of im2col for image b: dcol [ho·wo][k·k·cin] of the image summed into din [h·w][cin] of the image
// (overwritten). Plain loops the compiler vectorises for whichever instruction set the copy is built for.
template <class T>
static inline void col2im_image(const ConvShape& s, int b, const T* dcol, T* din) {
  const int cin = s.cin, kdim = s.k * s.k * cin;
  const int64_t img = int64_t(s.hin) * s.win * cin;
  T* out = din + b * img;
  for (int64_t i = 0; i < img; ++i) out[i] = T(0);
  for (int oy = 0; oy < s.hout; ++oy) {
    for (int ox = 0; ox < s.wout; ++ox) {
      const T* src = dcol + ((int64_t(b) * s.hout + oy) * s.wout + ox) * kdim;
      for (int ky = 0; ky < s.k; ++ky) {
        const int iy = oy * s.stride - s.pad + ky;
        for (int kx = 0; kx < s.k; ++kx, src += cin) {
          const int ix = ox * s.stride - s.pad + kx;
          if (iy < 0 || iy >= s.hin || ix < 0 || ix >= s.win) continue;
          T* dst = out + (int64_t(iy) * s.win + ix) * cin;
          for (int c = 0; c < cin; ++c) dst[c] += src[c];
        }
      }
    }
  }
}

}  // namespace ebm
