// The training recipe on the CPU: spectral normalisation (engine/spectral_norm.hpp) against singular values
// known by hand and against finite differences, and the EMA of the weights against its recurrence.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "engine/spectral_norm.hpp"
#include "kernels/ebm_math.hpp"

using namespace ebm;

namespace {

// c = a·b for row-major a [n,k], b [k,m].
std::vector<double> matmul(const std::vector<double>& a, const std::vector<double>& b, int n, int k, int m) {
  std::vector<double> c(size_t(n * m), 0.0);
  for (int i = 0; i < n; ++i)
    for (int l = 0; l < k; ++l)
      for (int j = 0; j < m; ++j) c[size_t(i * m + j)] += a[size_t(i * k + l)] * b[size_t(l * m + j)];
  return c;
}

// Rotation by `t` in the (p, q) plane of R³.
std::vector<double> rotation(int p, int q, double t) {
  std::vector<double> r{1, 0, 0, 0, 1, 0, 0, 0, 1};
  r[size_t(p * 3 + p)] = std::cos(t), r[size_t(p * 3 + q)] = -std::sin(t);
  r[size_t(q * 3 + p)] = std::sin(t), r[size_t(q * 3 + q)] = std::cos(t);
  return r;
}

// σ after `iterations` power iterations from u (u updated in place), double precision.
double power_sigma(const std::vector<double>& w, int rows, int cols, std::vector<double>& u, int iterations) {
  std::vector<double> v(static_cast<size_t>(cols)), w_sn(w.size());
  double s = 0;
  for (int k = 0; k < iterations; ++k) s = sn_layer_forward(w.data(), rows, cols, u.data(), u.data(), v.data(), w_sn.data());
  return s;
}

EngineOptions tiny_options() {
  EngineOptions o;
  o.net = NetSpec::make({4, 8}, 3, 2, 32);
  o.seed = 11;
  o.batch_size = 8;
  o.sampler = {2, 10.0f, 0.005f, 0.03f};
  o.buffer_capacity = 32;
  o.buffer_initial = 8;
  return o;
}

Tensor recipe_images(int n, uint64_t seed) {
  Tensor t({n, 1, 32, 32});
  Rng(seed, RngStream::kInit).uniform(t.ptr(), t.numel(), -1.0f, 1.0f);
  return t;
}

}  // namespace

TEST(SpectralNorm, SigmaOfARotatedDiagonalMatrixIsItsLargestSingularValue) {
  // W = R1 · diag(3, 2, 1) · R2: singular values 3, 2, 1.
  const std::vector<double> d{3, 0, 0, 0, 2, 0, 0, 0, 1};
  const std::vector<double> w = matmul(matmul(rotation(0, 1, 0.7), d, 3, 3, 3), rotation(1, 2, -1.1), 3, 3, 3);
  std::vector<double> u{0.3, -0.5, 0.8};
  const double after_one = power_sigma(w, 3, 3, u, 1);
  EXPECT_LT(after_one, 3.0 - 1e-3) << "one iteration from a generic u underestimates σ";
  EXPECT_NEAR(power_sigma(w, 3, 3, u, 60), 3.0, 1e-9);  // the error shrinks as (2/3)^(2k)
}

TEST(SpectralNorm, RankOneMatrixIsExactAfterOneIteration) {
  // W = a bᵀ, σ = ‖a‖·‖b‖ = 3 · 5.
  const std::vector<double> a{1, 2, 2}, b{3, 0, 4, 0};
  std::vector<double> w;
  for (double ai : a)
    for (double bj : b) w.push_back(ai * bj);
  std::vector<double> u{0.2, -0.1, 0.9};
  EXPECT_NEAR(power_sigma(w, 3, 4, u, 1), 15.0, 1e-12);
}

