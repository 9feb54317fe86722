// The CUDA backend against the CPU reference, op by op and step by step, in the manner of ggml's
// test-backend-ops: a table of cases — an op on a network shape at a batch size, with options — each run on
// both backends from the same seeded parameters, inputs and random-stream state, through the Backend
// interface only, and compared with a tolerance from one table (each with its reason). Both backends draw
// their noise from the same Philox streams, so even noisy steps compare element by element.
//
// Names: every GPU test is CudaParity.<name>; the table's cases are CudaParity.Op/<op>_<shape>_b<batch>_n<rows>
// [_cap<capacity>][_tf32][_k<outputs>][_shift<k>] (one TEST_P, instantiated without a prefix), so ctest -R '^CudaParity' (and
// '^CudaParity\.') and --gtest_filter='CudaParity*' select all of them. gtest_discover_tests appends gtest's
// "  # GetParam() = <case>" to a parametrised test's ctest name; regexes anchored at the start are unaffected.
// Every CudaParity test skips, saying why, where there is no CUDA device or the build has no CUDA backend.
//
// ParityHarness.Op/<case> runs the same table with a second CPU backend standing in for the GPU, on every
// machine: the harness itself (the rebuilt real and fake rows, the independent loss gradient, the floors that
// keep a comparison from passing trivially) is tested where no GPU is. ParityHarness.* tests check the
// tolerance table against a double-precision reference of the network.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/backend.hpp"          // Backend, EngineOptions, BackendFacts
#include "engine/cpu/cpu_backend.hpp"  // CpuBackend: the reference
#include "engine/rng.hpp"              // Rng, RngStream: inputs, and the real rows' noise rebuilt on the host
#include "host/eval/backend_factory.hpp"    // make_backend("cuda" | "cpu"), cuda_usable: no CUDA backend header here
#include "engine/loss.hpp"             // jem_loss_rows: the JEM loss gradient computed apart from train_step
#include "kernels/augment.hpp"         // augment_shift, shift_image: data.shift's rows rebuilt on the host
#include "kernels/ebm_math.hpp"        // langevin_perturb: the real rows' noise step, as train_step applies it
#include "tests/sanitizers.hpp"        // kSanitized: fewer images under ASan

using namespace ebm;

namespace {

// ---------------------------------------------------------------------------------------------------------
// Tolerances: |device − cpu| ≤ abs + scaled·scale + rel·|cpu|, per element, where scale is the largest |cpu|
// of the compared tensor (of each parameter tensor, for θ-shaped vectors; of the sum's terms where the sum
// itself cancels, see LossGradient): rounding in a sum is relative to its terms, which are of the size of the
// largest results, not of each result (small ones come from cancellation).
// The basis: the CPU backend's float32 results against a double-precision reference of the network
// (ParityHarness.CpuWithinAQuarterOfEachTolerance, seed/wide/deep nets, uniform-noise images) land within
// 8e-7·scale (f), 5e-7·scale (∂f/∂x), 5.4e-6·scale (∂θ, conv0's 32k-term sums), 1.6e-7 (x after 3 Langevin
// steps); the GPU's rounding is of the same kind (other summation orders, CUDA's expf/logf/sinf), so each
// float32 tolerance is about 10× what both backends' rounding adds up to, and each fails a 5% error.
struct Tol {
  const char* name;
  double abs, scaled, rel;
  const char* why;
};

constexpr Tol kForward{"forward", 0, 1e-5, 1e-5,
                       "f: float sums of up to 1152-term conv dot products (cuDNN's order vs the CPU's GEMM), "
                       "CUDA's expf vs the CPU's vector expf in swish; 10x the measured rounding"};
constexpr Tol kInputGrad{"input_gradient", 0, 1e-5, 1e-5,
                         "df/dx: the forward's rounding carried through every backward-data convolution"};
constexpr Tol kParamGrad{"param_gradient", 0, 5e-5, 5e-5,
                         "d(sum w_i f_i)/dtheta: sums over rows x pixels (57k terms for conv0 at 224 rows) in "
                         "backward-filter's split-K order; the CPU alone is within 5.4e-6*scale"};
constexpr Tol kLossGrad{"loss_gradient", 0, 5e-5, 5e-5,
                        "the loss gradient before Adam from the same state: kParamGrad over [real; fake] rows (the "
                        "fakes within kLangevin), scaled by its terms since real and fake parts cancel"};
constexpr Tol kTf32{"tf32", 0, 5e-3, 5e-3,
                    "TF32 convolutions: operands rounded to 10-bit mantissas (2^-11 each); TF32 emulated in the "
                    "double reference lands within 9e-4*scale (f, df/dx, dtheta), x5 for truncating hardware"};
constexpr Tol kLangevin{"langevin", 2e-6, 0, 0,
                        "x in [-1,1] after <= 3 steps: an ulp of x is up to 1.2e-7 and each backend lands within "
                        "1.6e-7 of the double reference; df/dx differences enter x10 (step size) but are ~1e-9"};
constexpr Tol kTf32Langevin{"tf32_langevin", 1e-3, 0, 0,
                            "x after 3 Langevin steps with TF32 gradients: emulated round-to-nearest TF32 moves x "
                            "by up to 6e-5; hardware that truncates shrinks df/dx by ~3e-3 in one direction, "
                            "x10 step size x 0.03 clip x 3 steps ~ 9e-4"};
constexpr Tol kAdam{"adam", 0, 1e-6, 1e-6,
                    "one Adam update from the same state: the same formula (kernels/ebm_math.hpp), a few "
                    "roundings apart (sqrt, division, FMA contraction, the bias correction's pow)"};
constexpr Tol kMetrics{"metrics", 0, 1e-5, 1e-5,
                       "step and validation metrics: means of f (kForward) accumulated in double; scale = the "
                       "largest metric (max |f|)"};
constexpr Tol kDrift{"drift", 0, 1e-4, 1e-4,
                     "free-running steps: step k carries every earlier step's rounding (theta within "
                     "kTrainParams, a rare Adam sign flip moves a parameter by 2*lr): 10x kForward; an "
                     "indexing or ring bug moves values by O(scale)"};
// θ after Adam from states within rounding: each parameter moves by about lr·m/√v, so a gradient within
// rounding of 0 may step either way on either backend. Most must agree tightly; every one within that flip.
constexpr Tol kTrainParams{"train_params", 1e-6, 0, 0,
                           "theta after train steps: 1% of an Adam step (lr 1e-4) for all but a few parameters"};
constexpr double kTrainParamsFlip = 2.5e-4;      // 2·lr per step taken (lr 1e-4) plus margin
constexpr double kTrainParamsTightShare = 0.999;  // share of parameters that must meet kTrainParams

const Tol* const kToleranceTable[] = {&kForward, &kInputGrad, &kParamGrad, &kLossGrad, &kTf32, &kLangevin,
                                      &kTf32Langevin, &kAdam, &kMetrics, &kDrift, &kTrainParams};

// ---------------------------------------------------------------------------------------------------------
// The case table.

struct Shape {
  const char* name;
  std::vector<int> channels;  // conv 3×3, stride 2, pad 1, on 32×32 single-channel images
};
const Shape kSeedNet{"seed", {16, 32, 64, 64}};            // DESIGN §1: 32→16→8→4→2, 60,481 parameters
const Shape kWideNet{"wide", {32, 64, 128, 128}};          // 4× the channel products
const Shape kDeepNet{"deep", {16, 16, 32, 32, 64, 64}};  // 32→16→8→4→2→1→1: 1×1 maps, pad-only borders

enum class Op {
  kForward,         // energy(x): f in chunks of the batch size
  kInputGradient,   // input_grad(x): f and ∂f/∂x
  kParamGradient,   // param_grad(x, w): f and ∂(Σ w_i f_i)/∂θ; with K outputs, w and f [n·K]
  kOutputs,         // outputs(x, &features): f [n·K] and the dense layer's input [n·D], in chunks of the batch
  kLangevin,        // sample(): one noise-free step
  kConditionalLangevin,  // sample(..., classes) of a K-output net: three noisy steps on f_y, y varying by chain
  kNoisyLangevin,   // sample(): three noisy steps, in one-step chunks and in one chunk (eager, then a graph)
  kValidate,        // validate(): test rows against uniform noise
  kInitialBuffer,   // the replay buffer a new backend starts with
  kShuffle,         // begin_epoch(e): permutation() for several seeds and epochs
  kLossGradient,    // train_step from the CPU's state, step by step: gradient() (also against an independent
                    // computation), metrics, buffer, θ
  kTrainRun,        // train_step free-running: the ring wraps, the same draws consumed, θ
};

const char* op_name(Op op) {
  switch (op) {
    case Op::kForward: return "forward";
    case Op::kInputGradient: return "input_gradient";
    case Op::kParamGradient: return "param_gradient";
    case Op::kOutputs: return "outputs";
    case Op::kLangevin: return "langevin";
    case Op::kConditionalLangevin: return "conditional_langevin";
    case Op::kNoisyLangevin: return "noisy_langevin";
    case Op::kValidate: return "validate";
    case Op::kInitialBuffer: return "initial_buffer";
    case Op::kShuffle: return "shuffle";
    case Op::kLossGradient: return "loss_gradient";
    case Op::kTrainRun: return "train_run";
  }
  return "?";
}

struct ParityCase {
  Op op;
  const Shape* shape;
  int batch;         // EngineOptions::batch_size
  int rows;          // images the op takes, or the training set (the last batch partial when not a multiple);
                     // 0 where the op takes none
  int capacity = 0;  // replay buffer; 0: 20 at batch 8 (the ring wraps), 4·batch otherwise
  bool tf32 = false;
  bool recipe = false;  // EMA of the weights (decay 0.9) and spectral norm on (engine/spectral_norm.hpp)
  int outputs = 1;      // the dense head's K (model.outputs); K > 1 trains with train.objective "jem"
  int shift = 0;        // data.shift: the real rows moved by up to ±shift pixels

