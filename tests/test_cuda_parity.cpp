// The CUDA backend against the CPU reference, op by op and step by step (ggml's test-backend-ops pattern):
// the same seeded parameters, inputs and random-stream state on both backends, through the Backend
// interface only. Both draw their noise from the same Philox streams, so even noisy steps are compared.
// Every test skips, saying why, where there is no CUDA device or the build has no CUDA backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/backend.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/rng.hpp"
#include "host/backend_factory.hpp"
#ifdef EBM_HAVE_CUDA
#include "engine/cuda/cuda_backend.hpp"
#endif

using namespace ebm;

namespace {

// |cuda − cpu| ≤ abs + rel·|cpu|, per element. One reason each.
struct Tol {
  double abs, rel;
};
// f: fp32 sums over up to 576-term dot products in another order (cuDNN's algorithms vs im2col + SGEMM),
// and CUDA's expf vs glibc's in swish.
constexpr Tol kForward{1e-5, 1e-4};
// ∂f/∂x: as kForward through four backward-data convolutions; values near 0 need the absolute floor.
constexpr Tol kInputGrad{1e-6, 1e-3};
// ∂(Σ w_i f_i)/∂θ: batch- and pixel-summed (backward-filter's reduction order); small entries cancel.
constexpr Tol kParamGrad{1e-5, 1e-3};
// x after Langevin steps: step_size 10 scales gradient differences ×10 per step, noise is the same draw.
constexpr Tol kLangevin{2e-5, 0};
// One Adam update from given state: the same formula; only the bias correction's pow() is the device's.
constexpr Tol kAdam{1e-7, 1e-5};
// Step and validation metrics: means of f (kForward) accumulated in double in another order.
constexpr Tol kMetrics{1e-5, 1e-4};
// Parameters after train steps: Adam moves each by about lr·sign(g), so a gradient within rounding of 0
// may step either way on either backend. Most must agree tightly; every one within that sign flip.
constexpr Tol kTrainParams{1e-6, 1e-4};
constexpr double kTrainParamsFlip = 2.5e-4;      // 2·lr per step taken (lr 1e-4) plus margin
constexpr double kTrainParamsTightShare = 0.999;  // share of parameters that must meet kTrainParams

std::string why_no_cuda() {
#ifdef EBM_HAVE_CUDA
  std::string why;
  if (cuda_device_count(&why) > 0) return "";
  return why.empty() ? std::string("cuda_device_count() found none") : why;
#else
  return "this build has no CUDA backend (EBM_HAVE_CUDA is not defined)";
#endif
}

#define REQUIRE_CUDA()                                                   \
  do {                                                                   \
    const std::string why_ = why_no_cuda();                              \
    if (!why_.empty()) GTEST_SKIP() << "no CUDA device: " << why_;       \
  } while (0)

// The seed's network at a small batch; a small ring so the tests wrap it.
EngineOptions parity_options() {
  EngineOptions o;
  o.net = NetSpec::make({16, 32, 64, 64}, 3, 2, 32);
  o.seed = 5;
  o.batch_size = 8;
  o.sampler = {3, 10.0f, 0.005f, 0.03f};
  o.buffer_capacity = 20;
  o.buffer_initial = 8;
  o.reinit_prob = 0.3;  // fresh-noise rows in most steps
  return o;
}

Tensor random_images(int n, uint64_t seed) {
  Tensor t({n, 1, 32, 32});
  Rng(seed, RngStream::kInit).uniform(t.ptr(), t.numel(), -1.0f, 1.0f);
  return t;
}

std::vector<float> random_vector(size_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v(n);
  Rng(seed, RngStream::kInit).uniform(v.data(), int64_t(n), lo, hi);
  return v;
}

std::string param_name(const NetSpec& net, size_t i) {
  for (const ParamTensor& t : net.tensors())
    if (int64_t(i) >= t.offset && int64_t(i) < t.offset + t.size)
      return t.name + "[" + std::to_string(int64_t(i) - t.offset) + "]";
  return "?";
}

// One message with the count and the worst element, not one failure per element.
template <class T>
::testing::AssertionResult near(const std::vector<T>& cuda, const std::vector<T>& cpu, Tol tol, const std::string& what,
                                const NetSpec* net = nullptr, double* share_ok = nullptr) {
  if (cuda.size() != cpu.size())
    return ::testing::AssertionFailure() << what << ": " << cuda.size() << " values on cuda, " << cpu.size() << " on cpu";
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double d = std::fabs(double(cuda[i]) - double(cpu[i])), lim = tol.abs + tol.rel * std::fabs(double(cpu[i]));
    if (d <= lim) continue;
    ++bad;
    const double excess = std::isnan(d) ? INFINITY : d - lim;
    if (excess > worst_excess) worst_excess = excess, worst = i;
  }
  if (share_ok) *share_ok = cpu.empty() ? 1.0 : 1.0 - double(bad) / double(cpu.size());
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os.precision(9);
  os << what << ": " << bad << "/" << cpu.size() << " out of tolerance (abs " << tol.abs << ", rel " << tol.rel
     << "); worst at " << (net ? param_name(*net, worst) : std::to_string(worst)) << ": cuda " << cuda[worst]
     << ", cpu " << cpu[worst];
  return ::testing::AssertionFailure() << os.str();
}

