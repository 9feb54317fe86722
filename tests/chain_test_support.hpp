// What the Langevin-chain kernels' tests share (tests/test_langevin_chain_harness.cpp for the generic chain,
// tests/test_langevin_chain_tiled.cpp for the tiled one): their inputs, the noise-only reference chain, how results
// are compared, and why a GPU test skips.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/net.hpp"            // NetSpec, init_params
#include "engine/rng.hpp"            // Rng
#include "host/eval/backend_factory.hpp"  // cuda_usable
#include "kernels/ebm_math.hpp"      // langevin_perturb

namespace ebm::test {

// Glorot weights (the CPU backend's initial θ) and nonzero biases, so every term of the layers is exercised.
inline std::vector<float> chain_params(const NetSpec& net, uint64_t seed) {
  std::vector<float> p = init_params(net, seed);
  Rng r(seed + 1, RngStream::kInit);
  for (const ConvShape& c : net.convs) r.uniform(p.data() + c.b_off, c.cout, -0.2f, 0.2f);
  r.uniform(p.data() + net.dense_b_off, 1, -0.2f, 0.2f);
  return p;
}

// n images of img pixels, uniform in [−1, 1].
inline std::vector<float> chain_images(int n, int img, uint64_t seed) {
  std::vector<float> x(size_t(n) * size_t(img));
  Rng(seed, RngStream::kInit).uniform(x.data(), int64_t(x.size()), -1.0f, 1.0f);
  return x;
}

// A chain of `steps` noise-only Langevin steps (zero weights: no gradient) from x, as the engine draws it: step k's
// normals by Rng::normal from stream (seed, kLangevin) at block offset + k·blocks, then x ← clamp(x + noise·n).
inline std::vector<float> noise_only_chain(std::vector<float> x, int steps, float noise, uint64_t seed, uint64_t offset,
                                           uint64_t blocks) {
  std::vector<float> n(x.size());
  for (int k = 0; k < steps; ++k) {
    Rng r(seed, RngStream::kLangevin);
    r.offset = offset + uint64_t(k) * blocks;
    r.normal(n.data(), int64_t(n.size()), 0.0f, 1.0f);
    for (size_t i = 0; i < x.size(); ++i) x[i] = langevin_perturb(x[i], noise, n[i]);
  }
  return x;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The largest |got − want|, where, and how many elements exceed tol (NaN counts as exceeding).
struct Diff {
  double max_abs = 0;
  size_t bad = 0, at = 0;
};
inline Diff compare(const std::vector<float>& got, const std::vector<float>& want, double tol) {
  Diff d;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(double(got[i]) - double(want[i]));
    if (!(e <= tol)) ++d.bad;
    if (!(e <= d.max_abs)) d.max_abs = e, d.at = i;
  }
  return d;
}

// "" where a CUDA device is usable, else why not (the GPU tests' skip message).
inline std::string why_no_cuda() {
  std::string why;
  if (cuda_usable(&why)) return "";
  return why.empty() ? std::string("cuda_usable() found no device") : why;
}

}  // namespace ebm::test
