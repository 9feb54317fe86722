// The backend interface: one training engine, two implementations — `cpu` (the reference, everywhere)
// and `cuda` (cuDNN + fused kernels + CUDA graphs). A backend owns everything a training step touches
// (parameters, Adam moments, replay buffer, random streams, the resident training set), so that on a GPU
// a step never leaves the device; the host reads state back only for checkpoints, metrics and tools.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/net.hpp"
#include "engine/tensor.hpp"

namespace ebm {

class Communicator;  // engine/communicator.hpp

// Which implementation runs, and the facts about it that tools and tests check (typed, never parsed from
// describe()'s text).
enum class BackendKind { kCpu, kCuda };
inline const char* backend_name(BackendKind k) { return k == BackendKind::kCuda ? "cuda" : "cpu"; }

// Which fused-chain kernel runs the Langevin chains of a net with fused_langevin (config cuda.chain):
//   kGeneric   kernels/langevin_chain.cuh: any net that fits shared memory, shapes at run time (the first design);
//   kTiled     kernels/langevin_chain_tiled.cuh with the weights read from global memory (L1/L2);
//   kResident  the same with the weights on chip: leading layers in shared memory, the rest streamed through a ring.
// kTiled and kResident exist for the nets compiled in (kernels/langevin_chain_tiled_nets.hpp). kAuto: resident where
// the net is compiled in and fits, else tiled, else generic (engine/langevin_chain_plan.hpp).
enum class ChainKernel { kAuto, kGeneric, kTiled, kResident };
inline const char* chain_kernel_name(ChainKernel k) {
  return k == ChainKernel::kGeneric ? "generic" : k == ChainKernel::kTiled ? "tiled"
                                                 : k == ChainKernel::kResident ? "resident" : "auto";
}

struct BackendFacts {
  BackendKind kind = BackendKind::kCpu;
  bool graphs = false;         // cuda: full training steps replay a captured CUDA graph (false: eager, by
                               // EngineOptions::graphs or because a capture failed)
  int64_t graph_captures = 0;  // CUDA graphs captured so far (the training step's and sample()'s chunks)
  bool deterministic = true;   // the same state gives the same bits in another process (cuda: algorithms
                               // chosen by cuDNN's heuristics, not by timing)
  bool fused_langevin = false; // cuda: Langevin chains run as one fused kernel (kernels/langevin_chain.cuh);
                               // false: per layer (EngineOptions::fused_langevin off, or the net does not fit)
  ChainKernel chain_kernel = ChainKernel::kGeneric;  // with fused_langevin: which kernel (never kAuto)
  bool chain_tf32 = false;  // with a tiled chain kernel: its layers after the first on TF32 tensor cores
};

// What training minimises (config train.objective; engine/loss.hpp):
//   kCd   the seed's contrastive divergence on f (K = 1);
//   kJem  JEM: softmax cross-entropy on the labelled real rows plus contrastive divergence on s = logsumexp f (K > 1).
enum class Objective { kCd, kJem };
inline const char* objective_name(Objective o) { return o == Objective::kJem ? "jem" : "cd"; }

struct SamplerParams {
  int steps = 100;
  float step_size = 10.0f, noise = 0.005f, grad_clip = 0.03f;
};

struct EngineOptions {
  NetSpec net;
  uint64_t seed = 42;
  int batch_size = 128;
  SamplerParams sampler;
  int buffer_capacity = 8192, buffer_initial = 128;
  double reinit_prob = 0.05;
  // buffer.per_class (objective kJem): the replay buffer as one ring per class (engine/cpu/replay_buffer.hpp
  // ClassReplayBuffer); each training chain draws a class and runs on E(x, y) = −f_y(x). CPU backend, one process.
  bool buffer_per_class = false;
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-7;
  double alpha = 0.1, real_noise = 0.005;
  int shift = 0;  // data.shift: each real row moved by up to ±shift pixels per step (kernels/augment.hpp); 0 = none
  Objective objective = Objective::kCd;
  double cd_weight = 1.0, ce_weight = 1.0;  // kJem: the two terms' weights (engine/loss.hpp)
  bool tf32 = false;          // cuda only: TF32 tensor cores in the convolutions
  int device = 0;             // cuda only
  bool graphs = true;         // cuda only: replay training steps and sample chunks from CUDA graphs
  bool deterministic = true;  // cuda only: cuDNN algorithms by heuristics (same in every process: exact
                              // resume) instead of by timing (the fastest here, chosen anew by each process)
  bool fused_langevin = false;  // cuda only: run Langevin chains (training and sample()) as one fused kernel per
                                // chain where the net fits its shared-memory budget (cuda.langevin "fused")
  ChainKernel chain_kernel = ChainKernel::kAuto;  // cuda only, with fused_langevin: which kernel (cuda.chain)
  bool chain_tf32 = false;  // cuda only (cuda.precision "tf32"): the tiled chain's layers after the first on TF32
                            // tensor cores (fp32 sums; the generic chain and the CPU stay fp32)
  // Training recipe (both off by default: then every result is what it was without them).
  //   ema_decay d in [0, 1): after every Adam update θ_ema ← d·θ_ema + (1−d)·θ (0 = no EMA).
  //   spectral_norm: weights divided by their largest singular value, one power iteration per training step
  //   (engine/spectral_norm.hpp: eff(θ, u), its backward, the u state).
  double ema_decay = 0;
  bool spectral_norm = false;
  // Data-parallel training (not owned; null or size 1 = this process alone). With W ranks, batch_size is
  // the per-rank batch (global batch = batch_size·W), buffer_capacity and buffer_initial are global (each
  // rank holds its 1/W shard), and train_step/validate reduce over all ranks.
  Communicator* comm = nullptr;
};

struct AdamState {
  std::vector<float> m, v;  // [num_params] each
  int64_t t = 0;            // steps taken
};

// One training step's numbers (the seed's Keras metrics), plus what the divergence guard needs.
struct StepMetrics {
  double loss = 0, reg = 0, cdiv = 0, real = 0, fake = 0;
  double max_abs_f = 0;  // over the step's real and fake rows; NaN/inf propagate
  // train.objective "jem" (engine/loss.hpp): the real rows' cross-entropy and accuracy (0 with "cd"). There,
  // real/fake/cdiv/reg are of s = logsumexp f and loss = cd_weight·(cdiv + reg) + ce_weight·ce.
  double ce = 0, accuracy = 0;
};

struct ValidationMetrics {
  double cdiv = 0, real = 0, fake = 0;  // mean f(test) − mean f(uniform noise), and the two means
  double max_abs_f = 0;  // over every test and noise row, for the divergence guard; NaN when any f is NaN/inf
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string describe() const = 0;  // for people: device, library versions, threads
  virtual BackendFacts facts() const = 0;
  virtual const EngineOptions& options() const = 0;