std::vector<double> as_vector(const StepMetrics& m) { return {m.loss, m.reg, m.cdiv, m.real, m.fake, m.max_abs_f}; }

// Parameters after training: tight for nearly all, a sign flip's worth for the rest (see kTrainParams).
void expect_train_params_near(const std::vector<float>& cuda, const std::vector<float>& cpu, const NetSpec& net,
                              const std::string& what) {
  double share = 0;
  const auto tight = near(cuda, cpu, kTrainParams, what, &net, &share);
  EXPECT_GE(share, kTrainParamsTightShare) << tight.message();
  EXPECT_TRUE(near(cuda, cpu, Tol{kTrainParamsFlip, 0}, what + " (sign-flip bound)", &net));
}

// The CPU backend's whole state copied into the CUDA backend.
void align(Backend& cuda, CpuBackend& cpu) {
  cuda.set_params(cpu.params());
  cuda.set_adam(cpu.adam());
  cuda.set_buffer(cpu.buffer());
  cuda.set_rng_state(cpu.rng_state());
}

}  // namespace

TEST(CudaParity, FreshBackendMatchesCpuState) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  EXPECT_NE(cuda->describe().find("cuda: "), std::string::npos) << cuda->describe();
  EXPECT_NE(cuda->describe().find("cuDNN"), std::string::npos) << cuda->describe();
  EXPECT_EQ(cuda->params(), cpu.params());        // the same host initialiser
  EXPECT_EQ(cuda->rng_state(), cpu.rng_state());  // the initial buffer fill accounted for on both
  const Tensor b = cuda->buffer();
  ASSERT_EQ(b.dim(0), o.buffer_initial);
  for (float v : b.data) ASSERT_TRUE(v >= -1.0f && v <= 1.0f) << "initial buffer noise outside [-1, 1]: " << v;
}

TEST(CudaParity, ForwardEnergy) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  const Tensor x = random_images(20, 1);  // chunks of 8, 8 and 4
  EXPECT_TRUE(near(cuda->energy(x), cpu.energy(x), kForward, "f"));
}

TEST(CudaParity, InputGradient) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  const Tensor x = random_images(5, 2);
  std::vector<float> f_cpu, f_cuda;
  Tensor g_cpu, g_cuda;
  cpu.input_grad(x, f_cpu, g_cpu);
  cuda->input_grad(x, f_cuda, g_cuda);
  EXPECT_TRUE(near(f_cuda, f_cpu, kForward, "f"));
  EXPECT_EQ(g_cuda.shape, x.shape);
  EXPECT_TRUE(near(g_cuda.data, g_cpu.data, kInputGrad, "df/dx"));
}

TEST(CudaParity, ParameterGradient) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  const Tensor x = random_images(6, 3);
  const std::vector<float> w = random_vector(6, 4, -1.0f, 1.0f);
  std::vector<float> f_cpu, f_cuda, g_cpu, g_cuda;
  cpu.param_grad(x, w, f_cpu, g_cpu);
  cuda->param_grad(x, w, f_cuda, g_cuda);
  EXPECT_TRUE(near(f_cuda, f_cpu, kForward, "f"));
  EXPECT_TRUE(near(g_cuda, g_cpu, kParamGrad, "dθ", &o.net));
}

