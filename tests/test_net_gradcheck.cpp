// Finite-difference checks, in double precision, of the CPU network's gradients w.r.t. the input and
// every parameter tensor — the same templated code the engine runs in float.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/cpu/cpu_net.hpp"

using namespace ebm;

namespace {

struct Problem {
  NetSpec spec;
  std::vector<double> params, x, w;
  int n;
};

Problem make_problem(std::vector<int> channels, int kernel, int stride, int hw, int in_c, int n) {
  Problem p{NetSpec::make(channels, kernel, stride, hw, in_c), {}, {}, {}, n};
  std::mt19937 gen(123);
  std::uniform_real_distribution<double> u(-0.8, 0.8);
  for (int64_t i = 0; i < p.spec.num_params; ++i) p.params.push_back(u(gen));
  for (int64_t i = 0; i < n * p.spec.image_size(); ++i) p.x.push_back(u(gen));
  for (int i = 0; i < n; ++i) p.w.push_back(u(gen));  // L = Σ w_i f_i, so rows are weighted differently
  return p;
}

double loss(CpuNetT<double>& net, const Problem& p, const std::vector<double>& params, const std::vector<double>& x) {
  std::vector<double> f(p.n);
  net.forward(params.data(), x.data(), p.n, f.data());
  double l = 0;
  for (int i = 0; i < p.n; ++i) l += p.w[i] * f[i];
  return l;
}

// Relative error with a floor, so entries whose gradient is ~0 do not blow it up.
double rel_err(double a, double b) { return std::fabs(a - b) / std::max(1e-6, std::fabs(a) + std::fabs(b)); }

void check(const Problem& p) {
  CpuNetT<double> net(p.spec);
  std::vector<double> f(p.n), dx(p.x.size()), grad(p.params.size());
  net.forward(p.params.data(), p.x.data(), p.n, f.data());
  net.backward(p.params.data(), p.w.data(), dx.data(), grad.data());
  const double h = 1e-6;  // central differences in double: truncation O(h²), rounding O(1e-16/h) ≈ 1e-10
  double worst = 0;
  for (size_t i = 0; i < p.x.size(); ++i) {
    auto xp = p.x, xm = p.x;
    xp[i] += h;
    xm[i] -= h;
    const double fd = (loss(net, p, p.params, xp) - loss(net, p, p.params, xm)) / (2 * h);
    worst = std::max(worst, rel_err(fd, dx[i]));
  }
  EXPECT_LT(worst, 1e-6) << "input gradient";
  for (const ParamTensor& t : p.spec.tensors()) {
    double worst_t = 0;
    for (int64_t i = t.offset; i < t.offset + t.size; ++i) {
      auto pp = p.params, pm = p.params;
      pp[i] += h;
      pm[i] -= h;
      const double fd = (loss(net, p, pp, p.x) - loss(net, p, pm, p.x)) / (2 * h);
      worst_t = std::max(worst_t, rel_err(fd, grad[i]));
    }
    EXPECT_LT(worst_t, 1e-6) << t.name;
  }
}

}  // namespace

TEST(NetGradCheck, SeedShapedNetSmallImage) { check(make_problem({3, 4, 5}, 3, 2, 8, 1, 3)); }
TEST(NetGradCheck, MultiChannelInputStride1Kernel5) { check(make_problem({2, 3}, 5, 1, 6, 2, 2)); }
TEST(NetGradCheck, OddSizeStride3) { check(make_problem({4}, 3, 3, 7, 1, 2)); }
// A one-channel layer in the middle takes the direct single-channel path too.
TEST(NetGradCheck, SingleChannelMiddleLayer) { check(make_problem({1, 3}, 3, 1, 5, 1, 2)); }

TEST(NetGradCheck, FloatMatchesDouble) {
  // The engine's float path against the double path on the seed's 60,481-parameter net.
  Problem p = make_problem({16, 32, 64, 64}, 3, 2, 32, 1, 4);
  ASSERT_EQ(p.spec.num_params, 60481);
  CpuNetT<double> nd(p.spec);
  CpuNetT<float> nf(p.spec);
  std::vector<float> pf(p.params.begin(), p.params.end()), xf(p.x.begin(), p.x.end()), wf(p.w.begin(), p.w.end());
  std::vector<double> fd(p.n), dxd(p.x.size()), gd(p.params.size());
  std::vector<float> ff(p.n), dxf(p.x.size()), gf(p.params.size());
  nd.forward(p.params.data(), p.x.data(), p.n, fd.data());
  nd.backward(p.params.data(), p.w.data(), dxd.data(), gd.data());
  nf.forward(pf.data(), xf.data(), p.n, ff.data());
  nf.backward(pf.data(), wf.data(), dxf.data(), gf.data());
  // fp32 rounding over sums of up to 576 products: relative 1e-4 of the largest entry.
  auto scale = [](const std::vector<double>& v) { double s = 0; for (double a : v) s = std::max(s, std::fabs(a)); return s; };
  const double sf = scale(fd), sx = scale(dxd), sg = scale(gd);
  for (int i = 0; i < p.n; ++i) EXPECT_NEAR(ff[i], fd[i], 1e-4 * sf);
  for (size_t i = 0; i < dxd.size(); ++i) ASSERT_NEAR(dxf[i], dxd[i], 1e-4 * sx) << i;
  for (size_t i = 0; i < gd.size(); ++i) ASSERT_NEAR(gf[i], gd[i], 1e-4 * sg) << i;
}

TEST(NetShape, SeedNetHas60481ParametersInCheckpointOrder) {
  const NetSpec s = NetSpec::make({16, 32, 64, 64}, 3, 2, 32);
  EXPECT_EQ(s.num_params, 60481);
  const auto t = s.tensors();
  ASSERT_EQ(t.size(), 10u);
  EXPECT_EQ(t[0].name, "convs.0.weight");
  EXPECT_EQ(t[0].shape, (std::vector<int64_t>{16, 1, 3, 3}));
  EXPECT_EQ(t[6].name, "convs.3.weight");
  EXPECT_EQ(t[6].shape, (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(t[8].name, "dense.weight");
  EXPECT_EQ(t[8].shape, (std::vector<int64_t>{1, 256}));
  EXPECT_EQ(s.convs[3].hout, 2);
}