  // --- state, as host snapshots (a sync point on the GPU) ---
  virtual void set_params(const std::vector<float>& flat) = 0;
  virtual std::vector<float> params() = 0;
  virtual void set_adam(const AdamState& s) = 0;
  virtual AdamState adam() = 0;
  virtual void set_buffer(const Tensor& images) = 0;  // [n,C,H,W], oldest first
  virtual Tensor buffer() = 0;
  // With buffer_per_class, buffer() holds ring 0's images oldest first, then ring 1's, ...; buffer_classes() each
  // image's class in that order ([n] in [0, K); empty without per-class rings). set_class_buffer restores both
  // (set_buffer is refused there). A backend without per-class rings refuses set_class_buffer.
  virtual std::vector<int32_t> buffer_classes() { return {}; }
  virtual void set_class_buffer(const Tensor& images, const std::vector<int32_t>& classes) {
    (void)images;
    (void)classes;
    user_fail("buffer.per_class: this backend keeps no per-class replay buffer (the cpu backend does)");
  }
  virtual void set_rng_state(const std::vector<uint64_t>& s) = 0;
  virtual std::vector<uint64_t> rng_state() = 0;
  virtual void set_lr(double lr) = 0;
  virtual void reseed(uint64_t seed) = 0;  // new random streams (divergence rollback)
  // The recipe's state. θ_ema [num_params] (empty when ema_decay = 0): set_params(θ) also sets θ_ema = θ, so
  // set_ema comes after it. The spectral norm's u vectors [sn_state_size(net)] (empty when off), layer by
  // layer as engine/spectral_norm.hpp orders them. Setting either while its feature is off is an error.
  virtual void set_ema(const std::vector<float>& flat) = 0;
  virtual std::vector<float> ema() = 0;
  virtual void set_sn_state(const std::vector<float>& u) = 0;
  virtual std::vector<float> sn_state() = 0;
  // The weights sample() and energy() use [num_params]: eff(θ_ema if EMA is on else θ, u) with u not
  // updated (without spectral norm, eff is the identity: θ_ema or θ). Checkpoints' model.safetensors holds
  // them. Training (its replay-buffer Langevin chains and loss) and validate() use the training weights,
  // eff(θ, u) (θ without spectral norm); input_grad/param_grad/adam_step work on θ as set.
  virtual std::vector<float> sampling_params() = 0;