  std::string name() const {
    std::string s = std::string(op_name(op)) + "_" + shape->name + "_b" + std::to_string(batch);
    if (rows > 0) s += "_n" + std::to_string(rows);
    if (capacity > 0) s += "_cap" + std::to_string(capacity);
    if (tf32) s += "_tf32";
    if (recipe) s += "_sn_ema";
    if (outputs != 1) s += "_k" + std::to_string(outputs);
    if (shift > 0) s += "_shift" + std::to_string(shift);
    return s;
  }
};

// What gtest prints for a case (and what ctest's test names carry after '#').
void PrintTo(const ParityCase& c, std::ostream* os) { *os << c.name(); }

std::vector<ParityCase> parity_table() {
  std::vector<ParityCase> t;
  const Shape* shapes[] = {&kSeedNet, &kWideNet, &kDeepNet};
  // Single ops: the small batch; batch 128 on every shape (forward: 224 rows, a full chunk and a partial one of
  // 96); a partial batch of 96 rows alone (its own cuDNN plans); TF32 with its own tolerance.
  for (Op op : {Op::kForward, Op::kInputGradient, Op::kParamGradient}) {
    const bool fwd = op == Op::kForward;
    t.push_back({op, &kSeedNet, 8, fwd ? 20 : 6});  // forward: chunks of 8, 8 and 4
    for (const Shape* s : shapes) t.push_back({op, s, 128, fwd ? 224 : 128});
    if (!fwd) t.push_back({op, &kSeedNet, 128, 96});
    t.push_back({op, &kSeedNet, 128, fwd ? 224 : 128, 0, true});
    t.push_back({op, &kWideNet, 128, fwd ? 224 : 128, 0, true});
  }
  // The K-output head (a classifier's logits, and the penultimate features FID takes): outputs() in chunks of 8, 8
  // and 4, and of 128 and 96; the energy net's features; param_grad with w [n·K] (the fused Σ_k df·wd).
  t.push_back({Op::kOutputs, &kSeedNet, 8, 20, 0, false, false, 10});
  for (const Shape* s : shapes) t.push_back({Op::kOutputs, s, 128, 224, 0, false, false, 10});
  t.push_back({Op::kOutputs, &kSeedNet, 128, 224});
  t.push_back({Op::kParamGradient, &kSeedNet, 8, 6, 0, false, false, 10});
  for (const Shape* s : shapes) t.push_back({Op::kParamGradient, s, 128, 128, 0, false, false, 10});
  t.push_back({Op::kLangevin, &kSeedNet, 8, 7});
  t.push_back({Op::kNoisyLangevin, &kSeedNet, 8, 4});
  for (const Shape* s : shapes) t.push_back({Op::kNoisyLangevin, s, 128, 128});
  t.push_back({Op::kValidate, &kSeedNet, 8, 19});  // batches of 8, 8 and 3
  for (const Shape* s : shapes) t.push_back({Op::kValidate, s, 128, 300});  // 128, 128 and 44
  t.push_back({Op::kInitialBuffer, &kSeedNet, 8, 0});
  t.push_back({Op::kInitialBuffer, &kSeedNet, 8, 0, 5});  // buffer.initial 8 > capacity 5: 5 images
  t.push_back({Op::kInitialBuffer, &kSeedNet, 128, 0});
  t.push_back({Op::kShuffle, &kSeedNet, 8, 12});
  t.push_back({Op::kShuffle, &kSeedNet, 128, 1000});   // 7 full batches and one of 104
  t.push_back({Op::kShuffle, &kSeedNet, 128, 60000});  // MNIST's size: 468 full batches and one of 96
  // Training steps: 12 images at batch 8 (a full batch and one of 4), 224 at batch 128 (a full one and one of 96).
  t.push_back({Op::kLossGradient, &kSeedNet, 8, 12});
  for (const Shape* s : shapes) t.push_back({Op::kLossGradient, s, 128, 224});
  t.push_back({Op::kLossGradient, &kSeedNet, 128, 224, 0, true});
  t.push_back({Op::kTrainRun, &kSeedNet, 8, 12});
  t.push_back({Op::kTrainRun, &kSeedNet, 8, 12, 5});  // each write-back of 8 rows overruns the 5-image ring
  t.push_back({Op::kTrainRun, &kSeedNet, 128, 224});
  // The training recipe: the step's spectral norm (power iteration, W/σ, the gradient transform) and the EMA,
  // free-running, then the sampling weights and energy() on them.
  t.push_back({Op::kTrainRun, &kSeedNet, 8, 12, 0, false, true});
  t.push_back({Op::kTrainRun, &kWideNet, 128, 224, 0, false, true});
  // train.objective "jem" (K = 10): energies, validation and chains on s = logsumexp f through the softmax weights,
  // class-conditional chains on f_y, and training steps with the labels gathered beside the rows, with and
  // without data.shift (its draws on the device), against the CPU and against a loss gradient computed apart.
  t.push_back({Op::kForward, &kSeedNet, 8, 20, 0, false, false, 10});
  t.push_back({Op::kForward, &kWideNet, 128, 224, 0, false, false, 10});
  t.push_back({Op::kInputGradient, &kSeedNet, 8, 6, 0, false, false, 10});
  t.push_back({Op::kInputGradient, &kSeedNet, 128, 128, 0, false, false, 10});
  t.push_back({Op::kLangevin, &kSeedNet, 8, 7, 0, false, false, 10});
  t.push_back({Op::kNoisyLangevin, &kSeedNet, 128, 128, 0, false, false, 10});
  t.push_back({Op::kConditionalLangevin, &kSeedNet, 8, 20, 0, false, false, 10});
  t.push_back({Op::kConditionalLangevin, &kWideNet, 128, 128, 0, false, false, 10});
  t.push_back({Op::kValidate, &kSeedNet, 8, 19, 0, false, false, 10});
  t.push_back({Op::kValidate, &kSeedNet, 128, 300, 0, false, false, 10});
  t.push_back({Op::kLossGradient, &kSeedNet, 8, 12, 0, false, false, 10});
  t.push_back({Op::kLossGradient, &kSeedNet, 128, 224, 0, false, false, 10, 2});
  t.push_back({Op::kTrainRun, &kSeedNet, 8, 12, 0, false, false, 10});
  t.push_back({Op::kTrainRun, &kSeedNet, 8, 12, 0, false, false, 1, 2});  // data.shift with the seed's CD
  t.push_back({Op::kTrainRun, &kSeedNet, 128, 224, 0, false, true, 10, 2});
  return t;
}

EngineOptions options_for(const ParityCase& c) {
  EngineOptions o;
  o.net = NetSpec::make(c.shape->channels, 3, 2, 32, 1, c.outputs);
  o.seed = 5;
  o.batch_size = c.batch;
  o.sampler = {3, 10.0f, 0.005f, 0.03f};
  o.buffer_capacity = c.capacity > 0 ? c.capacity : (c.batch <= 8 ? 20 : 4 * c.batch);
  o.buffer_initial = c.batch;
  o.reinit_prob = 0.3;  // fresh-noise rows in most steps
  o.tf32 = c.tf32;
  o.shift = c.shift;
  if (o.net.outputs > 1) o.objective = Objective::kJem;
  if (c.recipe) {
    o.ema_decay = 0.9;
    o.spectral_norm = true;
  }
  return o;
}

// The seed's network at batch 8 with a small ring: the non-table tests' options.
EngineOptions parity_options() { return options_for({Op::kTrainRun, &kSeedNet, 8, 12}); }

// ---------------------------------------------------------------------------------------------------------
// Helpers.

std::string why_no_cuda() {
  std::string why;
  if (cuda_usable(&why)) return "";
  return why.empty() ? std::string("cuda_usable() found no device") : why;
}

#define REQUIRE_CUDA()                                                   \
  do {                                                                   \
    const std::string why_ = why_no_cuda();                              \
    if (!why_.empty()) GTEST_SKIP() << "no CUDA device: " << why_;       \
  } while (0)

bool on_gpu(Backend& be) { return be.facts().kind == BackendKind::kCuda; }

// The backend replayed CUDA graphs (no capture failed) and captured exactly `captures` of them: `why` says which.
void expect_captured(Backend& be, int64_t captures, const std::string& why) {
  EXPECT_TRUE(be.facts().graphs) << "capture failed: " << be.describe();
  EXPECT_EQ(be.facts().graph_captures, captures) << why;
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

// How near() groups and scales: per parameter tensor for θ-shaped vectors (net), and the scale of each group
// taken from another vector (the magnitude of a sum's terms, when the sum itself cancels) instead of `want`.
struct Compare {
  const NetSpec* net = nullptr;
  const std::vector<float>* scale = nullptr;
  double* share_ok = nullptr;  // out: the share of elements within tolerance
  bool quiet = false;          // no log line (checks that a comparison would fail)
};

// One message with the count and the worst element, not one failure per element. A comparison that could not
// fail — every reference value 0, or one not finite — is a failure too. Prints how much of the tolerance the
// worst element used, so a device run's log shows how tight each one is.
template <class A, class B>
::testing::AssertionResult near(const std::vector<A>& got, const std::vector<B>& want, const Tol& tol,
                                const std::string& what, Compare how = {}) {
  const NetSpec* net = how.net;
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " values, the reference has " << want.size();
  if (how.scale && how.scale->size() != want.size())
    return ::testing::AssertionFailure() << what << ": " << how.scale->size() << " scale values for " << want.size();
  // Scale groups: each parameter tensor for θ-shaped vectors, else the whole vector.
  std::vector<std::pair<size_t, size_t>> groups;
  if (net && int64_t(want.size()) == net->num_params) {
    for (const ParamTensor& t : net->tensors()) groups.emplace_back(size_t(t.offset), size_t(t.offset + t.size));
  } else {
    groups.emplace_back(0, want.size());
  }
  size_t bad = 0, worst = 0;
  double worst_excess = -1, largest = 0, used = 0;
  for (const auto& [lo, hi] : groups) {
    double scale = 0;
    for (size_t i = lo; i < hi; ++i) {
      if (!std::isfinite(double(want[i])))
        return ::testing::AssertionFailure() << what << ": reference value " << want[i] << " at "
                                             << (net ? param_name(*net, i) : std::to_string(i));
      scale = std::max(scale, std::fabs(double(how.scale ? (*how.scale)[i] : want[i])));
      largest = std::max(largest, std::fabs(double(want[i])));
    }
    for (size_t i = lo; i < hi; ++i) {
      const double d = std::fabs(double(got[i]) - double(want[i]));
      const double lim = tol.abs + tol.scaled * scale + tol.rel * std::fabs(double(want[i]));
      if (lim > 0) used = std::max(used, std::isnan(d) ? INFINITY : d / lim);
      if (d <= lim) continue;
      ++bad;
      const double excess = std::isnan(d) ? INFINITY : d - lim;
      if (excess > worst_excess) worst_excess = excess, worst = i;
    }
  }
  if (how.share_ok) *how.share_ok = want.empty() ? 1.0 : 1.0 - double(bad) / double(want.size());
  if (!how.quiet) std::printf("[  parity  ] %s: %zu values, %.3g of tolerance '%s' used\n", what.c_str(), want.size(), used, tol.name);
  if (largest == 0)
    return ::testing::AssertionFailure() << what << ": every reference value is 0, so the comparison cannot fail";
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os.precision(9);
  os << what << ": " << bad << "/" << want.size() << " out of tolerance '" << tol.name << "' (abs " << tol.abs
     << ", scaled " << tol.scaled << ", rel " << tol.rel << "; " << tol.why << "); worst at "
     << (net ? param_name(*net, worst) : std::to_string(worst)) << ": got " << got[worst] << ", reference "
     << want[worst] << "; largest |reference| " << largest;
  return ::testing::AssertionFailure() << os.str();
}

// The values vary (not all equal): a comparison of constants would pass for a network that ignores its input.
template <class T>
::testing::AssertionResult varies(const std::vector<T>& v, const std::string& what) {
  if (v.empty()) return ::testing::AssertionFailure() << what << ": no values";
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  const double spread = double(*hi) - double(*lo), size = std::max(std::fabs(double(*hi)), std::fabs(double(*lo)));
  if (spread > 1e-3 * size && size > 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": all " << v.size() << " values within " << spread << " of "
                                       << double(*lo) << ": nothing to compare";
}

::testing::AssertionResult same_order(const std::vector<int64_t>& got, const std::vector<int64_t>& want,
                                      const std::string& what) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " rows, the CPU has " << want.size();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i] && bad++ == 0) first = i;
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << "/" << want.size() << " positions differ; first at "
                                       << first << ": " << got[first] << ", cpu " << want[first];
}