TEST(SpectralNorm, EffOfATwoByTwoMatrixByHand) {
  // W = [[1, 2], [3, 4]], u = [1, 0]: Wᵀu = [1, 2], v = [1, 2]/√5; W v = [5, 11]/√5, u' = [5, 11]/√146;
  // σ = u'ᵀ W v = √146/√5.
  const float w[4] = {1, 2, 3, 4};
  const float u[2] = {1, 0};
  float u_out[2], v[2], w_sn[4];
  const float s = sn_layer_forward(w, 2, 2, u, u_out, v, w_sn);
  const double sigma = std::sqrt(146.0 / 5.0);
  EXPECT_NEAR(s, sigma, 1e-6);
  EXPECT_NEAR(v[0], 1 / std::sqrt(5.0), 1e-7);
  EXPECT_NEAR(v[1], 2 / std::sqrt(5.0), 1e-7);
  EXPECT_NEAR(u_out[0], 5 / std::sqrt(146.0), 1e-7);
  EXPECT_NEAR(u_out[1], 11 / std::sqrt(146.0), 1e-7);
  for (int e = 0; e < 4; ++e) EXPECT_NEAR(w_sn[e], w[e] / sigma, 1e-6) << e;
}

TEST(SpectralNorm, ZeroMatrixDoesNotDivideByZeroInTheNormalisation) {
  const float w[6] = {0, 0, 0, 0, 0, 0};
  const float u[2] = {0.6f, 0.8f};
  float u_out[2], v[3], w_sn[6];
  sn_layer_forward(w, 2, 3, u, u_out, v, w_sn);
  for (float x : v) EXPECT_EQ(x, 0.0f);  // normalize(0) = 0 / 1e-12
  for (float x : u_out) EXPECT_EQ(x, 0.0f);
}

// L(θ) = Σ G0 ⊙ W_sn(θ), W_sn = θ/σ(θ), σ(θ) = u'ᵀ θ v with u', v held at their values at θ0 (the backward's
// assumption, as torch detaches them): the analytic dL/dθ against central differences.
TEST(SpectralNorm, GradientTransformMatchesFiniteDifferences) {
  const int rows = 4, cols = 6, n = rows * cols;
  std::vector<double> theta(static_cast<size_t>(n)), g0(static_cast<size_t>(n)), u(static_cast<size_t>(rows));
  Rng rng(3, RngStream::kInit);
  for (auto* vec : {&theta, &g0, &u})
    for (double& x : *vec) x = rng.unit() * 2 - 1;
  std::vector<double> u1(static_cast<size_t>(rows)), v(static_cast<size_t>(cols)), w_sn(static_cast<size_t>(n));
  const double sigma = sn_layer_forward(theta.data(), rows, cols, u.data(), u1.data(), v.data(), w_sn.data());
  std::vector<double> grad = g0;
  sn_layer_backward(grad.data(), w_sn.data(), rows, cols, u1.data(), v.data(), sigma);
  auto loss = [&](const std::vector<double>& t) {
    double s = 0;  // σ with u', v frozen
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) s += u1[size_t(i)] * t[size_t(i * cols + j)] * v[size_t(j)];
    double l = 0;
    for (int e = 0; e < n; ++e) l += g0[size_t(e)] * t[size_t(e)] / s;
    return l;
  };
  const double h = 1e-6;
  for (int e = 0; e < n; ++e) {
    std::vector<double> p = theta, m = theta;
    p[size_t(e)] += h, m[size_t(e)] -= h;
    const double fd = (loss(p) - loss(m)) / (2 * h);
    EXPECT_NEAR(grad[size_t(e)], fd, 1e-8) << "element " << e;
  }
}

