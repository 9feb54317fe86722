// The K-output dense head (model.outputs) through the Backend API on the CPU backend: softmax cross-entropy's
// gradient by param_grad against a central finite difference of the loss from outputs(), a few dozen Adam
// steps that learn three hand-made classes, the penultimate features, the calls that need K = 1 refusing a
// classifier in one line, and a K = 10 checkpoint (shapes [10, D] and [10], PyTorch's nn.Linear(D, 10)).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/safetensors.hpp"
#include "tests/test_support.hpp"

using namespace ebm;

namespace {

// A tiny net on 8×8 images: 8→4→2, D = 8·2·2 = 32.
EngineOptions classifier_options(int outputs, int batch) {
  EngineOptions o;
  o.net = NetSpec::make({4, 8}, 3, 2, 8, 1, outputs);
  o.seed = 3;
  o.batch_size = batch;
  o.buffer_capacity = 16;
  o.buffer_initial = 4;
  return o;
}

// Mean softmax cross-entropy of logits f [n][K] against labels y, in double; with `w`, also its gradient
// dL/df_ik = (softmax(f_i)_k − [k = y_i]) / n, the weights param_grad takes.
double cross_entropy(const std::vector<float>& f, const std::vector<int>& y, int K, std::vector<float>* w = nullptr) {
  const size_t n = y.size();
  if (w) w->assign(n * K, 0.0f);
  double loss = 0;
  for (size_t i = 0; i < n; ++i) {
    const float* fi = f.data() + i * K;
    const double m = *std::max_element(fi, fi + K);
    double z = 0;
    for (int k = 0; k < K; ++k) z += std::exp(fi[k] - m);
    loss += m + std::log(z) - fi[y[i]];
    if (w)
      for (int k = 0; k < K; ++k) (*w)[i * K + k] = float((std::exp(fi[k] - m) / z - (k == y[i])) / double(n));
  }
  return loss / double(n);
}

double accuracy(const std::vector<float>& f, const std::vector<int>& y, int K) {
  int right = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const float* fi = f.data() + i * K;
    right += int(std::max_element(fi, fi + K) - fi) == y[i];
  }
  return double(right) / double(y.size());
}

// Every parameter uniform in [−0.5, 0.5]: biases non-zero and logits of order 1, so the softmax is not flat.
std::vector<float> random_params(const NetSpec& net, uint64_t seed) {
  std::vector<float> p(size_t(net.num_params));
  Rng(seed, RngStream::kInit).uniform(p.data(), net.num_params, -0.5f, 0.5f);
  return p;
}

}  // namespace