// ce is 0 with train.objective "cd"; accuracy is compared apart (expect_accuracy_near).
std::vector<double> as_vector(const StepMetrics& m) {
  return {m.loss, m.reg, m.cdiv, m.real, m.fake, m.max_abs_f, m.ce};
}

// A JEM step's accuracy counts the real rows whose largest logit is the label: a row whose two largest logits are
// within rounding may count on one backend and not the other (at most one such row here), nothing more.
void expect_accuracy_near(const StepMetrics& got, const StepMetrics& want, int nr, const std::string& at) {
  EXPECT_LE(std::fabs(got.accuracy - want.accuracy), 1.0 / nr + 1e-12)
      << at << ": accuracy " << got.accuracy << ", cpu " << want.accuracy << " (" << nr << " real rows)";
}

// Labels for a training set of n images, K classes, every class present where n ≥ K (train.objective "jem").
std::vector<int32_t> parity_labels(int n, int K) {
  std::vector<int32_t> y(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) y[size_t(i)] = int32_t((7 * i + 3) % K);
  return y;
}

// The training set of a training case, with its labels on both backends when the net has K > 1 outputs, in
// epoch 1's order (not the identity: a gather that ignored the permutation would pass with it).
void set_training_set(const ParityCase& c, const Tensor& data, CpuBackend& cpu, Backend& dev) {
  cpu.set_train_data(data);
  dev.set_train_data(data);
  if (c.outputs > 1) {
    const std::vector<int32_t> y = parity_labels(int(data.dim(0)), c.outputs);
    cpu.set_train_labels(y);
    dev.set_train_labels(y);
  }
  cpu.begin_epoch(1);
  dev.begin_epoch(1);
}
std::vector<double> as_vector(const ValidationMetrics& m) { return {m.cdiv, m.real, m.fake, m.max_abs_f}; }

// θ after training: tight for nearly all, a sign flip's worth for the rest (see kTrainParams).
void expect_train_params_near(const std::vector<float>& got, const std::vector<float>& cpu, const NetSpec& net,
                              const std::string& what) {
  double share = 0;
  const auto tight = near(got, cpu, kTrainParams, what, {.net = &net, .share_ok = &share});
  EXPECT_GE(share, kTrainParamsTightShare) << tight.message();
  EXPECT_TRUE(near(got, cpu, Tol{"train_params_flip", kTrainParamsFlip, 0, 0, "one Adam sign flip per step"},
                   what + " (sign-flip bound)", {.net = &net}));
}

// The CPU backend's whole state copied into the other backend.
void align(Backend& device, CpuBackend& cpu) {
  device.set_params(cpu.params());
  if (cpu.options().ema_decay > 0) device.set_ema(cpu.ema());
  if (cpu.options().spectral_norm) device.set_sn_state(cpu.sn_state());
  device.set_adam(cpu.adam());
  device.set_buffer(cpu.buffer());
  device.set_rng_state(cpu.rng_state());
}

// Distance in units in the last place (0: the same float).
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  const int64_t oa = ia < 0 ? int64_t(INT32_MIN) - ia : ia, ob = ib < 0 ? int64_t(INT32_MIN) - ib : ib;
  return oa > ob ? oa - ob : ob - oa;
}

// ---------------------------------------------------------------------------------------------------------
// The ops. `device` is "cuda" (CudaParity) or "cpu" (ParityHarness: the harness checking itself).

void run_forward(const ParityCase& c, const std::string& device) {
  const EngineOptions o = options_for(c);
  const Tol& tol = c.tf32 ? kTf32 : kForward;
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor x = random_images(c.rows, 1);
  const std::vector<float> fc = cpu.energy(x);
  ASSERT_TRUE(varies(fc, "f on the cpu"));
  EXPECT_TRUE(near(dev->energy(x), fc, tol, "f"));
}

void run_input_gradient(const ParityCase& c, const std::string& device) {
  const EngineOptions o = options_for(c);
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor x = random_images(c.rows, 2);
  std::vector<float> fc, fd;
  Tensor gc, gd;
  cpu.input_grad(x, fc, gc);
  dev->input_grad(x, fd, gd);
  ASSERT_TRUE(varies(gc.data, "df/dx on the cpu"));
  EXPECT_TRUE(near(fd, fc, c.tf32 ? kTf32 : kForward, "f"));
  EXPECT_EQ(gd.shape, x.shape);
  EXPECT_TRUE(near(gd.data, gc.data, c.tf32 ? kTf32 : kInputGrad, "df/dx"));
}

void run_param_gradient(const ParityCase& c, const std::string& device) {
  const EngineOptions o = options_for(c);
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor x = random_images(c.rows, 3);
  const std::vector<float> w = random_vector(size_t(c.rows) * c.outputs, 4, -1.0f, 1.0f);  // [n·K]
  std::vector<float> fc, fd, gc, gd;
  cpu.param_grad(x, w, fc, gc);
  dev->param_grad(x, w, fd, gd);
  ASSERT_TRUE(varies(gc, "dtheta on the cpu"));
  EXPECT_TRUE(near(fd, fc, c.tf32 ? kTf32 : kForward, "f"));
  EXPECT_TRUE(near(gd, gc, c.tf32 ? kTf32 : kParamGrad, "dtheta", {.net = &o.net}));
}

