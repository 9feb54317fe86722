// The CPU backend end to end on small nets: the sampler against the unit-tested update, determinism,
// the partial last batch, and one training step computed by hand.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.hpp"
#include "kernels/ebm_math.hpp"
#include "tests/test_support.hpp"

using namespace ebm;

namespace {

using test::random_images;

EngineOptions small_options(int batch = 4) {
  EngineOptions o;
  o.net = NetSpec::make({4, 8}, 3, 2, 8);
  o.seed = 11;
  o.batch_size = batch;
  o.sampler = {5, 10.0f, 0.005f, 0.03f};
  o.buffer_capacity = 32;
  o.buffer_initial = batch;
  return o;
}


}  // namespace

TEST(CpuBackend, LangevinStepWithoutNoiseIsTheUnitTestedUpdate) {
  CpuBackend be(small_options());
  Tensor x = random_images(3, 8, 1);
  std::vector<float> f;
  Tensor dfdx;
  be.input_grad(x, f, dfdx);
  Tensor expect = x;
  for (int64_t i = 0; i < x.numel(); ++i) expect.data[i] = langevin_descend(x.data[i], dfdx.data[i], 10.0f, 0.03f);
  be.sample(x, {1, 10.0f, 0.0f, 0.03f}, 99);
  // 1e-6: the compiler may fuse x − step·g into one FMA in the vectorised loop and not in this one.
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_NEAR(x.data[i], expect.data[i], 1e-6);
}

TEST(CpuBackend, SameSeedSameRunDifferentSeedDifferentRun) {
  Tensor data = random_images(10, 8, 2);
  auto run = [&](uint64_t seed) {
    EngineOptions o = small_options();
    o.seed = seed;
    CpuBackend be(o);
    be.set_train_data(data);
    for (int e = 0; e < 2; ++e) {
      be.begin_epoch(e);
      for (int64_t b = 0; b < be.batches_per_epoch(); ++b) be.train_step(b);
    }
    return std::make_pair(be.params(), be.buffer().data);
  };
  const auto a = run(11), b = run(11), c = run(12);
  EXPECT_EQ(a.first, b.first);
  EXPECT_EQ(a.second, b.second);
  EXPECT_NE(a.first, c.first);
}

TEST(CpuBackend, PartialLastBatchKeepsRealAndFakeApart) {
  // 10 identical images, batch 4: batches of 4, 4 and 2 real rows; the fake batch is always 4.
  EngineOptions o = small_options(4);
  o.real_noise = 0.0;
  CpuBackend be(o);
  Tensor one = random_images(1, 8, 3);
  Tensor data({10, 1, 8, 8});
  for (int i = 0; i < 10; ++i) std::copy(one.data.begin(), one.data.end(), data.data.begin() + i * 64);
  be.set_train_data(data);
  be.begin_epoch(0);
  ASSERT_EQ(be.batches_per_epoch(), 3);
  be.train_step(0);
  be.train_step(1);
  be.drain_metrics();
  const float f_real = be.energy(one)[0];  // the parameters the last step will see
  be.train_step(2);
  const auto m = be.drain_metrics();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_FLOAT_EQ(float(m[0].real), f_real) << "the 2 real rows alone make the real mean";
  EXPECT_NE(m[0].fake, m[0].real);
  EXPECT_EQ(be.buffer().dim(0), 4 + 3 * 4) << "every step writes a full fake batch back";
}

TEST(CpuBackend, TrainStepByHandOnAConstantNet) {
  // All weights zero and dense bias b: f ≡ b for every image, so
  //   real = fake = b, cdiv = 0, reg = α·2b², and only the dense bias has a gradient:
  //   ∂L/∂b = mean(−1 + 2αb) + mean(1 + 2αb) = 4αb.
  EngineOptions o = small_options(4);
  CpuBackend be(o);
  std::vector<float> p(o.net.num_params, 0.0f);
  const float b = 0.5f;
  p[o.net.dense_b_off] = b;
  be.set_params(p);
  Tensor data = random_images(4, 8, 4);
  be.set_train_data(data);
  be.begin_epoch(0);
  be.train_step(0);
  const auto m = be.drain_metrics();
  EXPECT_FLOAT_EQ(float(m[0].real), b);
  EXPECT_FLOAT_EQ(float(m[0].fake), b);
  EXPECT_NEAR(m[0].cdiv, 0.0, 1e-7);
  EXPECT_NEAR(m[0].reg, 0.1 * 2 * b * b, 1e-7);
  EXPECT_NEAR(m[0].loss, 0.05, 1e-7);
  const std::vector<float> q = be.params();
  const double g = 4 * 0.1 * b, lr_t = 1e-4 * std::sqrt(1 - 0.999) / (1 - 0.9);
  const double step = lr_t * (0.1 * g) / (std::sqrt(0.001 * g * g) + 1e-7);
  EXPECT_NEAR(q[o.net.dense_b_off], b - step, 1e-7);
  for (int64_t i = 0; i < o.net.num_params; ++i) {
    if (i != o.net.dense_b_off) {
      ASSERT_EQ(q[i], 0.0f) << i;
    }
  }
  EXPECT_EQ(be.adam().t, 1);
}

