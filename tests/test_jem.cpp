// JEM (train.objective "jem"; Grathwohl et al. 2020): the loss and its dL/df by hand and by finite differences,
// the chains' input gradients (∇x logsumexp f and ∇x f_y) by finite differences through the same templated net
// code, the CPU backend's training step against a recomputation in double, class-conditional sampling, exact
// resume, and the refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>
#include <vector>

#include "kernels/augment.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/cpu/cpu_net.hpp"
#include "engine/error.hpp"
#include "engine/loss.hpp"
#include "host/eval/eval_metrics.hpp"
#include "host/eval/jem_eval.hpp"
#include "host/eval/sampling.hpp"  // buffer_start
#include "host/io/checkpoint.hpp"
#include "host/io/dataset.hpp"
#include "host/io/safetensors.hpp"
#include "host/train/training_run.hpp"
#include "kernels/ebm_math.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;
using namespace ebm;

namespace {

double rel_err(double a, double b) { return std::fabs(a - b) / std::max(1e-3, std::fabs(a) + std::fabs(b)); }

// The JEM loss of logits f [nr + nf][K] (real rows first), as the backends compute it.
double jem_loss_value(const std::vector<double>& f, int nr, int nf, int K, const std::vector<int32_t>& y,
                      const JemWeights& w, std::vector<double>* df = nullptr) {
  std::vector<double> d(f.size());
  JemSums sums;
  jem_loss_rows(f.data(), nr, nf, K, y.data(), nr, nf, w, d.data(), sums);
  if (df) *df = d;
  return jem_metrics(sums, nr, nf, w).loss;
}

}  // namespace

// K = 2, one real row f = (0, ln 3) of class 1 and one fake row f = (0, 0); α = 0.1, both weights 1:
//   real: s = ln 4, p = (1/4, 3/4), ce = ln 4 − ln 3, argmax 1 (right); fake: s = ln 2, p = (1/2, 1/2)
//   cdiv = ln 2 − ln 4, reg = 0.1·(ln²4 + ln²2), loss = cdiv + reg + ce
//   dL/df real = (−1 + 0.2·ln 4)·p + p − (0, 1); fake = (1 + 0.2·ln 2)·p
TEST(JemLoss, HandComputedTwoClasses) {
  const std::vector<double> f{0, std::log(3.0), 0, 0};
  const JemWeights w{0.1f, 1.0f, 1.0f};
  std::vector<double> df(4);
  JemSums sums;
  jem_loss_rows(f.data(), 1, 1, 2, std::vector<int32_t>{1}.data(), 1, 1, w, df.data(), sums);
  const StepMetrics m = jem_metrics(sums, 1, 1, w);
  const double l4 = std::log(4.0), l2 = std::log(2.0), a = double(0.1f);
  EXPECT_NEAR(m.real, l4, 1e-12);
  EXPECT_NEAR(m.fake, l2, 1e-12);
  EXPECT_NEAR(m.cdiv, l2 - l4, 1e-12);
  EXPECT_NEAR(m.reg, a * (l4 * l4 + l2 * l2), 1e-12);
  EXPECT_NEAR(m.ce, std::log(4.0 / 3.0), 1e-12);
  EXPECT_EQ(m.accuracy, 1.0);
  EXPECT_NEAR(m.loss, (l2 - l4) + a * (l4 * l4 + l2 * l2) + std::log(4.0 / 3.0), 1e-12);
  const double ds_real = -1 + 2 * a * l4, ds_fake = 1 + 2 * a * l2;
  EXPECT_NEAR(df[0], ds_real * 0.25 + 0.25, 1e-12);
  EXPECT_NEAR(df[1], ds_real * 0.75 + 0.75 - 1, 1e-12);
  EXPECT_NEAR(df[2], ds_fake * 0.5, 1e-12);
  EXPECT_NEAR(df[3], ds_fake * 0.5, 1e-12);
}

// The weights scale their terms; a wrong guess counts no accuracy; large logits do not overflow.
TEST(JemLoss, WeightsAccuracyAndLargeLogits) {
  const std::vector<double> f{900, 1000, 0, 0};
  JemSums sums;
  std::vector<double> df(4);
  const JemWeights w{0.0f, 0.5f, 2.0f};
  jem_loss_rows(f.data(), 1, 1, 2, std::vector<int32_t>{0}.data(), 1, 1, w, df.data(), sums);
  const StepMetrics m = jem_metrics(sums, 1, 1, w);
  EXPECT_EQ(m.accuracy, 0.0);
  EXPECT_NEAR(m.ce, 100.0, 1e-9);          // s − f_0 = 1000 + log(1 + e^−100) − 900
  EXPECT_NEAR(m.real, 1000.0, 1e-9);
  EXPECT_NEAR(m.loss, 0.5 * (std::log(2.0) - 1000.0) + 2.0 * 100.0, 1e-9);
  for (double d : df) EXPECT_TRUE(std::isfinite(d));
  // float logits: the same, no inf
  const float ff[2] = {900.0f, 1000.0f};
  float p[2];
  EXPECT_FLOAT_EQ(logsumexp_softmax(ff, 2, p), 1000.0f);
  EXPECT_FLOAT_EQ(p[1], 1.0f);
  // NaN anywhere: NaN out, for the divergence guard
  const float fn[2] = {NAN, 1.0f};
  EXPECT_TRUE(std::isnan(logsumexp_softmax(fn, 2, p)));
}