void run_outputs(const ParityCase& c, const std::string& device) {
  const EngineOptions o = options_for(c);
  const Tol& tol = c.tf32 ? kTf32 : kForward;
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor x = random_images(c.rows, 7);
  std::vector<float> feat_cpu, feat_dev;
  const std::vector<float> fc = cpu.outputs(x, &feat_cpu);
  ASSERT_EQ(fc.size(), size_t(c.rows) * c.outputs);
  ASSERT_EQ(feat_cpu.size(), size_t(c.rows * o.net.dense_in));
  ASSERT_TRUE(varies(fc, "f on the cpu"));
  ASSERT_TRUE(varies(feat_cpu, "features on the cpu"));
  const std::vector<float> fd = dev->outputs(x, &feat_dev);
  EXPECT_TRUE(near(fd, fc, tol, "f [n·K]"));
  // The last conv activation: the forward's rounding up to the dense layer (kForward's reason), in row order
  // across the chunks (a chunk's features copied to the wrong rows differ by O(scale)).
  EXPECT_TRUE(near(feat_dev, feat_cpu, tol, "features [n·D]"));
  EXPECT_TRUE(near(dev->outputs(x), fd, Tol{"same_call", 0, 0, 0, "outputs() without features: the same f"},
                   "f without features"));
  if (c.outputs == 1) {
    EXPECT_TRUE(near(dev->energy(x), fd, tol, "energy() against outputs()"));
  }
}

// x moved: a Langevin comparison of images that did not move would pass for a sampler that does nothing.
::testing::AssertionResult moved(const Tensor& before, const Tensor& after, double at_least) {
  double m = 0;
  for (size_t i = 0; i < before.data.size(); ++i) m = std::max(m, std::fabs(double(after.data[i]) - before.data[i]));
  if (m >= at_least) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "Langevin moved x by at most " << m << " (< " << at_least << ")";
}

void run_langevin(const ParityCase& c, const std::string& device) {
  const EngineOptions o = options_for(c);
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor start = random_images(c.rows, 5);
  Tensor a = start, b = start;
  const SamplerParams p{1, 10.0f, 0.0f, 0.03f};
  cpu.sample(a, p, 99);
  dev->sample(b, p, 99);
  ASSERT_TRUE(moved(start, a, 1e-3));
  EXPECT_TRUE(near(b.data, a.data, kLangevin, "x after one step"));
}

void run_noisy_langevin(const ParityCase& c, const std::string& device) {
  const EngineOptions o = options_for(c);
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor start = random_images(c.rows, 6);
  Tensor a = start, b = start;
  const SamplerParams p{3, 10.0f, 0.005f, 0.03f};
  std::vector<Tensor> ta, tb;
  cpu.sample(a, p, 123, 1, &ta);
  dev->sample(b, p, 123, 1, &tb);  // three one-step chunks: the noise offset must carry across them
  ASSERT_TRUE(moved(start, a, 1e-3));
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i)
    EXPECT_TRUE(near(tb[i].data, ta[i].data, kLangevin, "trajectory entry " + std::to_string(i)));
  // The same seed again, in one chunk: eagerly the first time, through a captured graph the second.
  for (int rep = 0; rep < 2; ++rep) {
    Tensor x = start;
    dev->sample(x, p, 123);
    EXPECT_TRUE(near(x.data, a.data, kLangevin, "x, sampled in one chunk, run " + std::to_string(rep)));
  }
  if (on_gpu(*dev)) {  // each chunk shape captured at its second occurrence
    expect_captured(*dev, 2, "the one-step chunk and the three-step chunk");
  }
}

void run_conditional_langevin(const ParityCase& c, const std::string& device) {
  const EngineOptions o = options_for(c);
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor start = random_images(c.rows, 8);
  const std::vector<int32_t> classes = parity_labels(c.rows, c.outputs);
  const SamplerParams p{3, 10.0f, 0.005f, 0.03f};
  Tensor a = start, b = start, u = start;
  cpu.sample(a, p, 77, 0, nullptr, &classes);
  cpu.sample(u, p, 77);
  ASSERT_TRUE(moved(start, a, 1e-3));
  ASSERT_FALSE(near(u.data, a.data, kLangevin, "", {.quiet = true})) << "the classes do not change the chains";
  dev->sample(b, p, 77, 0, nullptr, &classes);
  EXPECT_TRUE(near(b.data, a.data, kLangevin, "x after three class-conditional steps"));
  // Again with other classes (the same chunk shape: a captured graph on the GPU reads the new ones).
  std::vector<int32_t> other = classes;
  for (int32_t& y : other) y = (y + 1) % c.outputs;
  Tensor a2 = start, b2 = start;
  cpu.sample(a2, p, 77, 0, nullptr, &other);
  ASSERT_FALSE(near(a2.data, a.data, kLangevin, "", {.quiet = true})) << "other classes, the same chains";
  dev->sample(b2, p, 77, 0, nullptr, &other);
  EXPECT_TRUE(near(b2.data, a2.data, kLangevin, "x with the classes moved by one"));
  if (on_gpu(*dev)) {  // so the second call ran a captured graph, which read the new classes
    expect_captured(*dev, 1, "the conditional chunk captured at its second occurrence");
  }
  Tensor b3 = start;  // and unconditionally, after the conditional chunks
  dev->sample(b3, p, 77);
  EXPECT_TRUE(near(b3.data, u.data, kLangevin, "x, unconditional, after the conditional runs"));
}

void run_validate(const ParityCase& c, const std::string& device) {
  const EngineOptions o = options_for(c);
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor test = random_images(c.rows, 13);
  const std::vector<double> a = as_vector(cpu.validate(test, 3)), b = as_vector(dev->validate(test, 3));
  EXPECT_TRUE(near(b, a, c.tf32 ? kTf32 : kMetrics, "validation (cdiv real fake max|f|)"));
}

void run_initial_buffer(const ParityCase& c, const std::string& device) {
  // Both fill the buffer from the same uniform draws (stream kBufferInit), so equal to within an ulp.
  const EngineOptions o = options_for(c);
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor bc = cpu.buffer(), bd = dev->buffer();
  ASSERT_EQ(bc.dim(0), std::min(o.buffer_initial, o.buffer_capacity));
  ASSERT_TRUE(varies(bc.data, "initial buffer on the cpu"));
  ASSERT_EQ(bd.shape, bc.shape);
  int64_t worst = 0, over = 0;
  size_t at = 0;
  for (size_t i = 0; i < bc.data.size(); ++i) {
    const int64_t u = ulps(bd.data[i], bc.data[i]);
    over += u > 1;
    if (u > worst) worst = u, at = i;
  }
  EXPECT_LE(worst, 1) << over << "/" << bc.data.size() << " pixels more than 1 ulp apart; worst at " << at
                      << ": device " << bd.data[at] << ", cpu " << bc.data[at];
  EXPECT_EQ(dev->rng_state(), cpu.rng_state()) << "the initial fill accounted for alike";
}

void run_shuffle(const ParityCase& c, const std::string& device) {
  const Tensor data({c.rows, 1, 32, 32});  // zeros: the order does not look at the images
  std::vector<int64_t> identity(size_t(c.rows));
  std::iota(identity.begin(), identity.end(), 0);
  for (uint64_t seed : {uint64_t{5}, uint64_t{42}, (uint64_t{1} << 32) + 7}) {
    EngineOptions o = options_for(c);
    o.seed = seed;
    o.buffer_initial = 1;
    CpuBackend cpu(o);
    auto dev = make_backend(device, o);
    cpu.set_train_data(data);
    dev->set_train_data(data);
    EXPECT_EQ(dev->batches_per_epoch(), cpu.batches_per_epoch());
    EXPECT_TRUE(same_order(dev->permutation(), identity, "seed " + std::to_string(seed) + ", before any epoch"));
    std::vector<int64_t> previous = identity;
    for (int64_t epoch : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{1000}, int64_t{1} << 20}) {
      cpu.begin_epoch(epoch);
      dev->begin_epoch(epoch);
      const std::string at = "seed " + std::to_string(seed) + ", epoch " + std::to_string(epoch);
      const std::vector<int64_t> pc = cpu.permutation();
      std::vector<int64_t> sorted = pc;
      std::sort(sorted.begin(), sorted.end());
      ASSERT_EQ(sorted, identity) << "the cpu's order is not a permutation, " << at;
      ASSERT_NE(pc, previous) << "the cpu's order did not change, " << at;  // an equality that could fail
      EXPECT_TRUE(same_order(dev->permutation(), pc, "permutation, " + at));
      previous = pc;
    }
  }
}

// --- training steps ---

