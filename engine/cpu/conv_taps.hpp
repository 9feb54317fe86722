// The taps of a convolution's output pixel, shared by the CPU backend's net (engine/cpu/cpu_net.cpp) and its
// per-instruction-set vector kernels (engine/cpu/small_gemm.cpp): `static`, so each copy keeps its own.
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

}  // namespace ebm
