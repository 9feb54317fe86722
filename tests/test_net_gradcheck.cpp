// Finite-difference checks, in double precision, of the CPU network's gradients w.r.t. the input and
// every parameter tensor — the same templated code the engine runs in float — for the energy net's one
// output and for K-output heads (L = Σ_ik w_ik f_ik with a random w [n][K]).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/error.hpp"
#include "engine/cpu/cpu_net.hpp"

using namespace ebm;

namespace {

struct Problem {
  NetSpec spec;
  std::vector<double> params, x, w;  // w [n][K]
  int n;
  int outputs() const { return spec.outputs; }
};

Problem make_problem(std::vector<int> channels, int kernel, int stride, int hw, int in_c, int n, int outputs = 1) {
  Problem p{NetSpec::make(channels, kernel, stride, hw, in_c, outputs), {}, {}, {}, n};
  std::mt19937 gen(123);
  std::uniform_real_distribution<double> u(-0.8, 0.8);
  for (int64_t i = 0; i < p.spec.num_params; ++i) p.params.push_back(u(gen));
  for (int64_t i = 0; i < n * p.spec.image_size(); ++i) p.x.push_back(u(gen));
  // L = Σ_ik w_ik f_ik, so rows and outputs are weighted differently
  for (int i = 0; i < n * outputs; ++i) p.w.push_back(u(gen));
  return p;
}

double loss(CpuNetT<double>& net, const Problem& p, const std::vector<double>& params, const std::vector<double>& x) {
  std::vector<double> f(size_t(p.n) * p.outputs());
  net.forward(params.data(), x.data(), p.n, f.data());
  double l = 0;
  for (size_t i = 0; i < f.size(); ++i) l += p.w[i] * f[i];
  return l;
}

// Relative error with a floor, so entries whose gradient is ~0 do not blow it up. Central differences round at
// ~ε·|L|/h per evaluation (ε = 1.1e-16, h = 1e-6), a few times that with the sums' own rounding: up to ~1e-9 with
// |L| ≲ 10 (K outputs). Below |a| + |b| = 1e-3 the check is absolute: 1e-6 of the floor is 1e-9, at that limit (the
// 10-output case measured 1.14e-6 on the H200 machine's CPU), so the bound is kGradTol = 1e-5 — 10x the rounding
// limit, and still 1e-5 of a gradient that a wrong index or a missing term would move by O(1).
double grad_rel_err(double a, double b) { return std::fabs(a - b) / std::max(1e-3, std::fabs(a) + std::fabs(b)); }
constexpr double kGradTol = 1e-5;

void check(const Problem& p) {
  CpuNetT<double> net(p.spec);
  std::vector<double> f(size_t(p.n) * p.outputs()), dx(p.x.size()), grad(p.params.size());
  net.forward(p.params.data(), p.x.data(), p.n, f.data());
  net.backward(p.params.data(), p.w.data(), dx.data(), grad.data());
  const double h = 1e-6;  // central differences in double: truncation O(h²), rounding O(1e-16/h) ≈ 1e-10
  double worst = 0;
  for (size_t i = 0; i < p.x.size(); ++i) {
    auto xp = p.x, xm = p.x;
    xp[i] += h;
    xm[i] -= h;
    const double fd = (loss(net, p, p.params, xp) - loss(net, p, p.params, xm)) / (2 * h);
    worst = std::max(worst, grad_rel_err(fd, dx[i]));
  }
  EXPECT_LT(worst, kGradTol) << "input gradient";
  for (const ParamTensor& t : p.spec.tensors()) {
    double worst_t = 0;
    for (int64_t i = t.offset; i < t.offset + t.size; ++i) {
      auto pp = p.params, pm = p.params;
      pp[i] += h;
      pm[i] -= h;
      const double fd = (loss(net, p, pp, p.x) - loss(net, p, pm, p.x)) / (2 * h);
      worst_t = std::max(worst_t, grad_rel_err(fd, grad[i]));
    }
    EXPECT_LT(worst_t, kGradTol) << t.name;
  }
}

}  // namespace

TEST(NetGradCheck, SeedShapedNetSmallImage) { check(make_problem({3, 4, 5}, 3, 2, 8, 1, 3)); }
TEST(NetGradCheck, MultiChannelInputStride1Kernel5) { check(make_problem({2, 3}, 5, 1, 6, 2, 2)); }
TEST(NetGradCheck, OddSizeStride3) { check(make_problem({4}, 3, 3, 7, 1, 2)); }
// A one-channel layer in the middle takes the direct single-channel path too.
TEST(NetGradCheck, SingleChannelMiddleLayer) { check(make_problem({1, 3}, 3, 1, 5, 1, 2)); }

// K-output heads: dense.weight [K, D], the fused sum over k in the dense layer's input gradient.
TEST(NetGradCheck, ThreeOutputsSeedShapedNet) { check(make_problem({3, 4, 5}, 3, 2, 8, 1, 3, 3)); }
TEST(NetGradCheck, TenOutputsMultiChannelInput) { check(make_problem({2, 3}, 5, 1, 6, 2, 2, 10)); }