// The real rows of batch b as train_step builds them: training rows perm[b·B + i] (moved by data.shift's draw at
// step t, the steps taken before, where shift > 0) plus real_noise·N(0,1) from the real-noise stream at the
// offset the step started from (rng_before[1]), clipped to [−1, 1].
std::vector<float> rebuild_real_rows(const Tensor& data, const std::vector<int64_t>& perm, int64_t b, int batch,
                                     int nr, const std::vector<uint64_t>& rng_before, double real_noise, int64_t img,
                                     int shift = 0, int64_t t = 0) {
  Rng noise_rng(rng_before.at(0), RngStream::kRealNoise);
  noise_rng.offset = rng_before.at(1);
  std::vector<float> noise(size_t(nr * img)), rows(size_t(nr * img));
  noise_rng.normal(noise.data(), nr * img, 0.0f, 1.0f);
  for (int i = 0; i < nr; ++i) {
    const float* src = data.ptr() + perm.at(size_t(b * batch + i)) * img;
    std::vector<float> moved_row(static_cast<size_t>(img));
    if (shift > 0) {  // the seed's 1×32×32 images
      const Shift d = augment_shift(rng_before.at(0), t, i, shift);
      shift_image(src, int(data.dim(1)), int(data.dim(2)), int(data.dim(3)), d.dy, d.dx, moved_row.data());
      src = moved_row.data();
    }
    for (int64_t k = 0; k < img; ++k)
      rows[size_t(i * img + k)] = langevin_perturb(src[k], float(real_noise), noise[size_t(i * img + k)]);
  }
  return rows;
}

// [real (nr); fake (nf)] as one batch of images, the rows a training step ran its loss on.
Tensor stacked_rows(const NetSpec& net, const std::vector<float>& real, int nr, const std::vector<float>& fake, int nf) {
  Tensor rows({nr + nf, net.in_c, net.in_h, net.in_w});
  std::copy(real.begin(), real.end(), rows.data.begin());
  std::copy(fake.begin(), fake.end(), rows.data.begin() + int64_t(real.size()));
  return rows;
}

// The loss gradient of [real; fake] rows at θ, computed apart from train_step: f by energy(), dL/df written out
// here from the loss (DESIGN §1; engine/loss.hpp), ∇θ by param_grad with those weights. Split in its cdiv and reg
// parts, so that a test can check the comparison would see either one scaled.
//   loss = mean f(fake) − mean f(real) + α·(mean f(real)² + mean f(fake)²)
//   dL/df: real rows −1/nr + 2α·f/nr, fake rows +1/nf + 2α·f/nf
// The real and fake rows' terms (±1/n) cancel to ~1% (at first both are noise images), and float sums round
// relative to their terms: `terms` = ∂(Σ |dL/df_i| f_i)/∂θ gives the comparisons their scale. (train_step rounds
// −1 + 2α·f in float and sums 256 such weights: dense.bias's gradient comes out ~4e-7 from this one, 2e-7 of
// its terms but 4e-4 of itself.)
struct LossGradient {
  std::vector<float> cdiv, reg, terms;
  std::vector<float> total() const {
    std::vector<float> t(cdiv.size());
    for (size_t i = 0; i < t.size(); ++i) t[i] = cdiv[i] + reg[i];
    return t;
  }
};

LossGradient independent_loss_gradient(CpuBackend& ref, const std::vector<float>& theta,
                                       const std::vector<float>& real, int nr, const std::vector<float>& fake, int nf,
                                       double alpha) {
  const Tensor rows = stacked_rows(ref.options().net, real, nr, fake, nf);
  ref.set_params(theta);
  const std::vector<float> f = ref.energy(rows);
  std::vector<float> w_cdiv(size_t(nr + nf)), w_reg(size_t(nr + nf)), w_abs(size_t(nr + nf)), f2;
  for (int i = 0; i < nr + nf; ++i) {
    const double n = i < nr ? nr : nf, cdiv = (i < nr ? -1.0 : 1.0) / n, reg = 2.0 * alpha * double(f[size_t(i)]) / n;
    w_cdiv[size_t(i)] = float(cdiv);
    w_reg[size_t(i)] = float(reg);
    w_abs[size_t(i)] = float(std::fabs(cdiv + reg));
  }
  LossGradient g;
  ref.param_grad(rows, w_cdiv, f2, g.cdiv);
  ref.param_grad(rows, w_reg, f2, g.reg);
  ref.param_grad(rows, w_abs, f2, g.terms);
  return g;
}

// The same for train.objective "jem": logits by outputs(), dL/df by jem_loss_rows in double (engine/loss.hpp, from
// the rows' labels y), ∇θ by param_grad. cdiv holds the whole gradient (reg none); terms = ∂(Σ |dL/df_ik| f_ik)/∂θ.
LossGradient independent_jem_gradient(CpuBackend& ref, const std::vector<float>& theta, const std::vector<float>& real,
                                      int nr, const std::vector<float>& fake, int nf, const std::vector<int32_t>& y,
                                      float ce_weight = -1) {
  const EngineOptions& o = ref.options();
  const int K = o.net.outputs;
  const Tensor rows = stacked_rows(o.net, real, nr, fake, nf);
  ref.set_params(theta);
  const std::vector<float> f = ref.outputs(rows);  // no EMA or spectral norm in these cases: f on θ
  const std::vector<double> fd(f.begin(), f.end());
  std::vector<double> df(fd.size());
  JemSums sums;
  jem_loss_rows(fd.data(), nr, nf, K, y.data(), nr, nf,
                JemWeights{float(o.alpha), float(o.cd_weight), ce_weight >= 0 ? ce_weight : float(o.ce_weight)},
                df.data(), sums);
  std::vector<float> w(df.begin(), df.end()), w_abs(df.size()), f2;
  for (size_t i = 0; i < df.size(); ++i) w_abs[i] = float(std::fabs(df[i]));
  LossGradient g;
  ref.param_grad(rows, w, f2, g.cdiv);
  g.reg.assign(g.cdiv.size(), 0.0f);
  ref.param_grad(rows, w_abs, f2, g.terms);
  return g;
}

// gradient() against the independent computation on the backend's own rows, and a check that the comparison
// would tell the loss gradient from its usual mistakes (a part scaled by 2 or dropped, the whole doubled, real
// and fake swapped). Under TF32's tolerance the reg part (~0.4% of the terms) is below what can be told apart.
void expect_loss_gradient(const std::vector<float>& got, const LossGradient& ref, const Tol& tol, const NetSpec& net,
                          const std::string& what, bool cd_mistakes = true) {
  const std::vector<float> want = ref.total();
  ASSERT_TRUE(varies(want, what + ": independent loss gradient"));
  EXPECT_TRUE(near(got, want, tol, what + " against the independent loss gradient",
                   {.net = &net, .scale = &ref.terms}));
  double dot = 0, norm2 = 0;
  for (size_t i = 0; i < want.size(); ++i) dot += double(got[i]) * want[i], norm2 += double(want[i]) * want[i];
  // Float32: rounding leaves the projection within 1e-3 of 1. TF32 hardware that truncates inputs to a 10-bit
  // mantissa shrinks every product by ~7e-4 in the same direction, ~3-4e-3 over the conv chain: 1e-2.
  const double scale_tol = &tol == &kTf32 ? 1e-2 : 1e-3;
  EXPECT_NEAR(dot / norm2, 1.0, scale_tol) << what << ": gradient() is " << dot / norm2
                                           << "x the independent loss gradient (projected)";
  if (!cd_mistakes) return;  // JEM: the CD term's usual mistakes are not what its gradient is made of
  struct Mistake {
    const char* name;
    double cdiv, reg;
    bool reg_only;
  };
  for (const Mistake& m : {Mistake{"cdiv doubled", 2, 1, false}, Mistake{"reg doubled", 1, 2, true},
                           Mistake{"reg dropped", 1, 0, true}, Mistake{"everything doubled", 2, 2, false},
                           Mistake{"real and fake swapped", -1, 1, false}}) {
    if (m.reg_only && &tol == &kTf32) continue;
    std::vector<float> wrong(want.size());
    for (size_t i = 0; i < wrong.size(); ++i) wrong[i] = float(m.cdiv * ref.cdiv[i] + m.reg * ref.reg[i]);
    EXPECT_FALSE(near(wrong, want, tol, "", {.net = &net, .scale = &ref.terms, .quiet = true}))
        << what << ": tolerance '" << tol.name << "' cannot tell the loss gradient from one with " << m.name;
  }
}

// The rows the step just trained on, as the backend holds them: real rows rebuilt, fake rows = the newest
// `batch` rows of its replay buffer (all of them written back after the Langevin refinement).
std::vector<float> newest_rows(Backend& be, int n, int64_t img) {
  const Tensor buf = be.buffer();
  return std::vector<float>(buf.data.end() - n * img, buf.data.end());
}

constexpr int64_t kSchedule[] = {0, 1, 0, 1, 0};  // the full batch 3× (eager, captured, replayed), the partial 2×