// With u converged, σ(θ) is the largest singular value and its gradient is u vᵀ: then the transform is the
// derivative of the whole eff() too (v and u' recomputed from θ at every probe, u fixed).
TEST(SpectralNorm, AtConvergenceTheTransformIsTheFullDerivative) {
  const int rows = 3, cols = 5, n = rows * cols;
  std::vector<double> theta(static_cast<size_t>(n)), g0(static_cast<size_t>(n)), u(size_t(rows), 1.0);
  Rng rng(4, RngStream::kInit);
  for (auto* vec : {&theta, &g0})
    for (double& x : *vec) x = rng.unit() * 2 - 1;
  power_sigma(theta, rows, cols, u, 500);  // u converged to the top left singular vector
  std::vector<double> u1(static_cast<size_t>(rows)), v(static_cast<size_t>(cols)), w_sn(static_cast<size_t>(n));
  const double sigma = sn_layer_forward(theta.data(), rows, cols, u.data(), u1.data(), v.data(), w_sn.data());
  std::vector<double> grad = g0;
  sn_layer_backward(grad.data(), w_sn.data(), rows, cols, u1.data(), v.data(), sigma);
  auto loss = [&](const std::vector<double>& t) {
    std::vector<double> uu(static_cast<size_t>(rows)), vv(static_cast<size_t>(cols)), ws(static_cast<size_t>(n));
    sn_layer_forward(t.data(), rows, cols, u.data(), uu.data(), vv.data(), ws.data());
    double l = 0;
    for (int e = 0; e < n; ++e) l += g0[size_t(e)] * ws[size_t(e)];
    return l;
  };
  const double h = 1e-6;
  for (int e = 0; e < n; ++e) {
    std::vector<double> p = theta, m = theta;
    p[size_t(e)] += h, m[size_t(e)] -= h;
    EXPECT_NEAR(grad[size_t(e)], (loss(p) - loss(m)) / (2 * h), 1e-6) << "element " << e;
  }
}