// dL/df of the whole loss (both CD terms, the regulariser and the cross-entropy) by central differences.
TEST(JemLoss, GradientMatchesFiniteDifferences) {
  const int nr = 3, nf = 4, K = 5;
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> u(-3, 3);
  std::vector<double> f(size_t((nr + nf) * K));
  for (double& v : f) v = u(gen);
  const std::vector<int32_t> y{4, 0, 2};
  const JemWeights w{0.1f, 0.7f, 1.3f};
  std::vector<double> df;
  jem_loss_value(f, nr, nf, K, y, w, &df);
  const double h = 1e-6;
  double worst = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    std::vector<double> fp = f, fm = f;
    fp[i] += h, fm[i] -= h;
    const double num = (jem_loss_value(fp, nr, nf, K, y, w) - jem_loss_value(fm, nr, nf, K, y, w)) / (2 * h);
    worst = std::max(worst, rel_err(num, df[i]));
  }
  EXPECT_LT(worst, 1e-6);
}

// The chains' gradient: ∇x logsumexp f(x) (unconditional) and ∇x f_y(x) (class-conditional), as the backend
// forms it (chain_weights, then the net's backward), against central differences of s(x) and f_y(x).
TEST(JemSampler, InputGradientsMatchFiniteDifferences) {
  const int n = 2, K = 4;
  const NetSpec spec = NetSpec::make({3, 4}, 3, 2, 8, 1, K);
  std::mt19937 gen(11);
  std::uniform_real_distribution<double> u(-0.8, 0.8);
  std::vector<double> params(size_t(spec.num_params)), x(size_t(n * spec.image_size()));
  for (double& v : params) v = u(gen);
  for (double& v : x) v = u(gen);
  CpuNetT<double> net(spec);
  const std::vector<int32_t> classes{3, 1};
  for (const bool conditional : {false, true}) {
    const int32_t* y = conditional ? classes.data() : nullptr;
    auto value = [&](const std::vector<double>& xs) {  // Σ_i s(x_i), or Σ_i f_{y_i}(x_i)
      std::vector<double> f(size_t(n * K));
      net.forward(params.data(), xs.data(), n, f.data());
      double t = 0;
      for (int i = 0; i < n; ++i)
        t += y ? f[size_t(i * K + y[i])] : logsumexp_softmax(f.data() + i * K, K, static_cast<double*>(nullptr));
      return t;
    };
    std::vector<double> f(size_t(n * K)), w(size_t(n * K)), dx(x.size());
    net.forward(params.data(), x.data(), n, f.data());
    chain_weights(f.data(), n, K, y, w.data());
    net.backward(params.data(), w.data(), dx.data(), nullptr);
    double worst = 0;
    const double h = 1e-6;
    for (size_t i = 0; i < x.size(); ++i) {
      std::vector<double> xp = x, xm = x;
      xp[i] += h, xm[i] -= h;
      worst = std::max(worst, rel_err((value(xp) - value(xm)) / (2 * h), dx[i]));
    }
    EXPECT_LT(worst, 1e-5) << (conditional ? "conditional" : "unconditional");
  }
}

namespace {

EngineOptions jem_options(int K) {
  EngineOptions o;
  o.net = NetSpec::make({3, 4}, 3, 2, 8, 1, K);
  o.objective = Objective::kJem;
  o.batch_size = 4;
  o.sampler = {2, 5.0f, 0.01f, 0.03f};
  o.buffer_capacity = 16;
  o.buffer_initial = 8;
  o.real_noise = 0;  // the real rows are the training rows themselves, so the test can recompute the step
  o.cd_weight = 0.8;
  o.ce_weight = 1.5;
  o.seed = 5;
  return o;
}

Tensor random_rows(int n, int hw, uint64_t seed) {
  Tensor t({n, 1, hw, hw});
  std::mt19937 gen{uint32_t(seed)};
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t i = 0; i < t.numel(); ++i) t.ptr()[i] = u(gen);
  return t;
}

}  // namespace

// One training step: the gradient the backend applied is the JEM loss's over the epoch's first 4 rows (with
// their labels, in the epoch's order) and the 4 fake rows the step wrote back to the buffer, recomputed in double.
// With data.shift the real rows are the training rows moved by their stateless draws (kernels/augment.hpp).
class JemTrainStep : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(Shift, JemTrainStep, ::testing::Values(0, 2));

TEST_P(JemTrainStep, GradientIsTheJemLossGradient) {
  const int K = 3;
  EngineOptions o = jem_options(K);
  o.shift = GetParam();
  CpuBackend be(o);
  const Tensor train = random_rows(10, 8, 1);
  const std::vector<int32_t> labels{0, 1, 2, 0, 1, 2, 0, 1, 2, 1};
  be.set_train_data(train);
  be.set_train_labels(labels);
  be.begin_epoch(0);
  const std::vector<float> theta = be.params();
  be.train_step(0);
  const std::vector<float> grad = be.gradient();
  const std::vector<int64_t> perm = be.permutation();
  const Tensor buf = be.buffer();  // the initial 8, then this step's 4 fake rows
  ASSERT_EQ(buf.dim(0), 12);
  const int nr = 4, nf = 4;
  const int64_t img = o.net.image_size();
  std::vector<double> x(size_t((nr + nf) * img)), p(theta.begin(), theta.end());
  std::vector<int32_t> y;
  std::vector<float> moved(static_cast<size_t>(img), 0.0f);
  int moved_rows = 0;
  for (int i = 0; i < nr; ++i) {
    const float* row = train.ptr() + perm[size_t(i)] * img;
    if (o.shift > 0) {
      const Shift d = augment_shift(o.seed, 0, i, o.shift);
      EXPECT_LE(std::abs(d.dy), o.shift);
      EXPECT_LE(std::abs(d.dx), o.shift);
      moved_rows += d.dy != 0 || d.dx != 0;
      shift_image(row, 1, 8, 8, d.dy, d.dx, moved.data());
      row = moved.data();
    }
    for (int64_t j = 0; j < img; ++j) x[size_t(i * img + j)] = row[j];
    y.push_back(labels[size_t(perm[size_t(i)])]);
  }
  if (o.shift > 0) {
    EXPECT_GT(moved_rows, 0) << "the draws moved no row: the test would not see a missing shift";
  }
  for (int64_t j = 0; j < nf * img; ++j) x[size_t(nr * img + j)] = buf.ptr()[8 * img + j];
  CpuNetT<double> net(o.net);
  std::vector<double> f(size_t((nr + nf) * K)), df(f.size()), g(p.size());
  net.forward(p.data(), x.data(), nr + nf, f.data());
  JemSums sums;
  jem_loss_rows(f.data(), nr, nf, K, y.data(), nr, nf, JemWeights{float(o.alpha), 0.8f, 1.5f}, df.data(), sums);
  net.backward(p.data(), df.data(), nullptr, g.data());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) scale = std::max(scale, std::fabs(g[i]));
  for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::fabs(g[i] - double(grad[i])));
  EXPECT_LT(worst, 1e-4 * scale) << "largest |gradient| " << scale;
  const StepMetrics m = be.drain_metrics().at(0);
  const StepMetrics want = jem_metrics(sums, nr, nf, JemWeights{float(o.alpha), 0.8f, 1.5f});
  EXPECT_NEAR(m.ce, want.ce, 1e-5);
  EXPECT_NEAR(m.accuracy, want.accuracy, 1e-12);
  EXPECT_NEAR(m.loss, want.loss, 1e-5);
}

