// Data augmentation of the real rows (config data.shift): each real image of a training step moved by (dy, dx),
// each in [−k, k], pixels shifted in from outside the image set to −1 (the border MNIST's padding has). The shift
// of real row j of the global batch at step t (the steps taken before it, AdamState::t) is drawn from Philox
// stream (seed, kAugment) at block t·2^32 + j — no state, so a resumed or data-parallel run draws the same ones.
// Written once for the CPU backend and the CUDA kernels (kernels/replay.cu's gather), so both shift alike.
#pragma once
#include <cstdint>

#include "kernels/hostdevice.hpp"
#include "kernels/philox.hpp"
#include "kernels/rng_streams.hpp"

namespace ebm {

// Pixel (ch, y, x) of img [c, h, w] shifted by (dy, dx): img at (ch, y − dy, x − dx), or −1 outside the image.
EBM_HD float shifted_pixel(const float* img, int h, int w, int dy, int dx, int ch, int y, int x) {
  const int sy = y - dy, sx = x - dx;
  return sy >= 0 && sy < h && sx >= 0 && sx < w ? img[(int64_t(ch) * h + sy) * w + sx] : -1.0f;
}

// img [c, h, w] shifted by (dy, dx) into out [c, h, w] (out != img).
EBM_HD void shift_image(const float* img, int c, int h, int w, int dy, int dx, float* out) {
  for (int ch = 0; ch < c; ++ch)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) out[(int64_t(ch) * h + y) * w + x] = shifted_pixel(img, h, w, dy, dx, ch, y, x);
}

struct Shift {
  int dy, dx;
};

// The shift of real row `row` of the global batch at step `step`, each coordinate in [−k, k] (k ≥ 1).
EBM_HD Shift augment_shift(uint64_t seed, int64_t step, int64_t row, int k) {
  const Philox4 p = philox4x32_10(seed, stream_id(RngStream::kAugment), (uint64_t(step) << 32) + uint64_t(row));
  const uint32_t span = uint32_t(2 * k + 1);
  return {int(p.v[0] % span) - k, int(p.v[1] % span) - k};
}

}  // namespace ebm