void run_loss_gradient(const ParityCase& c, const std::string& device) {
  // Each step from the CPU's whole state (copied into the device backend first), so every difference is that
  // step's own: the loss gradient before Adam (against the CPU's and against an independent computation on
  // each backend's own rows — Adam hides a constant factor, this does not), metrics, buffer, θ after Adam.
  const EngineOptions o = options_for(c);
  const int64_t img = o.net.image_size();
  const int bs = o.batch_size;
  ASSERT_GE(o.buffer_capacity, bs) << "the fake rows are read back from the buffer";
  CpuBackend cpu(o), ref(o);
  auto dev = make_backend(device, o);
  const Tensor data = random_images(c.rows, 12);
  set_training_set(c, data, cpu, *dev);
  ASSERT_EQ(dev->batches_per_epoch(), 2);
  int step = 0;
  for (int64_t b : kSchedule) {
    ++step;
    const std::string at = "step " + std::to_string(step) + " (batch " + std::to_string(b) + ")";
    align(*dev, cpu);
    const std::vector<float> theta = cpu.params();
    const std::vector<uint64_t> rng_before = cpu.rng_state();
    const int64_t t_before = cpu.adam().t;  // data.shift's draw
    ASSERT_EQ(dev->rng_state(), rng_before);
    const int nr = int(std::min<int64_t>(bs, c.rows - b * bs));
    cpu.train_step(b);
    dev->train_step(b);
    EXPECT_EQ(dev->rng_state(), cpu.rng_state()) << at << ": the same draws consumed";
    const auto mc = cpu.drain_metrics(), md = dev->drain_metrics();
    ASSERT_EQ(mc.size(), 1u) << at;
    ASSERT_EQ(md.size(), 1u) << at;
    EXPECT_TRUE(near(as_vector(md[0]), as_vector(mc[0]), c.tf32 ? kTf32 : kMetrics,
                     "metrics (loss reg cdiv real fake max|f| ce), " + at));
    expect_accuracy_near(md[0], mc[0], nr, at);
    const Tensor bc = cpu.buffer(), bd = dev->buffer();
    ASSERT_EQ(bd.shape, bc.shape) << at;
    EXPECT_TRUE(near(bd.data, bc.data, c.tf32 ? kTf32Langevin : kLangevin, "replay buffer, " + at));
    if (c.tf32)  // TF32 gradients differ by ~1e-3: once Adam has moments, small ones move θ by up to a step
      EXPECT_TRUE(near(dev->params(), cpu.params(), Tol{"train_params_flip", kTrainParamsFlip, 0, 0, "2 lr"},
                       "theta after Adam (within a step), " + at, {.net = &o.net}));
    else
      expect_train_params_near(dev->params(), cpu.params(), o.net, "theta after Adam, " + at);
    // Each backend's gradient against the loss gradient of its own rows, computed apart; then the two gradients.
    const std::vector<float> gc = cpu.gradient(), gd = dev->gradient();
    LossGradient cpu_ref;
    for (Backend* be : {static_cast<Backend*>(&cpu), dev.get()}) {
      const std::string who = std::string(on_gpu(*be) ? "cuda" : (be == &cpu ? "cpu" : "device")) + ", " + at;
      const std::vector<int64_t> perm = be->permutation();
      const std::vector<float> real = rebuild_real_rows(data, perm, b, bs, nr, rng_before, o.real_noise, img, o.shift,
                                                        t_before);
      LossGradient want;
      if (c.outputs > 1) {
        const std::vector<int32_t> labels = parity_labels(c.rows, c.outputs);
        std::vector<int32_t> y(static_cast<size_t>(nr));
        for (int i = 0; i < nr; ++i) y[size_t(i)] = labels[size_t(perm[size_t(b * bs + i)])];
        const std::vector<float> fake = newest_rows(*be, bs, img);
        want = independent_jem_gradient(ref, theta, real, nr, fake, bs, y);
        if (step == 1 && be == &cpu) {  // the comparison tells the JEM gradient from its likely mistakes
          std::vector<int32_t> y_next = y;
          for (int32_t& v : y_next) v = (v + 1) % c.outputs;
          struct Mistake {
            const char* name;
            LossGradient g;
          };
          std::vector<Mistake> mistakes;
          mistakes.push_back({"labels moved by one class", independent_jem_gradient(ref, theta, real, nr, fake, bs, y_next)});
          mistakes.push_back({"the cross-entropy term dropped", independent_jem_gradient(ref, theta, real, nr, fake, bs, y, 0)});
          if (o.shift > 0) {
            const std::vector<float> unshifted = rebuild_real_rows(data, perm, b, bs, nr, rng_before, o.real_noise, img);
            mistakes.push_back({"real rows not shifted", independent_jem_gradient(ref, theta, unshifted, nr, fake, bs, y)});
          }
          for (const Mistake& m : mistakes)
            EXPECT_FALSE(near(m.g.total(), want.total(), kParamGrad, "", {.net = &o.net, .scale = &want.terms, .quiet = true}))
                << at << ": tolerance '" << kParamGrad.name << "' cannot tell the JEM gradient from one with " << m.name;
        }
      } else {
        want = independent_loss_gradient(ref, theta, real, nr, newest_rows(*be, bs, img), bs, o.alpha);
      }
      expect_loss_gradient(be == &cpu ? gc : gd, want, on_gpu(*be) && c.tf32 ? kTf32 : kParamGrad, o.net, who,
                           c.outputs == 1);
      if (be == &cpu) cpu_ref = want;
    }
    EXPECT_TRUE(near(gd, gc, c.tf32 ? kTf32 : kLossGrad, "loss gradient, " + at, {.net = &o.net, .scale = &cpu_ref.terms}));
  }
  EXPECT_EQ(dev->adam().t, cpu.adam().t);
  if (on_gpu(*dev)) {  // so the comparisons above covered graph replays too
    expect_captured(*dev, 1, "the full batch's step captured at its second occurrence");
  }
}

void run_train_run(const ParityCase& c, const std::string& device) {
  // Steps free-running from one aligned state: the ring wraps (and, with capacity < batch, each write-back
  // overruns it), the same draws are consumed, θ stays within rounding.
  const EngineOptions o = options_for(c);
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  align(*dev, cpu);
  const Tensor data = random_images(c.rows, 12);
  set_training_set(c, data, cpu, *dev);
  ASSERT_EQ(dev->batches_per_epoch(), 2);
  int step = 0;
  for (int64_t b : kSchedule) {
    ++step;
    cpu.train_step(b);
    dev->train_step(b);
    const std::string at = "after step " + std::to_string(step) + " (batch " + std::to_string(b) + ")";
    EXPECT_EQ(dev->rng_state(), cpu.rng_state()) << at << ": the same draws consumed";
    const auto mc = cpu.drain_metrics(), md = dev->drain_metrics();
    ASSERT_EQ(md.size(), 1u) << at;
    ASSERT_EQ(mc.size(), 1u) << at;
    EXPECT_TRUE(near(as_vector(md[0]), as_vector(mc[0]), kDrift, "metrics (loss reg cdiv real fake max|f| ce) " + at));
    expect_accuracy_near(md[0], mc[0], int(std::min<int64_t>(c.batch, c.rows - b * c.batch)), at);
    const Tensor bc = cpu.buffer(), bd = dev->buffer();
    EXPECT_EQ(bc.dim(0), std::min(o.buffer_capacity, std::min(o.buffer_initial, o.buffer_capacity) + step * o.batch_size));
    EXPECT_EQ(bd.shape, bc.shape) << at;
    EXPECT_TRUE(near(bd.data, bc.data, kDrift, "replay buffer " + at));
    expect_train_params_near(dev->params(), cpu.params(), o.net, "theta " + at);
    if (c.recipe) {
      // θ_ema moves by (1 − d) of θ's moves: θ's tolerance holds. u: unit vectors from sums like the forward's.
      expect_train_params_near(dev->ema(), cpu.ema(), o.net, "theta_ema " + at);
      EXPECT_TRUE(near(dev->sn_state(), cpu.sn_state(), kDrift, "spectral-norm u " + at));
    }
  }
  if (c.recipe) {
    // The sampling weights eff(θ_ema, u) = θ_ema/σ per layer (biases as they are): θ_ema's differences, scaled by
    // 1/σ, plus σ's rounding. θ_ema is judged as θ is (expect_train_params_near: tight for nearly all, a sign flip's
    // worth for a few), so these are too: kDrift per tensor for nearly all, the flip bound for every one. (The
    // first H200 run: 1 of 240,769 past kDrift — a bias of 4.3e-5 off by 2.3e-8 — in train_run_wide_*_sn_ema.)
    // Then energy() on them, and on the CPU the identity with sn_apply.
    const std::vector<float> sc = cpu.sampling_params(), sd = dev->sampling_params();
    ASSERT_TRUE(varies(sc, "sampling weights on the cpu"));
    EXPECT_NE(sc, cpu.params());
    double share = 0;
    const auto tight = near(sd, sc, kDrift, "sampling weights", {.net = &o.net, .share_ok = &share});
    EXPECT_GE(share, kTrainParamsTightShare) << tight.message();
    EXPECT_TRUE(near(sd, sc, Tol{"train_params_flip", kTrainParamsFlip, 0, 0, "one Adam sign flip per step"},
                     "sampling weights (sign-flip bound)", {.net = &o.net}));
    const Tensor x = random_images(c.batch + 3, 13);
    const std::vector<float> u = dev->sn_state();
    EXPECT_TRUE(near(dev->energy(x), cpu.energy(x), kDrift, "f on the sampling weights"));
    EXPECT_EQ(dev->sn_state(), u) << "energy() leaves u as it is";
  }
  EXPECT_EQ(dev->adam().t, cpu.adam().t);
  if (on_gpu(*dev)) {  // so the comparisons above covered graph replays too
    expect_captured(*dev, 1, "the full batch's step captured at its second occurrence");
  }
}