TEST(CudaParity, LangevinStepWithoutNoise) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  Tensor a = random_images(7, 5), b = a;
  const SamplerParams p{1, 10.0f, 0.0f, 0.03f};
  cpu.sample(a, p, 99);
  cuda->sample(b, p, 99);
  EXPECT_TRUE(near(b.data, a.data, kLangevin, "x after one step"));
}

TEST(CudaParity, NoisyLangevinDrawsTheCpuNoise) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  Tensor a = random_images(4, 6), b = a;
  const SamplerParams p{3, 10.0f, 0.005f, 0.03f};
  std::vector<Tensor> ta, tb;
  cpu.sample(a, p, 123, 1, &ta);
  cuda->sample(b, p, 123, 1, &tb);  // three one-step chunks: the offset must carry across them
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i)
    EXPECT_TRUE(near(tb[i].data, ta[i].data, kLangevin, "trajectory entry " + std::to_string(i)));
  // The same seed again, in one chunk: eagerly the first time, through a captured graph the second.
  for (int rep = 0; rep < 2; ++rep) {
    Tensor c = random_images(4, 6);
    cuda->sample(c, p, 123);
    EXPECT_TRUE(near(c.data, a.data, kLangevin, "x, sampled in one chunk, run " + std::to_string(rep)));
  }
}

TEST(CudaParity, AdamStep) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  const size_t n = size_t(o.net.num_params);
  AdamState s;
  s.m = random_vector(n, 7, -1e-2f, 1e-2f);
  s.v = random_vector(n, 8, 0.0f, 1e-4f);
  s.t = 5;
  const std::vector<float> p = random_vector(n, 9, -0.5f, 0.5f), g = random_vector(n, 10, -1e-2f, 1e-2f);
  for (Backend* be : {static_cast<Backend*>(&cpu), cuda.get()}) {
    be->set_params(p);
    be->set_adam(s);
    be->adam_step(g);
  }
  const AdamState a = cpu.adam(), b = cuda->adam();
  EXPECT_EQ(b.t, a.t);
  EXPECT_TRUE(near(cuda->params(), cpu.params(), kAdam, "θ", &o.net));
  EXPECT_TRUE(near(b.m, a.m, kAdam, "m", &o.net));
  EXPECT_TRUE(near(b.v, a.v, kAdam, "v", &o.net));
}

TEST(CudaParity, BufferRoundTrip) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  auto cuda = make_backend("cuda", o);
  for (int n : {0, 13, o.buffer_capacity}) {
    const Tensor images = random_images(n, 11 + n);
    cuda->set_buffer(images);
    const Tensor back = cuda->buffer();
    EXPECT_EQ(back.shape, images.shape) << n << " images";
    EXPECT_EQ(back.data, images.data) << n << " images";  // a copy, bit for bit
  }
}

TEST(CudaParity, TrainStepsMatchCpu) {
  REQUIRE_CUDA();
  // 12 images, batch 8: a full batch (eager the first time, a captured graph the second) and a partial one
  // (4 real rows, always eager). No begin_epoch: both backends keep the identity order, so the real rows
  // agree (the GPU's shuffle is not the CPU's Fisher–Yates).
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  align(*cuda, cpu);
  const Tensor data = random_images(12, 12);
  cpu.set_train_data(data);
  cuda->set_train_data(data);
  ASSERT_EQ(cuda->batches_per_epoch(), 2);
  int steps = 0;
  for (int64_t b : {0, 1, 0, 1, 0}) {  // the ring (capacity 20) wraps from the second step on
    cpu.train_step(b);
    cuda->train_step(b);
    ++steps;
    const std::string at = "after step " + std::to_string(steps) + " (batch " + std::to_string(b) + ")";
    EXPECT_EQ(cuda->rng_state(), cpu.rng_state()) << at;  // the same draws consumed
    const auto mc = cpu.drain_metrics(), mg = cuda->drain_metrics();
    ASSERT_EQ(mg.size(), 1u) << at;
    ASSERT_EQ(mc.size(), 1u) << at;
    EXPECT_TRUE(near(as_vector(mg[0]), as_vector(mc[0]), kMetrics, "metrics (loss reg cdiv real fake max|f|) " + at));
    const Tensor bc = cpu.buffer(), bg = cuda->buffer();
    EXPECT_EQ(bg.shape, bc.shape) << at;
    EXPECT_TRUE(near(bg.data, bc.data, kLangevin, "replay buffer " + at));
    expect_train_params_near(cuda->params(), cpu.params(), o.net, "θ " + at);
  }
  const AdamState ac = cpu.adam(), ag = cuda->adam();
  EXPECT_EQ(ag.t, ac.t);
}