// Output k of a K-output net is the 1-output net whose head is row k of dense.weight and dense.bias[k], to the
// bit (the same sums in the same order); and with df = e_k (one-hot in k) the input gradient is that net's.
TEST(NetGradCheck, EachOutputIsASingleOutputHeadBitForBit) {
  const int K = 3, n = 4;
  const NetSpec many = NetSpec::make({4, 8}, 3, 2, 8, 1, K), one = NetSpec::make({4, 8}, 3, 2, 8);
  ASSERT_EQ(many.num_params, one.num_params + (K - 1) * (one.dense_in + 1));
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-0.8f, 0.8f);
  std::vector<float> pm(size_t(many.num_params)), x(size_t(n * many.image_size()));
  for (float& v : pm) v = u(gen);
  for (float& v : x) v = u(gen);
  CpuNet net_many(many), net_one(one);
  const size_t rows = n, outs = n * K;
  std::vector<float> fm(outs), df(outs), dxm(x.size()), dxo(x.size()), f1(rows), ones(rows, 1.0f);
  net_many.forward(pm.data(), x.data(), n, fm.data());
  for (int k = 0; k < K; ++k) {
    std::vector<float> p1(pm.begin(), pm.begin() + one.dense_w_off);  // the shared conv layers
    p1.insert(p1.end(), pm.begin() + many.dense_w_off + k * many.dense_in,
              pm.begin() + many.dense_w_off + (k + 1) * many.dense_in);
    p1.push_back(pm[size_t(many.dense_b_off + k)]);
    ASSERT_EQ(int64_t(p1.size()), one.num_params);
    net_one.forward(p1.data(), x.data(), n, f1.data());
    for (int i = 0; i < n; ++i) EXPECT_EQ(fm[size_t(i * K + k)], f1[size_t(i)]) << "image " << i << ", output " << k;
    net_one.backward(p1.data(), ones.data(), dxo.data(), nullptr);
    std::fill(df.begin(), df.end(), 0.0f);
    for (int i = 0; i < n; ++i) df[size_t(i * K + k)] = 1.0f;
    net_many.backward(pm.data(), df.data(), dxm.data(), nullptr);
    EXPECT_EQ(dxm, dxo) << "df/dx of output " << k;
  }
}

// features(): the dense layer's input, NCHW-flattened, from which dense.weight and dense.bias give f.
TEST(NetGradCheck, FeaturesTimesTheHeadIsTheOutput) {
  Problem p = make_problem({3, 5}, 3, 2, 8, 1, 3, 4);
  CpuNetT<double> net(p.spec);
  std::vector<double> f(size_t(p.n) * p.outputs()), feats(size_t(p.n * p.spec.dense_in));
  net.forward(p.params.data(), p.x.data(), p.n, f.data());
  net.features(feats.data());
  for (int i = 0; i < p.n; ++i)
    for (int k = 0; k < p.outputs(); ++k) {
      double acc = p.params[size_t(p.spec.dense_b_off + k)];
      for (int64_t j = 0; j < p.spec.dense_in; ++j)
        acc += p.params[size_t(p.spec.dense_w_off + k * p.spec.dense_in + j)] * feats[size_t(i * p.spec.dense_in + j)];
      EXPECT_NEAR(acc, f[size_t(i * p.outputs() + k)], 1e-12) << i << "," << k;
    }
  // The order matters here: 2×2 maps of 5 channels, so an NHWC-ordered features() would give other sums.
  const ConvShape& last = p.spec.convs.back();
  EXPECT_EQ(last.hout * last.wout, 4);
  EXPECT_EQ(p.spec.dense_in, int64_t(last.cout) * last.hout * last.wout);
}

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
  EXPECT_EQ(s.outputs, 1);
}

TEST(NetShape, TenOutputHeadIsALinearOfTenRows) {
  const NetSpec one = NetSpec::make({16, 32, 64, 64}, 3, 2, 32);
  const NetSpec s = NetSpec::make({16, 32, 64, 64}, 3, 2, 32, 1, 10);
  EXPECT_EQ(s.num_params, 60481 + 9 * 257);
  const auto t = s.tensors();
  ASSERT_EQ(t.size(), 10u);
  EXPECT_EQ(t[8].name, "dense.weight");
  EXPECT_EQ(t[8].shape, (std::vector<int64_t>{10, 256}));
  EXPECT_EQ(t[8].size, 2560);
  EXPECT_EQ(t[9].name, "dense.bias");
  EXPECT_EQ(t[9].shape, (std::vector<int64_t>{10}));
  EXPECT_EQ(t[9].offset + t[9].size, s.num_params);
  EXPECT_NE(s.summary().find("dense  256 -> 10  params 2570"), std::string::npos) << s.summary();
  // Glorot with fan_out = K; the conv layers' draws are the 1-output net's.
  const std::vector<float> p = init_params(s, 42), p1 = init_params(one, 42);
  EXPECT_TRUE(std::equal(p1.begin(), p1.begin() + one.dense_w_off, p.begin()));
  const float limit = std::sqrt(6.0f / float(256 + 10));
  float largest = 0;
  for (int64_t i = s.dense_w_off; i < s.dense_b_off; ++i) largest = std::max(largest, std::fabs(p[size_t(i)]));
  EXPECT_LE(largest, limit);
  EXPECT_GT(largest, 0.9f * limit);  // 2560 draws come near the limit
  for (int64_t i = s.dense_b_off; i < s.num_params; ++i) EXPECT_EQ(p[size_t(i)], 0.0f);
  EXPECT_THROW(NetSpec::make({4}, 3, 2, 8, 1, 0), UserError);
}