// A class-conditional chain of one noiseless step moves x by the clipped step along ∇x f_y(x); the
// unconditional one along ∇x logsumexp f(x). Classes out of range, or for a one-output net, are refused.
TEST(JemBackend, ClassConditionalSamplingDescendsTheClassEnergy) {
  const int K = 3;
  EngineOptions o = jem_options(K);
  CpuBackend be(o);
  const Tensor x0 = random_rows(3, 8, 9);
  const std::vector<int32_t> classes{2, 0, 1};
  const SamplerParams sp{1, 0.5f, 0.0f, 0.03f};
  const std::vector<float> theta = be.sampling_params();
  CpuNetT<double> net(o.net);
  Tensor after_conditional, after_unconditional;
  for (const bool conditional : {false, true}) {
    Tensor x = x0;
    be.sample(x, sp, 3, 0, nullptr, conditional ? &classes : nullptr);
    std::vector<double> p(theta.begin(), theta.end()), xd(x0.ptr(), x0.ptr() + x0.numel()), f(size_t(3 * K)),
        w(f.size()), dx(xd.size());
    net.forward(p.data(), xd.data(), 3, f.data());
    chain_weights(f.data(), 3, K, conditional ? classes.data() : nullptr, w.data());
    net.backward(p.data(), w.data(), dx.data(), nullptr);
    for (size_t i = 0; i < dx.size(); ++i)
      ASSERT_NEAR(x.ptr()[i], langevin_descend(x0.ptr()[i], float(dx[i]), 0.5f, 0.03f), 1e-6) << i;
    (conditional ? after_conditional : after_unconditional) = x;
  }
  EXPECT_NE(after_conditional.data, after_unconditional.data) << "the classes must change the chains";
  Tensor x = x0;
  const std::vector<int32_t> bad{0, 3, 1};
  test::expect_user_error([&] { be.sample(x, sp, 3, 0, nullptr, &bad); }, {"class of chain 1 is 3", "0 to 2"});
  EngineOptions one = o;
  one.net = NetSpec::make({3, 4}, 3, 2, 8, 1, 1);
  one.objective = Objective::kCd;
  CpuBackend be1(one);
  test::expect_user_error([&] { be1.sample(x, sp, 3, 0, nullptr, &classes); }, {"class-conditional", "model.outputs = 1"});
}

// buffer.per_class: K rings. Ring k holds only images of the constant value k/10 (set_class_buffer); with no fresh
// rows and chains of 0 steps a training step draws rows from their class's ring and writes them back unchanged, so
// every ring must still hold only its own value, and have grown by the rows drawn for its class. With one noiseless
// Langevin step, each row written back must be sample()'s one-step chain from its ring's image under its class's
// energy −f_y (the weights before the step's Adam update), which differs between classes.
namespace {
EngineOptions class_buffer_options(int K, int steps) {
  EngineOptions o = jem_options(K);
  o.buffer_per_class = true;
  o.batch_size = 12;
  o.buffer_capacity = 20 * K;
  o.buffer_initial = K;
  o.reinit_prob = 0;
  o.sampler = {steps, 0.5f, 0.0f, 0.03f};
  return o;
}

Tensor constant_rings(int K, int per_ring, int64_t img, std::vector<int32_t>& classes) {
  Tensor t({K * per_ring, 1, 8, 8});
  classes.clear();
  for (int k = 0; k < K; ++k)
    for (int i = 0; i < per_ring; ++i) {
      std::fill_n(t.ptr() + (k * per_ring + i) * img, img, 0.1f * float(k));
      classes.push_back(k);
    }
  return t;
}
}  // namespace