  // --- training ---
  virtual void set_train_data(const Tensor& train) = 0;  // [N,C,H,W]; kept resident
  // The training rows' classes [N] in [0, K), after set_train_data (objective kJem needs them; UserError naming
  // the first label out of range).
  virtual void set_train_labels(const std::vector<int32_t>& labels) = 0;
  virtual void begin_epoch(int64_t epoch) = 0;           // reshuffle, deterministic in (seed, epoch)
  virtual int64_t batches_per_epoch() const = 0;         // ceil(N / global batch): the last may be partial
  virtual void train_step(int64_t batch) = 0;            // batch index within the epoch
  virtual std::vector<StepMetrics> drain_metrics() = 0;  // every step's metrics since the last call
  // Parity checks: this epoch's order of training rows [N] (begin_epoch's shuffle), and the last gradient
  // [num_params] computed or applied: after train_step the loss gradient ∇θ(cdiv + reg) before Adam used it
  // (global over ranks; with spectral norm, dL/dθ of the raw θ); after param_grad or adam_step(g), that gradient.
  virtual std::vector<int64_t> permutation() = 0;
  virtual std::vector<float> gradient() = 0;

  // --- evaluation and tools ---
  // K = options().net.outputs. With K > 1 the net's unconditional value is s(x) = logsumexp_k f_k(x) (JEM; E = −s),
  // which energy, validate, input_grad and sample use (for K = 1, s = f). train_step with K > 1 needs objective
  // kJem and its labels; a classifier for ebm_eval is trained through outputs + param_grad + adam_step.
  virtual std::vector<float> energy(const Tensor& x) = 0;  // s(x) per image (E = −s)
  // f [n][K] row-major for x [n,C,H,W]; with `features`, also the dense layer's input [n][D] row-major: the last
  // conv activation NCHW-flattened (D = C·H·W), the "penultimate features" FID takes.
  virtual std::vector<float> outputs(const Tensor& x, std::vector<float>* features = nullptr) = 0;
  virtual ValidationMetrics validate(const Tensor& test, int64_t epoch) = 0;
  // Langevin chains from `x` in place, noise from stream (seed, kGenerate). When `every` > 0, a copy
  // of x is appended to `trajectory` before the first step and after every `every` steps. With `classes`
  // ([n] in [0, K), K > 1) chain i runs on the class-conditional energy E(x, y_i) = −f_{y_i}(x) instead of
  // E(x) = −s(x).
  virtual void sample(Tensor& x, const SamplerParams& p, uint64_t seed, int every = 0,
                      std::vector<Tensor>* trajectory = nullptr, const std::vector<int32_t>* classes = nullptr) = 0;

  // --- single ops, for parity tests and gradient checks ---
  virtual void input_grad(const Tensor& x, std::vector<float>& f, Tensor& dfdx) = 0;  // s_i and ∂s_i/∂x_i
  // w and f [n·K] row-major (w_ik weighs output k of image i): f = outputs(x), grad = ∂(Σ_ik w_ik f_ik)/∂θ.
  // A loss L(f) gives ∇θL with w = ∂L/∂f (softmax cross-entropy: w = (softmax(f_i) − onehot(y_i))/n).
  virtual void param_grad(const Tensor& x, const std::vector<float>& w, std::vector<float>& f,
                          std::vector<float>& grad) = 0;
  virtual void adam_step(const std::vector<float>& grad) = 0;

  // Brackets steady-state steps for `nsys --capture-range=cudaProfilerApi` (no-op on the CPU).
  virtual void set_profiling(bool on) {}

  // Whether this backend honours EngineOptions::comm (trains data-parallel with more than one rank).
  virtual bool data_parallel() const { return false; }
};

}  // namespace ebm