// ∇θ of the mean cross-entropy by param_grad with w = (softmax − onehot)/n, against (L(θ + h e_j) − L(θ − h e_j))
// / 2h for every parameter, L from outputs() (in chunks of 4 and 2 rows). Float32 logits of this net round at
// ~1e-7·|terms| (≤ 72-term dot products of values ≲ 1), so L rounds at ~1e-7 and the difference quotient at
// ~1e-7/h = 1e-5 for h = 1e-2; truncation is h²/6·L''' ~ 2e-5·|L'''|. Measured: at most 3.2e-5 of each tensor's
// largest |∇| (0.16–0.29), 8e-6 absolute; the tolerance, 3e-4 of that largest |∇| + 5e-6, is ~10× it, and far
// below the 5× error of a missing 1/n or the error of a dropped softmax term (both checked below).
TEST(ClassifierHead, SoftmaxCrossEntropyGradientMatchesFiniteDifferences) {
  const int K = 10, n = 6;
  CpuBackend be(classifier_options(K, 4));
  const NetSpec& net = be.options().net;
  const std::vector<float> theta = random_params(net, 9);
  be.set_params(theta);
  const Tensor x = test::random_images(n, 8, 5);
  std::vector<int> y(n);
  for (int i = 0; i < n; ++i) y[size_t(i)] = (3 * i + 1) % K;

  std::vector<float> w, f, grad;
  const std::vector<float> logits = be.outputs(x);
  ASSERT_EQ(logits.size(), size_t(n * K));
  const double loss = cross_entropy(logits, y, K, &w);
  be.param_grad(x, w, f, grad);
  ASSERT_EQ(f.size(), size_t(n * K));
  EXPECT_EQ(f, logits) << "param_grad's f is outputs()";
  ASSERT_EQ(grad.size(), size_t(net.num_params));
  EXPECT_GT(loss, 0.5);  // not already solved: softmax − onehot is not ~0

  const float h = 1e-2f;
  std::vector<double> fd(grad.size());
  std::vector<float> probe = theta;
  for (size_t j = 0; j < theta.size(); ++j) {
    const float hi = theta[j] + h, lo = theta[j] - h;
    probe[j] = hi;
    be.set_params(probe);
    const double lp = cross_entropy(be.outputs(x), y, K);
    probe[j] = lo;
    be.set_params(probe);
    const double lm = cross_entropy(be.outputs(x), y, K);
    probe[j] = theta[j];
    fd[j] = (lp - lm) / (double(hi) - double(lo));
  }
  be.set_params(theta);

  // Per parameter tensor: |∇ − fd| ≤ 3e-4·max|fd| + 5e-6 everywhere.
  auto agrees = [&](const std::vector<float>& g, std::string* where) {
    for (const ParamTensor& t : net.tensors()) {
      double scale = 0;
      for (int64_t j = t.offset; j < t.offset + t.size; ++j) scale = std::max(scale, std::fabs(fd[size_t(j)]));
      for (int64_t j = t.offset; j < t.offset + t.size; ++j) {
        const double d = std::fabs(double(g[size_t(j)]) - fd[size_t(j)]);
        if (d > 3e-4 * scale + 5e-6) {
          *where = t.name + "[" + std::to_string(j - t.offset) + "]: param_grad " + std::to_string(g[size_t(j)]) +
                   ", finite difference " + std::to_string(fd[size_t(j)]);
          return false;
        }
      }
    }
    return true;
  };
  std::string where;
  EXPECT_TRUE(agrees(grad, &where)) << where;
  double largest = 0;
  for (int64_t j = net.dense_w_off; j < net.num_params; ++j) largest = std::max(largest, std::fabs(fd[size_t(j)]));
  EXPECT_GT(largest, 1e-2) << "a gradient this small would make the comparison trivial";

  // The comparison tells the usual mistakes apart: the mean's 1/n left out, the softmax term dropped.
  std::vector<float> w_sum = w, w_onehot(w.size(), 0.0f), g_bad;
  for (float& v : w_sum) v *= float(n);
  for (int i = 0; i < n; ++i) w_onehot[size_t(i * K + y[size_t(i)])] = -1.0f / float(n);
  be.param_grad(x, w_sum, f, g_bad);
  EXPECT_FALSE(agrees(g_bad, &where)) << "a gradient without 1/n passes";
  be.param_grad(x, w_onehot, f, g_bad);
  EXPECT_FALSE(agrees(g_bad, &where)) << "a gradient without the softmax term passes";
}