void run_case(const ParityCase& c, const std::string& device) {
  switch (c.op) {
    case Op::kForward: return run_forward(c, device);
    case Op::kInputGradient: return run_input_gradient(c, device);
    case Op::kParamGradient: return run_param_gradient(c, device);
    case Op::kOutputs: return run_outputs(c, device);
    case Op::kLangevin: return run_langevin(c, device);
    case Op::kNoisyLangevin: return run_noisy_langevin(c, device);
    case Op::kConditionalLangevin: return run_conditional_langevin(c, device);
    case Op::kValidate: return run_validate(c, device);
    case Op::kInitialBuffer: return run_initial_buffer(c, device);
    case Op::kShuffle: return run_shuffle(c, device);
    case Op::kLossGradient: return run_loss_gradient(c, device);
    case Op::kTrainRun: return run_train_run(c, device);
  }
  FAIL() << "op " << int(c.op) << " has no runner";
}

std::string case_name(const ::testing::TestParamInfo<ParityCase>& info) { return info.param.name(); }

// ---------------------------------------------------------------------------------------------------------
// A double-precision reference of the network (one image at a time, direct convolutions), for the tolerance
// table's basis. With tf32, every convolution operand (weights, activations, upstream gradients) is rounded to
// TF32 (10-bit mantissa, to nearest) first, as TF32 tensor cores see them.

double to_tf32(double v) {
  float f = float(v);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0xFFFu + ((u >> 13) & 1u)) & ~0x1FFFu;
  std::memcpy(&f, &u, 4);
  return double(f);
}

struct ReferenceNet {
  const NetSpec& net;
  const std::vector<float>& theta;
  bool tf32 = false;
  std::vector<std::vector<double>> z, a;  // per layer (cout, hout, wout)
  std::vector<double> x;                  // (in_c, in_h, in_w)

  double op(double v) const { return tf32 ? to_tf32(v) : v; }
  double w(const ConvShape& s, int co, int ci, int ky, int kx) const {
    return theta[size_t(s.w_off + ((int64_t(co) * s.cin + ci) * s.k + ky) * s.k + kx)];
  }

  double forward(const double* image) {
    const size_t layers = net.convs.size();
    z.assign(layers, {});
    a.assign(layers, {});
    x.assign(image, image + net.image_size());
    const std::vector<double>* in = &x;
    for (size_t l = 0; l < layers; ++l) {
      const ConvShape& s = net.convs[l];
      z[l].assign(size_t(s.cout) * s.hout * s.wout, 0.0);
      for (int co = 0; co < s.cout; ++co)
        for (int oy = 0; oy < s.hout; ++oy)
          for (int ox = 0; ox < s.wout; ++ox) {
            double acc = theta[size_t(s.b_off + co)];
            for (int ci = 0; ci < s.cin; ++ci)
              for (int ky = 0; ky < s.k; ++ky)
                for (int kx = 0; kx < s.k; ++kx) {
                  const int iy = oy * s.stride - s.pad + ky, ix = ox * s.stride - s.pad + kx;
                  if (iy >= 0 && iy < s.hin && ix >= 0 && ix < s.win)
                    acc += op(w(s, co, ci, ky, kx)) * op((*in)[(size_t(ci) * s.hin + iy) * s.win + ix]);
                }
            z[l][(size_t(co) * s.hout + oy) * s.wout + ox] = acc;
          }
      a[l].resize(z[l].size());
      for (size_t i = 0; i < z[l].size(); ++i) a[l][i] = z[l][i] / (1.0 + std::exp(-z[l][i]));
      in = &a[l];
    }
    double f = theta[size_t(net.dense_b_off)];
    for (int64_t j = 0; j < net.dense_in; ++j) f += double(theta[size_t(net.dense_w_off + j)]) * (*in)[size_t(j)];
    return f;
  }

  // After forward(): dx += df·∂f/∂x and grad += df·∂f/∂θ (either may be null).
  void backward(double df, double* dx, double* grad) {
    const size_t layers = net.convs.size();
    std::vector<double> da(size_t(net.dense_in));
    for (int64_t j = 0; j < net.dense_in; ++j) {
      da[size_t(j)] = df * theta[size_t(net.dense_w_off + j)];
      if (grad) grad[net.dense_w_off + j] += df * a[layers - 1][size_t(j)];
    }
    if (grad) grad[net.dense_b_off] += df;
    for (size_t l = layers; l-- > 0;) {
      const ConvShape& s = net.convs[l];
      const std::vector<double>& in = l > 0 ? a[l - 1] : x;
      std::vector<double> din(in.size(), 0.0);
      for (int co = 0; co < s.cout; ++co)
        for (int oy = 0; oy < s.hout; ++oy)
          for (int ox = 0; ox < s.wout; ++ox) {
            const size_t o = (size_t(co) * s.hout + oy) * s.wout + ox;
            const double sg = 1.0 / (1.0 + std::exp(-z[l][o]));
            const double dz = da[o] * sg * (1.0 + z[l][o] * (1.0 - sg));
            if (grad) grad[s.b_off + co] += dz;
            for (int ci = 0; ci < s.cin; ++ci)
              for (int ky = 0; ky < s.k; ++ky)
                for (int kx = 0; kx < s.k; ++kx) {
                  const int iy = oy * s.stride - s.pad + ky, ix = ox * s.stride - s.pad + kx;
                  if (iy < 0 || iy >= s.hin || ix < 0 || ix >= s.win) continue;
                  const size_t i = (size_t(ci) * s.hin + iy) * s.win + ix;
                  if (grad) grad[s.w_off + ((int64_t(co) * s.cin + ci) * s.k + ky) * s.k + kx] += op(dz) * op(in[i]);
                  din[i] += op(dz) * op(w(s, co, ci, ky, kx));
                }
          }
      if (l == 0 && dx)
        for (size_t i = 0; i < din.size(); ++i) dx[i] += din[i];
      da.swap(din);
    }
  }
};