TEST(JemClassBuffer, RowsComeFromAndGoBackToTheirClassesRing) {
  const int K = 3;
  CpuBackend be(class_buffer_options(K, 0));
  const int64_t img = be.options().net.image_size();
  std::vector<int32_t> classes = be.buffer_classes();
  EXPECT_EQ(classes, (std::vector<int32_t>{0, 1, 2})) << "the initial images go to the rings in turn";
  const Tensor start = constant_rings(K, 2, img, classes);
  be.set_class_buffer(start, classes);
  const Tensor train = random_rows(12, 8, 1);  // set_train_data keeps a pointer: it must outlive training
  be.set_train_data(train);
  be.set_train_labels(std::vector<int32_t>(12, 1));
  be.begin_epoch(0);
  std::vector<int> before(K, 2);
  for (int step = 0; step < 2; ++step) {
    be.train_step(0);
    const Tensor buf = be.buffer();
    const std::vector<int32_t> y = be.buffer_classes();
    ASSERT_EQ(int64_t(y.size()), buf.dim(0));
    ASSERT_EQ(buf.dim(0), 6 + 12 * (step + 1)) << "every row goes back (no ring is full yet)";
    std::vector<int> count(K, 0);
    for (size_t i = 0; i < y.size(); ++i) {
      ++count[size_t(y[i])];
      for (int64_t j = 0; j < img; ++j)
        ASSERT_EQ(buf.ptr()[int64_t(i) * img + j], 0.1f * float(y[i])) << "image " << i << " in ring " << y[i];
      if (i > 0) {
        ASSERT_LE(y[i - 1], y[i]) << "buffer() lists ring 0's images, then ring 1's, ...";
      }
    }
    int grown = 0;
    for (int k = 0; k < K; ++k) grown += count[size_t(k)] > before[size_t(k)];
    EXPECT_GE(grown, 2) << "12 rows drawn uniformly over 3 classes went to one ring";
    before = count;
  }
}

TEST(JemClassBuffer, EachChainRunsOnItsClassesEnergy) {
  const int K = 3;
  const EngineOptions o = class_buffer_options(K, 1);
  CpuBackend be(o);
  const int64_t img = o.net.image_size();
  std::vector<int32_t> classes;
  be.set_class_buffer(constant_rings(K, 1, img, classes), classes);
  // What one noiseless step from ring k's image gives under −f_k, with the weights the step's chains use.
  std::vector<Tensor> want;
  for (int k = 0; k < K; ++k) {
    Tensor x({1, 1, 8, 8});
    std::fill_n(x.ptr(), img, 0.1f * float(k));
    const std::vector<int32_t> y{k};
    be.sample(x, o.sampler, 1, 0, nullptr, &y);
    want.push_back(x);
  }
  Tensor other({1, 1, 8, 8});  // ring 1's image under class 0's energy: the class must matter
  std::fill_n(other.ptr(), img, 0.1f);
  const std::vector<int32_t> zero{0};
  be.sample(other, o.sampler, 1, 0, nullptr, &zero);
  ASSERT_NE(other.data, want[1].data) << "classes 0 and 1 move the same image alike: the test would not see a mix-up";
  const Tensor train = random_rows(12, 8, 1);  // set_train_data keeps a pointer: it must outlive training
  be.set_train_data(train);
  be.set_train_labels(std::vector<int32_t>(12, 2));
  be.begin_epoch(0);
  be.train_step(0);
  const Tensor buf = be.buffer();
  const std::vector<int32_t> y = be.buffer_classes();
  ASSERT_EQ(buf.dim(0), 3 + 12);
  int moved = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const bool initial = i == 0 || y[i - 1] != y[i];  // each ring's oldest: its initial image
    if (initial) continue;
    const std::vector<float> row(buf.ptr() + int64_t(i) * img, buf.ptr() + int64_t(i + 1) * img);
    EXPECT_EQ(row, want[size_t(y[i])].data) << "row " << i << " of ring " << y[i];
    ++moved;
  }
  EXPECT_EQ(moved, 12);
}

TEST(JemClassBuffer, WhatCannotHoldAClassPerRingIsRefused) {
  EngineOptions o = class_buffer_options(3, 0);
  o.buffer_initial = 2;
  test::expect_user_error([&] { CpuBackend be(o); }, {"buffer.initial (2)", "one image per class (3)"});
  o = class_buffer_options(3, 0);
  o.objective = Objective::kCd;
  o.net = NetSpec::make({3, 4}, 3, 2, 8, 1, 1);
  test::expect_user_error([&] { CpuBackend be(o); }, {"buffer.per_class", "jem"});
  o = class_buffer_options(3, 0);
  o.buffer_capacity = 31;  // rings of 11, 10 and 10 images (the first takes the remainder)
  CpuBackend be(o);
  const int64_t img = be.options().net.image_size();
  std::vector<int32_t> classes;
  const Tensor t = constant_rings(3, 1, img, classes);
  test::expect_user_error([&] { be.set_buffer(t); }, {"buffer.per_class", "classes"});
  test::expect_user_error([&] { be.set_class_buffer(t, {0, 1, 3}); }, {"class 3", "[0, 3)"});
  test::expect_user_error([&] { be.set_class_buffer(t, {0, 0, 1}); }, {"class 2 holds no image"});
  test::expect_user_error([&] { be.set_class_buffer(t, {0, 1}); }, {"holds 3 images but 2 classes"});
  const Tensor many = constant_rings(3, 11, img, classes);  // ring 0 holds 11, rings 1 and 2 hold 10
  test::expect_user_error([&] { be.set_class_buffer(many, classes); }, {"class 1 holds more than its ring's 10"});
  CpuBackend one_ring(jem_options(3));
  test::expect_user_error([&] { one_ring.set_class_buffer(t, {0, 1, 2}); }, {"buffer.per_class is false"});
}

// The objective and the head must agree, and JEM needs labels in range.
TEST(JemBackend, ObjectiveHeadAndLabelsAreChecked) {
  EngineOptions cd_k = jem_options(3);
  cd_k.objective = Objective::kCd;
  CpuBackend a(cd_k);
  const Tensor train = random_rows(8, 8, 2);
  a.set_train_data(train);
  a.begin_epoch(0);
  test::expect_user_error([&] { a.train_step(0); }, {"train.objective \"cd\"", "model.outputs is 3", "\"jem\""});
  EngineOptions jem1 = jem_options(3);
  jem1.net = NetSpec::make({3, 4}, 3, 2, 8, 1, 1);
  CpuBackend b(jem1);
  b.set_train_data(train);
  b.begin_epoch(0);
  test::expect_user_error([&] { b.train_step(0); }, {"train.objective \"jem\"", "model.outputs is 1"});
  CpuBackend c(jem_options(3));
  c.set_train_data(train);
  test::expect_user_error([&] { c.set_train_labels({0, 1, 2, 3, 0, 1, 2, 0}); }, {"training label 3 is 3", "0 to 2"});
  c.begin_epoch(0);
  test::expect_user_error([&] { c.train_step(0); }, {"jem", "no labels"});
}