// Three separable hand-made classes — all −1, all +1, top half +1 and bottom half −1 — four noisy images each:
// 40 full-batch Adam steps (lr 1e-2) of softmax cross-entropy through param_grad + adam_step reach 100% training
// accuracy, and the loss falls at least 1000× from its start (≈ ln 3, the head's Glorot logits being small; measured:
// 1.11 → 3e-7, deterministic).
TEST(ClassifierHead, AFewAdamStepsLearnThreeSeparableClasses) {
  const int K = 3, per_class = 4, n = K * per_class, hw = 8;
  EngineOptions o = classifier_options(K, 16);
  o.lr = 1e-2;
  CpuBackend be(o);
  Tensor x({n, 1, hw, hw});
  std::vector<int> y(static_cast<size_t>(n));
  Rng noise(17, RngStream::kInit);
  for (int i = 0; i < n; ++i) {
    const int label = i % K;
    y[size_t(i)] = label;
    float* img = x.ptr() + int64_t(i) * hw * hw;
    noise.uniform(img, hw * hw, -0.2f, 0.2f);
    for (int p = 0; p < hw * hw; ++p) {
      const float base = label == 0 ? -1.0f : label == 1 ? 1.0f : (p < hw * hw / 2 ? 1.0f : -1.0f);
      img[p] = std::clamp(base + img[p], -1.0f, 1.0f);
    }
  }
  std::vector<float> w, f, grad;
  const double first = cross_entropy(be.outputs(x), y, K);
  EXPECT_NEAR(first, std::log(3.0), 0.3);
  for (int step = 0; step < 40; ++step) {
    cross_entropy(be.outputs(x), y, K, &w);
    be.param_grad(x, w, f, grad);
    be.adam_step(grad);
  }
  const std::vector<float> logits = be.outputs(x);
  const double last = cross_entropy(logits, y, K);
  EXPECT_EQ(accuracy(logits, y, K), 1.0);
  EXPECT_LT(last, first / 1000) << "loss " << first << " -> " << last;
  EXPECT_EQ(be.adam().t, 40);
}

// outputs(x, &features): with K = 1, f is energy(x) to the bit; features [n][D] are the dense layer's input in
// row order across outputs()' chunks (10 rows in chunks of 4, 4, 2), and features · dense.weight + dense.bias
// reproduce f for K = 1 and for each of K = 10 outputs.
TEST(ClassifierHead, FeaturesAreTheDenseLayersInputInRowOrder) {
  const int n = 10;
  const Tensor x = test::random_images(n, 8, 21);
  for (int K : {1, 10}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    CpuBackend be(classifier_options(K, 4));
    const NetSpec& net = be.options().net;
    const std::vector<float> theta = random_params(net, 4);
    be.set_params(theta);
    const int64_t D = net.dense_in;
    std::vector<float> feats;
    const std::vector<float> f = be.outputs(x, &feats);
    ASSERT_EQ(f.size(), size_t(n * K));
    ASSERT_EQ(feats.size(), size_t(n * D));
    if (K == 1) {
      EXPECT_EQ(f, be.energy(x));
    }
    // Float dot products of D = 32 terms against the same sum in double: within 1e-6 of Σ|terms| (each term's
    // rounding is ≤ 6e-8 of itself; the sums' 32 roundings add up to ~2e-6 at worst).
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < K; ++k) {
        double acc = theta[size_t(net.dense_b_off + k)], terms = std::fabs(acc);
        for (int64_t j = 0; j < D; ++j) {
          const double t = double(theta[size_t(net.dense_w_off + k * D + j)]) * feats[size_t(i * D + j)];
          acc += t;
          terms += std::fabs(t);
        }
        EXPECT_NEAR(acc, f[size_t(i * K + k)], 4e-6 * terms) << "image " << i << ", output " << k;
      }
    // Row order across chunks: each row's features are those of the row run alone.
    for (int i : {0, 5, 9}) {
      Tensor xi({1, 1, 8, 8});
      std::copy(x.ptr() + i * 64, x.ptr() + (i + 1) * 64, xi.ptr());
      std::vector<float> fi;
      be.outputs(xi, &fi);
      for (int64_t j = 0; j < D; ++j) EXPECT_NEAR(fi[size_t(j)], feats[size_t(i * D + j)], 1e-6) << "row " << i;
    }
    double spread = 0;
    for (int64_t j = 0; j < D; ++j) spread = std::max(spread, double(std::fabs(feats[size_t(j)] - feats[size_t(D + j)])));
    EXPECT_GT(spread, 1e-3) << "two images' features must differ for the row-order check to mean anything";
  }
}