TEST(CpuBackend, EpochVisitsEveryImageOnceInAnOrderThatChanges) {
  // 1x1 images holding 0.05·index and a net with f = swish(x): the real mean of each batch reveals
  // which images it held.
  EngineOptions o = small_options(5);
  o.net = NetSpec::make({1}, 1, 1, 1);
  o.real_noise = 0.0;
  o.sampler.steps = 0;
  o.lr = 1e-30;  // parameters effectively frozen
  CpuBackend be(o);
  std::vector<float> p(o.net.num_params, 0.0f);
  p[0] = 1.0f;                  // conv weight: z = x
  p[o.net.dense_w_off] = 1.0f;  // f = swish(x)
  be.set_params(p);
  Tensor data({10, 1, 1, 1});
  for (int i = 0; i < 10; ++i) data.data[i] = 0.05f * float(i);
  be.set_train_data(data);
  double total = 0, first_batch[2];
  for (int e = 0; e < 2; ++e) {
    be.begin_epoch(e);
    double sum = 0;
    for (int b = 0; b < 2; ++b) {
      be.train_step(b);
      const double r = be.drain_metrics()[0].real;
      if (b == 0) first_batch[e] = r;
      sum += 5 * r;
    }
    total = sum;
    double expect = 0;
    for (int i = 0; i < 10; ++i) expect += swishf(0.05f * float(i));
    EXPECT_NEAR(total, expect, 1e-5) << "each image once per epoch";
  }
  EXPECT_NE(first_batch[0], first_batch[1]) << "reshuffled between epochs";
}

TEST(CpuBackend, ValidationReportsTheLargestEnergyMagnitudeForTheGuard) {
  CpuBackend be(small_options(4));
  const Tensor test = random_images(10, 8, 3);  // batches of 4, 4 and 2
  const ValidationMetrics v = be.validate(test, 1);
  // max |f| over the test rows is at most the reported value, which also covers the noise rows: f of the
  // test rows alone sets a lower bound, and equality holds when the test rows hold the largest |f|.
  double test_max = 0;
  for (float f : be.energy(test)) test_max = std::max(test_max, double(std::fabs(f)));
  EXPECT_GE(v.max_abs_f, test_max);
  EXPECT_GE(v.max_abs_f, std::fabs(v.real));
  EXPECT_GE(v.max_abs_f, std::fabs(v.fake));
  // Weights scaled up make f huge; weights of NaN make every f NaN, which the guard must see as NaN.
  std::vector<float> p = be.params();
  for (float& w : p) w *= 1000.0f;
  be.set_params(p);
  EXPECT_GT(be.validate(test, 1).max_abs_f, 100 * v.max_abs_f);
  p[be.options().net.dense_b_off] = NAN;
  be.set_params(p);
  EXPECT_TRUE(std::isnan(be.validate(test, 1).max_abs_f));
}

namespace {

// x0 after `sample` on one thread and on two (classes: class-conditional chains), as two tensors.
std::vector<Tensor> sample_on_one_and_two_threads(const EngineOptions& o, const Tensor& x0,
                                                  const std::vector<int32_t>* classes = nullptr) {
  const int saved = omp_get_max_threads();
  std::vector<Tensor> out;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    CpuBackend be(o);
    Tensor x = x0;
    be.sample(x, {6, 10.0f, 0.005f, 0.03f}, 17, 0, nullptr, classes);
    out.push_back(x);
  }
  omp_set_num_threads(saved);
  return out;
}

}  // namespace

// Langevin chains are independent: a thread runs its rows a few at a time through all the steps (cpu_backend.cpp), so
// the rows' numbers must not depend on how they are split — one thread or two, chunks of 8 and the remainders — on a
// net whose layers take the implicit backward-data pass with swish' fused (channels of 16 and 32).
TEST(CpuBackend, ChainsDoNotDependOnHowTheRowsAreSplit) {
  EngineOptions o = small_options();
  o.net = NetSpec::make({16, 32, 32}, 3, 2, 12);
  for (const int n : {21, 5}) {  // 5: fewer rows than 8 a thread, so the two threads' chunks are smaller (3 and 2)
    const Tensor x0 = random_images(n, 12, 3);
    const std::vector<Tensor> out = sample_on_one_and_two_threads(o, x0);
    EXPECT_EQ(out[0].data, out[1].data) << n << " chains";
    double moved = 0;
    for (int64_t i = 0; i < x0.numel(); ++i) moved = std::max(moved, double(std::fabs(out[0].data[i] - x0.data[i])));
    EXPECT_GT(moved, 1e-3) << "the chains moved";
  }
}

// The same with a JEM net (K = 3 outputs) and class-conditional chains: each chunk of 8 rows must read its own rows'
// classes (a chunk reading another's would differ between one thread and two).
TEST(CpuBackend, ConditionalChainsDoNotDependOnHowTheRowsAreSplit) {
  EngineOptions o = small_options();
  o.net = NetSpec::make({16, 32}, 3, 2, 12, 1, 3);
  o.objective = Objective::kJem;
  const Tensor x0 = random_images(21, 12, 4);
  std::vector<int32_t> classes(21);
  for (int i = 0; i < 21; ++i) classes[size_t(i)] = i % 3;
  const std::vector<Tensor> out = sample_on_one_and_two_threads(o, x0, &classes);
  EXPECT_EQ(out[0].data, out[1].data);
}