namespace {

class JemRunTest : public ::testing::Test {
 protected:
  JemRunTest() { test::write_glyph_dataset(root_ / "data", 40, 20, 3); }
  Config config(const std::string& out) const {
    Config c;
    c.output_dir = (root_ / out).string();
    c.data.dir = (root_ / "data").string();
    c.data.batch_size = 16;
    c.model.channels = {4, 8};
    c.model.outputs = 10;
    c.data.shift = 1;  // the resume test covers the augmentation's stateless draws too
    c.train.objective = "jem";
    c.train.ce_weight = 1.0;
    c.sampler.steps = 3;
    c.buffer.capacity = 64;
    c.buffer.initial = 16;
    c.train.epochs = 3;
    c.train.log_every = 1;
    c.generate.n = 4;
    c.generate.steps = 3;
    c.backend = "cpu";
    return c;
  }
  int run(const Config& c, const std::string& resume = "") {
    TrainRunOptions o;
    o.config = c;
    if (!resume.empty()) o.resume = resume;
    ::testing::internal::CaptureStdout();
    int code = -1;
    try {
      code = run_training(o);
    } catch (...) {
      log_ = ::testing::internal::GetCapturedStdout();
      throw;
    }
    log_ = ::testing::internal::GetCapturedStdout();
    return code;
  }
  test::TempDir tmp_{"ebm_jem"};
  const fs::path& root_ = tmp_.path;
  std::string log_;
};

}  // namespace

TEST_F(JemRunTest, ResumeIsBitExactAndTheLogShowsCrossEntropyAndAccuracy) {
  Config straight = config("straight");
  straight.train.max_steps = 5;
  ASSERT_EQ(run(straight), 0);
  EXPECT_NE(log_.find(" - ce: "), std::string::npos) << log_;
  EXPECT_NE(log_.find(" - acc: "), std::string::npos) << log_;
  const std::string metrics = test::slurp(root_ / "straight/metrics.jsonl");
  EXPECT_NE(metrics.find("\"ce\":"), std::string::npos);
  EXPECT_NE(metrics.find("\"accuracy\":"), std::string::npos);
  Config part = config("parts");
  part.train.max_steps = 2;
  ASSERT_EQ(run(part), 0);
  part.train.max_steps = 5;  // 3 steps per epoch: the resumed part crosses into epoch 2
  ASSERT_EQ(run(part, (root_ / "parts/last").string()), 0);
  for (const char* f : {"last/model.safetensors", "last/train_state.safetensors", "epoch_1/model.safetensors"})
    EXPECT_EQ(test::slurp(root_ / "straight" / f), test::slurp(root_ / "parts" / f)) << f;
  // the epoch's ce and accuracy sums are in the checkpoint (8 sums), so the resumed epoch's means are whole
  const TrainState s = load_train_state((root_ / "parts/last").string(), net_spec_for(part));
  EXPECT_GT(s.epoch_sums[kSumCe], 0.0);
}