TEST(CudaParity, ValidateMatchesCpu) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  const Tensor test = random_images(19, 13);  // batches of 8, 8 and 3
  const ValidationMetrics a = cpu.validate(test, 3), b = cuda->validate(test, 3);
  EXPECT_TRUE(near(std::vector<double>{b.cdiv, b.real, b.fake, b.max_abs_f},
                   std::vector<double>{a.cdiv, a.real, a.fake, a.max_abs_f}, kMetrics,
                   "validation (cdiv real fake max|f|)"));
}

TEST(CudaParity, GraphReplayMatchesEager) {
  REQUIRE_CUDA();
  // EngineOptions::graphs = false makes a backend launch every kernel eagerly. Same seed, same state:
  // the graph replays must give the eager run's numbers bit for bit (deterministic kernels and algorithms).
  EngineOptions o = parity_options();
  o.graphs = false;
  auto eager = make_backend("cuda", o);
  o.graphs = true;
  auto graph = make_backend("cuda", o);
  const Tensor data = random_images(16, 14);  // two full batches per epoch
  const Tensor start = eager->buffer();
  for (Backend* be : {eager.get(), graph.get()}) {
    be->set_buffer(start);
    be->set_train_data(data);
    for (int64_t epoch : {0, 1}) {  // the device shuffle, deterministic in (seed, epoch)
      be->begin_epoch(epoch);
      for (int64_t b = 0; b < be->batches_per_epoch(); ++b) be->train_step(b);
    }
  }
  EXPECT_TRUE(graph->facts().graphs) << "capture failed: " << graph->describe();
  EXPECT_EQ(graph->facts().graph_captures, 1) << "one capture: the full-batch step, at its second occurrence";
  EXPECT_FALSE(eager->facts().graphs);
  EXPECT_EQ(eager->facts().graph_captures, 0);
  EXPECT_EQ(graph->params(), eager->params());
  EXPECT_EQ(graph->buffer().data, eager->buffer().data);
  EXPECT_EQ(graph->rng_state(), eager->rng_state());
  const AdamState ag = graph->adam(), ae = eager->adam();
  EXPECT_EQ(ag.m, ae.m);
  EXPECT_EQ(ag.v, ae.v);
  const auto mg = graph->drain_metrics(), me = eager->drain_metrics();
  ASSERT_EQ(mg.size(), me.size());
  for (size_t i = 0; i < mg.size(); ++i) EXPECT_EQ(as_vector(mg[i]), as_vector(me[i])) << "step " << i;
}

TEST(CudaParity, GraphReplaysDrawFreshNoise) {
  REQUIRE_CUDA();
  // Every fake row fresh noise (reinit_prob 1) and one Langevin step: the rows a step writes back are its
  // own draws. A replay that reused the captured offsets would write back the previous step's rows.
  EngineOptions o = parity_options();
  o.reinit_prob = 1.0;
  o.sampler.steps = 1;
  o.buffer_capacity = 64;
  auto cuda = make_backend("cuda", o);
  cuda->set_train_data(random_images(8, 15));
  const int64_t img = o.net.image_size(), bs = o.batch_size;
  std::vector<std::vector<float>> newest;
  std::vector<std::vector<uint64_t>> states;
  for (int step = 0; step < 3; ++step) {  // eager, captured + replayed, replayed
    cuda->train_step(0);
    const Tensor buf = cuda->buffer();
    newest.emplace_back(buf.data.end() - bs * img, buf.data.end());
    states.push_back(cuda->rng_state());
  }
  EXPECT_NE(newest[1], newest[0]);
  EXPECT_NE(newest[2], newest[1]);
  EXPECT_NE(states[2], states[1]);
  // And they are the draws the CPU makes from the same state.
  CpuBackend cpu(o);
  auto check = make_backend("cuda", o);
  align(*check, cpu);
  const Tensor data = random_images(8, 15);
  cpu.set_train_data(data);
  check->set_train_data(data);
  for (int step = 0; step < 3; ++step) {
    cpu.train_step(0);
    check->train_step(0);
  }
  EXPECT_TRUE(near(check->buffer().data, cpu.buffer().data, kLangevin, "replay buffer after 3 steps"));
}