// A 10-output backend is built (the classifier trains through param_grad + adam_step), and every call that needs
// a scalar energy refuses it in one line that names model.outputs.
// A classifier's energy is JEM's: f(x) of a K-output net is s(x) = logsumexp of its logits (E = −s), for energy(),
// input_grad() and validate(); training it needs train.objective "jem" (tests/test_jem.cpp), and the classifier's
// own calls (outputs, param_grad, adam_step) work as for any net.
TEST(ClassifierHead, AClassifiersEnergyIsTheLogSumExpOfItsLogits) {
  CpuBackend be(classifier_options(10, 4));
  const Tensor x = test::random_images(3, 8, 2);
  const std::vector<float> logits = be.outputs(x), e = be.energy(x);
  ASSERT_EQ(e.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    double m = -1e30, z = 0;
    for (int k = 0; k < 10; ++k) m = std::max(m, double(logits[size_t(i * 10 + k)]));
    for (int k = 0; k < 10; ++k) z += std::exp(double(logits[size_t(i * 10 + k)]) - m);
    EXPECT_NEAR(e[size_t(i)], m + std::log(z), 1e-5);
  }
  std::vector<float> f;
  Tensor dfdx;
  be.input_grad(x, f, dfdx);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(f[size_t(i)], e[size_t(i)], 1e-5);
  be.set_train_data(x);
  be.begin_epoch(0);
  test::expect_user_error([&] { be.train_step(0); }, {"train.objective \"cd\"", "model.outputs is 10"});
  // What a classifier uses works.
  std::vector<float> grad;
  be.param_grad(x, std::vector<float>(30, 0.1f), f, grad);
  EXPECT_EQ(f.size(), 30u);
  be.adam_step(grad);
  EXPECT_EQ(be.adam().t, 1);
  EXPECT_THROW(be.param_grad(x, std::vector<float>(3, 0.1f), f, grad), Error) << "w must be [n·K]";
}

// A K = 10 checkpoint: model.safetensors holds dense.weight [10, D] and dense.bias [10] (nn.Linear(D, 10)),
// load_model gives the 10-output net and its parameters back, and a 1-output config refuses it naming both shapes.
TEST(ClassifierHead, CheckpointRoundTripWithTenOutputs) {
  test::TempDir tmp("ebm_classifier");
  Config c;
  c.model.channels = {4, 8};
  c.model.outputs = 10;
  c.data.pad_to = 32;  // 32→16→8: D = 8·8·8 = 512
  c.buffer.capacity = 16;
  c.buffer.initial = 4;
  const NetSpec net = net_spec_for(c);
  ASSERT_EQ(net.outputs, 10);
  ASSERT_EQ(net.dense_in, 512);
  CpuBackend be(engine_options_for(c));
  be.set_params(random_params(net, 8));
  const TrainState s = test::state_of(be, c);
  const std::string dir = tmp / "ck";
  save_checkpoint(dir, net, s, c);

  const SafeTensors st = SafeTensors::load(dir + "/model.safetensors");
  EXPECT_EQ(st.get_f32("dense.weight").shape, (std::vector<int64_t>{10, 512}));
  EXPECT_EQ(st.get_f32("dense.bias").shape, (std::vector<int64_t>{10}));
  EXPECT_EQ(st.get_f32("convs.1.weight").shape, (std::vector<int64_t>{8, 4, 3, 3}));
  const Model m = load_model(dir);
  EXPECT_EQ(m.config.model.outputs, 10);
  EXPECT_EQ(m.net.outputs, 10);
  EXPECT_EQ(m.params, s.params);
  EXPECT_EQ(load_train_state(dir, net).params, s.params);

  Config one = c;
  one.model.outputs = 1;
  test::expect_user_error([&] { load_params(dir + "/model.safetensors", net_spec_for(one)); },
                          {"'dense.weight' has shape [10,512]", "expects [1,512]", "outputs"});
}