// buffer.per_class through the run: the rings and their classes are in the checkpoint, a resume continues them bit
// for bit, and ebm_sample's --init buffer reads them back (buffer_start: class Y's chains from ring Y, newest first).
TEST_F(JemRunTest, APerClassBufferResumesExactlyAndGivesEachClassItsOwnStarts) {
  Config straight = config("straight");
  straight.buffer.per_class = true;
  straight.train.max_steps = 5;
  ASSERT_EQ(run(straight), 0);
  Config part = straight;
  part.output_dir = (root_ / "parts").string();
  part.train.max_steps = 2;
  ASSERT_EQ(run(part), 0);
  part.train.max_steps = 5;
  ASSERT_EQ(run(part, (root_ / "parts/last").string()), 0);
  for (const char* f : {"last/model.safetensors", "last/train_state.safetensors"})
    EXPECT_EQ(test::slurp(root_ / "straight" / f), test::slurp(root_ / "parts" / f)) << f;
  const NetSpec net = net_spec_for(straight);
  const ReplayBufferImages b = read_replay_buffer((root_ / "straight/last").string(), net);
  ASSERT_EQ(int64_t(b.classes.size()), b.images.dim(0));
  EXPECT_GT(b.images.dim(0), 16) << "16 initial images, then 5 steps of 16 rows";
  EXPECT_LE(b.images.dim(0), 64) << "buffer.capacity 64: rings of 7 (classes 0-3) and 6 images";
  std::vector<int> count(10, 0);
  for (int32_t y : b.classes) ++count[size_t(y)];
  for (int k = 0; k < 10; ++k) EXPECT_GE(count[size_t(k)], 1) << "class " << k << " has no image";
  // class 7's chains start from ring 7's newest images, newest first
  const int64_t img = net.image_size();
  int64_t newest = -1, second = -1;
  for (int64_t i = 0; i < int64_t(b.classes.size()); ++i)
    if (b.classes[size_t(i)] == 7) second = newest, newest = i;
  ASSERT_GE(second, 0) << "ring 7 holds fewer than 2 images";
  const Tensor x = buffer_start(b, 2, {7, 7}, 10, "run");
  EXPECT_TRUE(std::equal(x.ptr(), x.ptr() + img, b.images.ptr() + newest * img));
  EXPECT_TRUE(std::equal(x.ptr() + img, x.ptr() + 2 * img, b.images.ptr() + second * img));
  test::expect_user_error([&] { buffer_start(b, 2 * count[3] + 2, std::vector<int32_t>(size_t(2 * count[3] + 2), 3), 10, "run"); },
                          {"chains of class 3", "its ring in the replay buffer of run holds"});
  // a run without per-class rings: the newest n images of the whole buffer
  const ReplayBufferImages one = read_replay_buffer((root_ / "straight/last").string(), net);
  ReplayBufferImages plain{one.images, {}};
  const Tensor last2 = buffer_start(plain, 2, {}, 10, "run");  // newest first
  const int64_t held = plain.images.dim(0);
  EXPECT_TRUE(std::equal(last2.ptr(), last2.ptr() + img, plain.images.ptr() + (held - 1) * img));
  EXPECT_TRUE(std::equal(last2.ptr() + img, last2.ptr() + 2 * img, plain.images.ptr() + (held - 2) * img));
  // to measure the buffer: every class in turn, going round a ring that holds fewer than its share
  std::vector<int32_t> probe_classes;
  const Tensor probe = newest_buffer_rows(b, 10 * (count[0] + 1), 10, probe_classes);
  ASSERT_EQ(probe.dim(0), 10 * (count[0] + 1));
  EXPECT_EQ(probe_classes, conditional_classes(10 * (count[0] + 1), 10));
  int64_t first0 = -1;  // ring 0's newest, and again after going round it
  for (int64_t i = 0; i < int64_t(b.classes.size()); ++i)
    if (b.classes[size_t(i)] == 0) first0 = i;
  EXPECT_TRUE(std::equal(probe.ptr(), probe.ptr() + img, b.images.ptr() + first0 * img));
  EXPECT_TRUE(std::equal(probe.ptr() + count[0] * img, probe.ptr() + (count[0] + 1) * img, b.images.ptr() + first0 * img));
  test::expect_user_error([&] { buffer_start(plain, int(plain.images.dim(0)) + 1, {}, 10, "run"); },
                          {"replay buffer of run holds"});
  // a damaged buffer.classes is refused before the run writes anything
  {
    SafeTensors st = SafeTensors::load((root_ / "parts/last/train_state.safetensors").string());
    std::vector<int32_t> bad = st.get_i32("buffer.classes");
    bad[0] = 10;
    st.put_i32("buffer.classes", {int64_t(bad.size())}, bad.data());
    fs::create_directories(root_ / "damaged");
    fs::copy(root_ / "parts/last", root_ / "damaged/last");
    st.save((root_ / "damaged/last/train_state.safetensors").string());
    Config more = part;
    more.output_dir = (root_ / "damaged").string();
    more.train.max_steps = 6;
    const auto before = fs::last_write_time(root_ / "damaged/last/config.json");
    test::expect_user_error([&] { run(more, (root_ / "damaged/last").string()); },
                            {"train_state.safetensors", "holds class 10, outside [0, 10)"});
    EXPECT_EQ(fs::last_write_time(root_ / "damaged/last/config.json"), before) << "written before the check";
  }
  // the setting cannot change on resume: the rings are the run's state
  Config flip = part;
  flip.buffer.per_class = false;
  flip.train.max_steps = 6;
  test::expect_user_error([&] { run(flip, (root_ / "parts/last").string()); }, {"buffer.per_class"});
}

TEST_F(JemRunTest, AMismatchedHeadOrMissingLabelsAreRefusedBeforeAnythingIsWritten) {
  Config cd10 = config("cd10");
  cd10.train.objective = "cd";
  test::expect_user_error([&] { run(cd10); }, {"train.objective \"cd\"", "model.outputs is 10"});
  EXPECT_FALSE(fs::exists(root_ / "cd10"));
  fs::remove(root_ / "data/train-labels-idx1-ubyte.gz");
  fs::remove(root_ / "data/train-labels-idx1-ubyte");
  Config nolabels = config("nolabels");
  test::expect_user_error([&] { run(nolabels); }, {"train.objective \"jem\"", "train-labels-idx1-ubyte"});
  EXPECT_FALSE(fs::exists(root_ / "nolabels"));
}

// train.eval of a JEM run: the epoch line and the "eval" record hold the model's test accuracy and ECE and, with
// train.eval.ood, the three AUROCs, each in [0, 1]; the accuracy is the one ebm_eval's jem_report gives the
// checkpoint's weights.
TEST_F(JemRunTest, TrainEvalMeasuresTheModelAsAClassifierAndAgainstTheOodSet) {
  test::write_glyph_dataset(root_ / "ood", 10, 30, 9);
  Config c = config("eval");
  c.train.eval.every = 1;
  c.train.eval.n = 20;
  c.train.eval.ood = (root_ / "ood").string();
  c.train.epochs = 2;
  TrainRunOptions o;
  o.config = c;
  o.classifier.channels = {4, 8};
  o.classifier.images = 320;
  o.classifier.batch = 32;
  ::testing::internal::CaptureStdout();
  const int code = run_training(o);
  const std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(test::count(out, " - test_acc: "), 2u) << out;
  EXPECT_EQ(test::count(out, " - AUROC energy/max_prob/grad_norm: "), 2u) << out;
  std::istringstream log(test::slurp(root_ / "eval/metrics.jsonl"));
  nlohmann::json last;
  int evals = 0;
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] != "eval") continue;
    ++evals, last = j;
    for (const char* k : {"test_accuracy", "mean_confidence", "ece", "ece_se", "auroc_energy", "auroc_max_prob",
                          "auroc_grad_norm"}) {
      ASSERT_TRUE(j.contains(k)) << k << " " << line;
      EXPECT_GE(j[k].get<double>(), 0.0) << k;
      EXPECT_LE(j[k].get<double>(), 1.0) << k;
    }
    EXPECT_EQ(j["n_test"], 20);
    EXPECT_EQ(j["n_ood"], 30);
  }
  EXPECT_EQ(evals, 2);
  const Model m = load_model((root_ / "eval/last").string());
  EngineOptions eo = engine_options_for(m.config);
  eo.buffer_capacity = eo.buffer_initial = 16;
  CpuBackend be(eo);
  be.set_params(m.params);
  const Dataset d = load_dataset(m.config.data);
  EXPECT_DOUBLE_EQ(jem_report(be, d.test, d.test_labels, nullptr, "").accuracy, last["test_accuracy"].get<double>());
  // a missing OOD folder is refused before the run writes anything
  c.output_dir = (root_ / "eval2").string();
  c.train.eval.ood = (root_ / "nowhere").string();
  o.config = c;
  test::expect_user_error([&] { run_training(o); }, {"train.eval.ood", "nowhere", "get_data.sh"});
  EXPECT_FALSE(fs::exists(root_ / "eval2"));
}