// The tolerance that `t` leaves to one backend's rounding: the other gets as much, and half is margin.
Tol part_of(const Tol& t, double part) {
  return {t.name, t.abs * part, t.scaled * part, t.rel * part, t.why};
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// The table, on the GPU against the CPU.

class CudaParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(CudaParity, Op) {
  REQUIRE_CUDA();
  run_case(GetParam(), "cuda");
}

INSTANTIATE_TEST_SUITE_P(, CudaParity, ::testing::ValuesIn(parity_table()), case_name);

// The table with a second CPU backend as the device: runs everywhere, and checks the harness (rebuilt rows,
// the independent loss gradient, non-trivial floors) where no GPU is.
class ParityHarness : public ::testing::TestWithParam<ParityCase> {};

TEST_P(ParityHarness, Op) { run_case(GetParam(), "cpu"); }

INSTANTIATE_TEST_SUITE_P(, ParityHarness, ::testing::ValuesIn(parity_table()), case_name);

// ---------------------------------------------------------------------------------------------------------
// GPU tests outside the table.

TEST_F(CudaParity, FreshBackendMatchesCpuState) {
  REQUIRE_CUDA();
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto cuda = make_backend("cuda", o);
  const BackendFacts facts = cuda->facts();
  EXPECT_EQ(facts.kind, BackendKind::kCuda);
  EXPECT_TRUE(facts.graphs) << "EngineOptions::graphs is on";
  EXPECT_EQ(facts.graph_captures, 0);
  EXPECT_TRUE(facts.deterministic);
  EXPECT_NE(cuda->describe().find("cuDNN"), std::string::npos) << cuda->describe();  // for people, not parsed
  EXPECT_EQ(cuda->params(), cpu.params());        // the same host initialiser
  EXPECT_EQ(cuda->rng_state(), cpu.rng_state());  // the initial buffer fill accounted for on both
  const Tensor b = cuda->buffer();
  ASSERT_EQ(b.dim(0), o.buffer_initial);
  for (float v : b.data) ASSERT_TRUE(v >= -1.0f && v <= 1.0f) << "initial buffer noise outside [-1, 1]: " << v;
}

TEST_F(CudaParity, AdamStep) {
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
  EXPECT_TRUE(near(cuda->params(), cpu.params(), kAdam, "theta", {.net = &o.net}));
  EXPECT_TRUE(near(b.m, a.m, kAdam, "m", {.net = &o.net}));
  EXPECT_TRUE(near(b.v, a.v, kAdam, "v", {.net = &o.net}));
}

TEST_F(CudaParity, BufferRoundTrip) {
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

TEST_F(CudaParity, GraphReplayMatchesEager) {
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
  expect_captured(*graph, 1, "one capture: the full-batch step, at its second occurrence");
  EXPECT_FALSE(eager->facts().graphs);
  EXPECT_EQ(eager->facts().graph_captures, 0);
  EXPECT_EQ(graph->params(), eager->params());
  EXPECT_EQ(graph->gradient(), eager->gradient());
  EXPECT_EQ(graph->buffer().data, eager->buffer().data);
  EXPECT_EQ(graph->rng_state(), eager->rng_state());
  const AdamState ag = graph->adam(), ae = eager->adam();
  EXPECT_EQ(ag.m, ae.m);
  EXPECT_EQ(ag.v, ae.v);
  const auto mg = graph->drain_metrics(), me = eager->drain_metrics();
  ASSERT_EQ(mg.size(), me.size());
  for (size_t i = 0; i < mg.size(); ++i) EXPECT_EQ(as_vector(mg[i]), as_vector(me[i])) << "step " << i;
}

TEST_F(CudaParity, GraphReplaysDrawFreshNoise) {
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
  expect_captured(*cuda, 1, "the full-batch step, captured at its second occurrence");
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

// Tool calls on more rows than a training step holds (2·batch), then training and validation: every buffer
// a step touches (activations and the step's scratch: dx, f, df, ones) must have grown with the rows, and
// must still serve the step afterwards. 40 rows at batch 8.
void run_rows_beyond_a_step(const std::string& device) {
  const EngineOptions o = parity_options();
  CpuBackend cpu(o);
  auto dev = make_backend(device, o);
  const Tensor x = random_images(40, 21);
  std::vector<float> fc, fd;
  Tensor gc, gd;
  cpu.input_grad(x, fc, gc);
  dev->input_grad(x, fd, gd);
  ASSERT_TRUE(varies(gc.data, "df/dx on the cpu"));
  EXPECT_TRUE(near(gd.data, gc.data, kInputGrad, "df/dx, 40 rows"));
  const std::vector<float> w = random_vector(40, 22, -1.0f, 1.0f);
  std::vector<float> pc, pd;
  cpu.param_grad(x, w, fc, pc);
  dev->param_grad(x, w, fd, pd);
  EXPECT_TRUE(near(pd, pc, kParamGrad, "dtheta, 40 rows", {.net = &o.net}));
  Tensor a = x, b = x;
  const SamplerParams p{2, 10.0f, 0.005f, 0.03f};
  cpu.sample(a, p, 31);
  dev->sample(b, p, 31);
  EXPECT_TRUE(near(b.data, a.data, kLangevin, "x after 2 steps, 40 rows"));
  align(*dev, cpu);
  const Tensor data = random_images(12, 23);
  cpu.set_train_data(data);
  dev->set_train_data(data);
  for (int64_t b2 = 0; b2 < cpu.batches_per_epoch(); ++b2) {
    cpu.train_step(b2);
    dev->train_step(b2);
  }
  const auto mc = cpu.drain_metrics(), md = dev->drain_metrics();
  ASSERT_EQ(md.size(), mc.size());
  for (size_t i = 0; i < mc.size(); ++i)
    EXPECT_TRUE(near(as_vector(md[i]), as_vector(mc[i]), kMetrics, "step " + std::to_string(i) + " metrics"));
  EXPECT_TRUE(near(dev->buffer().data, cpu.buffer().data, kLangevin, "replay buffer after the epoch"));
  const Tensor test = random_images(19, 24);
  EXPECT_TRUE(near(as_vector(dev->validate(test, 1)), as_vector(cpu.validate(test, 1)), kMetrics, "validation"));
}

TEST_F(CudaParity, RowsBeyondATrainingStep) {
  REQUIRE_CUDA();
  run_rows_beyond_a_step("cuda");
}

TEST_F(ParityHarness, RowsBeyondATrainingStep) { run_rows_beyond_a_step("cpu"); }

// ---------------------------------------------------------------------------------------------------------
// The harness's own checks (CPU only, every machine).

TEST_F(ParityHarness, TableNamesAreUniqueAndShapesDiffer) {
  std::vector<std::string> names;
  for (const ParityCase& c : parity_table()) names.push_back(c.name());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end()) << "two cases share a name";
  // The three shapes are three networks: the same images give other energies (a table whose shapes all built
  // the seed's network would compare one case three times).
  const Tensor x = random_images(16, 1);
  std::vector<std::vector<float>> f;
  for (const Shape* s : {&kSeedNet, &kWideNet, &kDeepNet}) {
    EngineOptions o = parity_options();
    o.net = NetSpec::make(s->channels, 3, 2, 32);
    CpuBackend cpu(o);
    f.push_back(cpu.energy(x));
    EXPECT_TRUE(varies(f.back(), std::string(s->name) + ": f"));
  }
  for (size_t i = 0; i < f.size(); ++i)
    for (size_t j = i + 1; j < f.size(); ++j)
      EXPECT_FALSE(near(f[j], f[i], kTf32, "", {.quiet = true})) << "shapes " << i << " and " << j << " agree";
}

TEST_F(ParityHarness, EveryToleranceRejectsAFivePercentError) {
  // Values of one sign and of a few sizes (parameter-gradient-like): 5% more everywhere must fail each tolerance
  // — the one reason a comparison is made.
  const std::vector<float> want = random_vector(4096, 21, 0.01f, 1.0f);
  std::vector<float> off(want);
  for (float& v : off) v *= 1.05f;
  for (const Tol* t : kToleranceTable) {
    if (t == &kTrainParams) continue;  // θ: absolute, in units of lr (a 5% error in θ is ~1e-2)
    EXPECT_FALSE(near(off, want, *t, "", {.quiet = true})) << "tolerance '" << t->name << "' passes a 5% error";
    EXPECT_TRUE(near(want, want, *t, "", {.quiet = true})) << t->name;
  }
  std::vector<float> theta = random_vector(4096, 22, -0.5f, 0.5f), stepped(theta);
  for (float& v : stepped) v += 1e-4f;  // one Adam step
  EXPECT_FALSE(near(stepped, theta, kTrainParams, "", {.quiet = true})) << "kTrainParams passes a whole step";
}

TEST_F(ParityHarness, CpuWithinAQuarterOfEachTolerance) {
  // The CPU backend's float32 results against the double-precision reference: each must use at most a quarter
  // of its float32 tolerance (the GPU's rounding gets as much, half is margin), and TF32 emulated in the
  // reference at most half of kTf32 (TF32 hardware may truncate instead of round: twice the error). Under ASan, 4
  // images instead of 32 (the double reference, 55 s there at 8, is most of the time; the CPU backend's paths are the
  // same).
  for (const Shape* s : {&kSeedNet, &kWideNet, &kDeepNet}) {
    EngineOptions o = parity_options();
    o.net = NetSpec::make(s->channels, 3, 2, 32);
    o.batch_size = 32;
    CpuBackend cpu(o);
    const int n = test::kSanitized ? 4 : 32;
    const int64_t img = o.net.image_size();
    const Tensor x = random_images(n, 1);
    const std::vector<float> w = random_vector(size_t(n), 4, -1.0f, 1.0f), theta = cpu.params();
    std::vector<float> fc, unused, gc;
    Tensor dxc;
    cpu.input_grad(x, fc, dxc);
    cpu.param_grad(x, w, unused, gc);
    for (bool tf32 : {false, true}) {
      ReferenceNet ref{o.net, theta, tf32, {}, {}, {}};
      std::vector<double> f(static_cast<size_t>(n)), dx(static_cast<size_t>(n * img), 0.0),
          g(static_cast<size_t>(o.net.num_params), 0.0);
      for (int i = 0; i < n; ++i) {
        const std::vector<double> image(x.data.begin() + i * img, x.data.begin() + (i + 1) * img);
        f[size_t(i)] = ref.forward(image.data());
        ref.backward(1.0, dx.data() + i * img, nullptr);
        ref.backward(w[size_t(i)], nullptr, g.data());
      }
      const std::string at = std::string(s->name) + (tf32 ? ", reference in TF32" : "");
      EXPECT_TRUE(near(fc, f, tf32 ? part_of(kTf32, 0.5) : part_of(kForward, 0.25), "f, " + at));
      EXPECT_TRUE(near(dxc.data, dx, tf32 ? part_of(kTf32, 0.5) : part_of(kInputGrad, 0.25), "df/dx, " + at));
      EXPECT_TRUE(near(gc, g, tf32 ? part_of(kTf32, 0.5) : part_of(kParamGrad, 0.25), "dtheta, " + at, {.net = &o.net}));
    }
    // Three noisy Langevin steps (the training sampler) on 4 images: the same normals, everything else in double.
    const int m = 4;
    Tensor xs = random_images(m, 6);
    const std::vector<double> start(xs.data.begin(), xs.data.end());
    const SamplerParams p{3, 10.0f, 0.005f, 0.03f};
    cpu.sample(xs, p, 123);
    for (bool tf32 : {false, true}) {
      ReferenceNet ref{o.net, theta, tf32, {}, {}, {}};
      std::vector<double> xd = start;
      Rng noise(123, RngStream::kGenerate);
      std::vector<float> normals(size_t(m * img));
      for (int step = 0; step < p.steps; ++step) {
        noise.normal(normals.data(), m * img, 0.0f, 1.0f);
        for (size_t i = 0; i < xd.size(); ++i) xd[i] = std::clamp(xd[i] + double(p.noise) * normals[i], -1.0, 1.0);
        for (int i = 0; i < m; ++i) {
          std::vector<double> dfdx(size_t(img), 0.0);
          ref.forward(xd.data() + i * img);
          ref.backward(1.0, dfdx.data(), nullptr);
          for (int64_t k = 0; k < img; ++k) {
            double& v = xd[size_t(i * img + k)];
            v = std::clamp(v - double(p.step_size) * std::clamp(-dfdx[size_t(k)], -double(p.grad_clip), double(p.grad_clip)),
                           -1.0, 1.0);
          }
        }
      }
      EXPECT_TRUE(near(xs.data, xd, tf32 ? part_of(kTf32Langevin, 0.5) : part_of(kLangevin, 0.25),
                       std::string("x after 3 Langevin steps, ") + s->name + (tf32 ? ", reference in TF32" : "")));
    }
  }
}