TEST(SpectralNorm, InitialStateIsSeededAndUnitPerLayer) {
  const NetSpec net = NetSpec::make({4, 8}, 3, 2, 32);
  const std::vector<float> a = sn_initial_state(net, 7), b = sn_initial_state(net, 7), c = sn_initial_state(net, 8);
  ASSERT_EQ(int64_t(a.size()), 4 + 8 + 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (const SnLayer& l : sn_layers(net)) {
    double ss = 0;
    for (int i = 0; i < l.rows; ++i) ss += double(a[size_t(l.u_off + i)]) * a[size_t(l.u_off + i)];
    EXPECT_NEAR(ss, 1.0, 1e-6);
  }
  EXPECT_EQ(std::fabs(a.back()), 1.0f) << "the dense layer's u has one element: ±1";
}

TEST(Recipe, BothOffLeavesNoStateAndSamplesWithTheta) {
  CpuBackend be(tiny_options());
  EXPECT_TRUE(be.ema().empty());
  EXPECT_TRUE(be.sn_state().empty());
  EXPECT_EQ(be.sampling_params(), be.params());
  EXPECT_THROW(be.set_ema(be.params()), UserError);
  EXPECT_THROW(be.set_sn_state({1.0f}), UserError);
}

TEST(Recipe, EmaFollowsItsRecurrenceStepByStep) {
  EngineOptions o = tiny_options();
  o.ema_decay = 0.75;
  CpuBackend be(o);
  const Tensor data = recipe_images(20, 1);
  be.set_train_data(data);
  std::vector<float> want = be.params();  // θ_ema starts at θ
  EXPECT_EQ(be.ema(), want);
  const std::vector<float> theta0 = be.params();
  for (int step = 0; step < 4; ++step) {
    be.train_step(step % be.batches_per_epoch());
    const std::vector<float> theta = be.params();
    for (size_t i = 0; i < want.size(); ++i) want[i] = float(std::fma(0.75, double(want[i]), 0.25 * double(theta[i])));
    ASSERT_EQ(be.ema(), want) << "after step " << step + 1;
  }
  EXPECT_NE(be.ema(), be.params());
  EXPECT_NE(be.ema(), theta0);
  EXPECT_EQ(be.sampling_params(), be.ema()) << "without spectral norm the sampling weights are θ_ema";
  // set_params resets the EMA to θ; set_ema after it restores one.
  const std::vector<float> e = be.ema();
  be.set_params(theta0);
  EXPECT_EQ(be.ema(), theta0);
  be.set_ema(e);
  EXPECT_EQ(be.ema(), e);
}

TEST(Recipe, EmaChangesWhatSampleAndEnergyUseButNotTraining) {
  EngineOptions o = tiny_options();
  CpuBackend plain(o);
  o.ema_decay = 0.9;
  CpuBackend ema(o);
  const Tensor data = recipe_images(16, 2);
  plain.set_train_data(data);
  ema.set_train_data(data);
  for (int s = 0; s < 3; ++s) plain.train_step(s % 2), ema.train_step(s % 2);
  EXPECT_EQ(ema.params(), plain.params()) << "training itself does not see the EMA";
  const Tensor x = recipe_images(5, 3);
  EXPECT_NE(ema.energy(x), plain.energy(x));
  CpuBackend check(tiny_options());
  check.set_params(ema.ema());
  EXPECT_EQ(ema.energy(x), check.energy(x)) << "energy() runs θ_ema";
  Tensor a = x, b = x;
  ema.sample(a, {2, 10.0f, 0.005f, 0.03f}, 9);
  check.sample(b, {2, 10.0f, 0.005f, 0.03f}, 9);
  EXPECT_EQ(a.data, b.data) << "sample() runs θ_ema";
}

TEST(Recipe, SpectralNormTrainsOnNormalisedWeightsAndSamplesWithoutUpdatingU) {
  EngineOptions o = tiny_options();
  o.spectral_norm = true;
  o.ema_decay = 0.5;
  CpuBackend be(o);
  const std::vector<float> u0 = be.sn_state();
  EXPECT_EQ(u0, sn_initial_state(o.net, o.seed));
  const Tensor train1 = recipe_images(16, 4);  // kept alive: the backend holds the set, not a copy
  be.set_train_data(train1);
  be.train_step(0);
  const std::vector<float> u1 = be.sn_state();
  EXPECT_NE(u1, u0) << "a training step runs one power iteration";
  // sampling weights = eff(θ_ema, u) with u left as it is
  std::vector<float> u = u1, want(be.params().size());
  sn_apply(o.net, be.ema().data(), u.data(), false, want.data());
  EXPECT_EQ(be.sampling_params(), want);
  EXPECT_EQ(be.sn_state(), u1) << "sampling_params() does not update u";
  const Tensor x = recipe_images(3, 5);
  be.energy(x);
  Tensor y = x;
  be.sample(y, {2, 10.0f, 0.005f, 0.03f}, 1);
  be.validate(x, 0);
  EXPECT_EQ(be.sn_state(), u1) << "energy/sample/validate do not update u";
  // The power-iteration estimate σ = ‖W Wᵀu‖/‖Wᵀu‖ never exceeds the largest singular value, so the
  // normalised weights' largest singular value is at least 1; from a random u after one step, not far above.
  for (const SnLayer& l : sn_layers(o.net)) {
    std::vector<double> w(want.begin() + l.w_off, want.begin() + l.w_off + int64_t(l.rows) * l.cols);
    std::vector<double> uu(size_t(l.rows), 1.0);
    const double top = power_sigma(w, l.rows, l.cols, uu, 2000);
    EXPECT_GE(top, 1.0 - 1e-5) << "layer at " << l.w_off;
    EXPECT_LT(top, 3.0) << "layer at " << l.w_off;
  }
}

TEST(Recipe, SpectralNormGradientIsTheTransformedGradientOfTheNormalisedNet) {
  // One step with spectral norm vs a plain backend handed the same step's W_sn: the plain gradient is G =
  // dL/dW_sn (same rows, same draws), and the recipe's gradient() is G transformed (sn_backward).
  EngineOptions o = tiny_options();
  o.spectral_norm = true;
  CpuBackend sn(o);
  EngineOptions po = tiny_options();
  CpuBackend plain(po);
  const Tensor data = recipe_images(16, 6);
  sn.set_train_data(data);
  plain.set_train_data(data);
  std::vector<float> u = sn.sn_state(), w_sn(sn.params().size()), sigma(sn_layers(o.net).size()),
                     v(size_t(sn_v_size(o.net)));
  sn_apply(o.net, sn.params().data(), u.data(), true, w_sn.data(), sigma.data(), v.data());
  plain.set_params(w_sn);
  sn.train_step(0);
  plain.train_step(0);
  EXPECT_EQ(sn.sn_state(), u);
  std::vector<float> g = plain.gradient();
  sn_backward(o.net, g.data(), w_sn.data(), u.data(), sigma.data(), v.data());
  EXPECT_EQ(sn.gradient(), g);
  EXPECT_NE(plain.gradient(), g);
}