// shift_image by hand: a 3x3 image moved down 1 and left 1; what comes in from outside is −1.
TEST(Augment, ShiftImageByHandAndDrawsInRange) {
  const float img[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  float out[9];
  shift_image(img, 1, 3, 3, 1, -1, out);
  const float want[9] = {-1, -1, -1, 2, 3, -1, 5, 6, -1};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(out[i], want[i]) << i;
  int seen[5][5] = {};
  for (int row = 0; row < 2000; ++row) {
    const Shift d = augment_shift(7, 3, row, 2);
    ASSERT_TRUE(d.dy >= -2 && d.dy <= 2 && d.dx >= -2 && d.dx <= 2);
    seen[d.dy + 2][d.dx + 2]++;
    const Shift again = augment_shift(7, 3, row, 2);
    EXPECT_TRUE(again.dy == d.dy && again.dx == d.dx);
  }
  for (auto& r : seen)
    for (int c : r) EXPECT_GT(c, 40) << "every one of the 25 shifts drawn (2000 draws, 80 expected each)";
}

// ECE by hand, 15 bins ((b−1)/15, b/15]: confidences 0.05 (wrong), 0.5 and 0.5 (one right), 1.0 (right), 0 (wrong):
//   bin 1 holds 0.05 and 0 (exactly 0 goes to the first): |0 − 0.05| = 0.05; bin 8 holds 0.5, 0.5: |1 − 1.0| = 0;
//   bin 15 holds 1.0: |1 − 1| = 0. ECE = 0.05 / 5 = 0.01. All right at confidence 0.9: |5 − 4.5| / 5 = 0.1.
TEST(JemEval, ExpectedCalibrationErrorByHand) {
  EXPECT_NEAR(expected_calibration_error({0.05f, 0.5f, 0.5f, 1.0f, 0.0f}, {0, 1, 0, 1, 0}, 15), 0.01, 1e-7);
  EXPECT_NEAR(expected_calibration_error(std::vector<float>(5, 0.9f), std::vector<uint8_t>(5, 1), 15), 0.1, 1e-6);
  EXPECT_NEAR(expected_calibration_error({0.7f, 0.7f}, {1, 1}, 1), 0.3, 1e-6);  // one bin: |accuracy − mean confidence|
  test::expect_user_error([] { expected_calibration_error({1.5f}, {1}, 15); }, {"confidence of row 0", "1.5"});
  test::expect_user_error([] { expected_calibration_error({}, {}, 15); }, {"ECE needs"});
}

// The ECE's bootstrap standard error, where the resampled ECEs' spread is known:
//   - identical rows: every resample is the set itself, so 0;
//   - two rows at confidence 1, one right and one wrong: a resample's ECE is 1 − its accuracy, 0, ½ or 1 with
//     probabilities ¼, ½, ¼: standard deviation √(¼·¼ + ¼·¼) = 0.35355;
//   - n = 2,000 rows at confidence 1, 98% right: ECE = 1 − accuracy, and the resampled accuracy is Binomial(n, 0.98)/n,
//     standard deviation √(0.98·0.02/n) = 0.0031305.
// (1,000 resamples estimate a standard deviation to about 2%.)
TEST(JemEval, ExpectedCalibrationErrorBootstrapStandardError) {
  EXPECT_EQ(ece_bootstrap_se(std::vector<float>(7, 0.9f), std::vector<uint8_t>(7, 1)), 0.0);
  EXPECT_NEAR(ece_bootstrap_se({1.0f, 1.0f}, {1, 0}), 0.35355, 0.015);
  const int n = 2000;
  std::vector<uint8_t> right(size_t(n), 1);
  for (int i = 0; i < n; i += 50) right[size_t(i)] = 0;  // 2% wrong
  const std::vector<float> sure(size_t(n), 1.0f);
  EXPECT_NEAR(expected_calibration_error(sure, right), 0.02, 1e-12);
  const double se = ece_bootstrap_se(sure, right);
  EXPECT_NEAR(se, std::sqrt(0.98 * 0.02 / n), 0.0002);
  EXPECT_EQ(se, ece_bootstrap_se(sure, right)) << "a fixed seed: the same figure every run";
  test::expect_user_error([] { ece_bootstrap_se({0.5f}, {1}, 15, 1); }, {"at least 2 resamples", "1"});
  test::expect_user_error([] { ece_bootstrap_se({}, {}); }, {"ECE needs"});
}

// The paired standard error of ECE(a) − ECE(b) (n = 2,000 rows at confidence 1, so ECE = 1 − accuracy):
//   - a and b wrong on the same 2% of rows: every resample's difference is 0, so 0 — where each alone has 0.0031;
//   - b always right: the difference is a's ECE, with a's standard error √(0.98·0.02/n);
//   - a wrong on rows i % 50 == 0, b on i % 50 == 1: a row adds +1/n, −1/n or 0 to the difference, with probabilities
//     0.02, 0.02 and 0.96, so the standard error is √(0.04/n) = 0.0044721;
//   - b's rows fewer than a's: refused in one line.
TEST(JemEval, ExpectedCalibrationErrorDifferencePairedStandardError) {
  const int n = 2000;
  const std::vector<float> sure(size_t(n), 1.0f);
  std::vector<uint8_t> a(size_t(n), 1), b(size_t(n), 1), all(size_t(n), 1);
  for (int i = 0; i < n; i += 50) a[size_t(i)] = 0, b[size_t(i) + 1] = 0;
  EXPECT_EQ(ece_difference_bootstrap_se(sure, a, sure, a), 0.0);
  EXPECT_GT(ece_bootstrap_se(sure, a), 0.003);
  EXPECT_NEAR(ece_difference_bootstrap_se(sure, a, sure, all), std::sqrt(0.98 * 0.02 / n), 0.0002);
  EXPECT_NEAR(ece_difference_bootstrap_se(sure, a, sure, b), std::sqrt(0.04 / n), 0.0003);
  test::expect_user_error([&] { ece_difference_bootstrap_se(sure, a, {1.0f}, {1}); }, {"same rows", "2000", "1"});
}

TEST(JemEval, ConditionalClassesAndAgreement) {
  const std::vector<int32_t> y = conditional_classes(20, 10);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(y[size_t(i)], i / 2);
  const std::vector<int32_t> uneven = conditional_classes(7, 3);  // ⌊i·3/7⌋: 0 0 0 1 1 2 2
  EXPECT_EQ(uneven, (std::vector<int32_t>{0, 0, 0, 1, 1, 2, 2}));
  const std::vector<double> a = class_agreement({0, 1, 1, 1, 2, 0}, {0, 0, 1, 1, 2, 2}, 4);
  EXPECT_NEAR(a[0], 4.0 / 6, 1e-12);
  EXPECT_EQ(a[1], 0.5);
  EXPECT_EQ(a[2], 1.0);
  EXPECT_EQ(a[3], 0.5);
  EXPECT_TRUE(std::isnan(a[4])) << "a class never asked for";
}

// The three OOD scores are oriented so that higher = more unfamiliar: a model whose "unfamiliar" images have higher
// energy, lower confidence and larger input gradients scores AUROC 1 on all three, and swapping the sets gives 0.
// The net is the identity-like one-layer net below: its logits scale with the image's brightness.
TEST(JemEval, AurocsAreOrientedHigherMeansUnfamiliar) {
  EngineOptions o;
  o.net = NetSpec::make({2}, 1, 1, 4, 1, 2);
  o.batch_size = 8;
  o.buffer_capacity = o.buffer_initial = 8;
  CpuBackend be(o);
  // conv 1x1 with weights (1, −1) and no bias, swish, then dense from 2·4·4 to 2 logits, the features in [channel][pixel]
  // order, so row 0's weights at 2j are pixels 0, 2, …, 14 of both channels: f_0 = Σ over them of swish(x) + swish(−x)
  // = x·tanh(x/2) > 0 (≈ 3.3 on bright images, ≈ 0.25 on dark ones), f_1 = 0.
  std::vector<float> p(size_t(o.net.num_params), 0.0f);
  p[size_t(o.net.convs[0].w_off)] = 1.0f;
  p[size_t(o.net.convs[0].w_off) + 1] = -1.0f;
  for (int j = 0; j < 16; ++j) p[size_t(o.net.dense_w_off) + size_t(j * 2)] = 1.0f;  // [K=2][D=32]: row 0
  be.set_params(p);
  // familiar: bright images (f_0 large: low energy, confident, flat swish so small gradients); unfamiliar: dark ones
  Tensor in({4, 1, 4, 4}), out({4, 1, 4, 4});
  for (int64_t i = 0; i < in.numel(); ++i) in.ptr()[i] = 0.9f + 0.02f * float(i % 5);
  for (int64_t i = 0; i < out.numel(); ++i) out.ptr()[i] = -0.3f + 0.05f * float(i % 3);
  const std::vector<uint8_t> labels(4, 0);
  const JemReport r = jem_report(be, in, labels, &out, "dark");
  EXPECT_EQ(r.accuracy, 1.0);
  EXPECT_NEAR(r.ece, 1.0 - r.mean_confidence, 1e-12) << "all right: ECE = accuracy − mean confidence, whatever the bins";
  EXPECT_EQ(r.auroc_energy, 1.0);
  EXPECT_EQ(r.auroc_max_prob, 1.0);
  // the dark images labelled 1: still class 0 to the net (f_0 > 0 = f_1, nearer the boundary), so all wrong
  const JemReport swapped = jem_report(be, out, std::vector<uint8_t>(4, 1), &in, "bright");
  EXPECT_EQ(swapped.accuracy, 0.0);
  EXPECT_GT(swapped.mean_confidence, 0.5);
  EXPECT_LT(swapped.mean_confidence, r.mean_confidence) << "dark images sit nearer the boundary f_0 = f_1";
  EXPECT_NEAR(swapped.ece, swapped.mean_confidence, 1e-12) << "all wrong: ECE = mean confidence − 0";
  EXPECT_EQ(swapped.auroc_energy, 0.0);
  EXPECT_EQ(swapped.auroc_max_prob, 0.0);
  EXPECT_EQ(r.auroc_grad_norm + swapped.auroc_grad_norm, 1.0) << "the gradient-norm score flips with the sets";
}
