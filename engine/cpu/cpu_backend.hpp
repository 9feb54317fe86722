// The CPU backend: the reference every other backend is tested against.
//
// Data-parallel (EngineOptions::comm with W > 1 ranks): global batch G = batch_size·W. Every rank computes
// the same epoch permutation and takes its share of each global batch's rows (engine/communicator.hpp
// share_of), holds a 1/W shard of the replay buffer, and draws its rows' slice of each *global* random
// stream (element offsets, all ranks advancing every offset by the global draw), so the real noise, fresh
// rows and Langevin noise of a W-rank step are the numbers a 1-rank step with batch G draws for the same
// rows. dL/df is scaled by the global real/fake counts, so the all-reduced SUM of the ranks' gradients is
// the 1-rank gradient up to float summation order; metrics are all-reduced sums.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "engine/backend.hpp"
#include "engine/cpu/cpu_net.hpp"
#include "engine/cpu/replay_buffer.hpp"
#include "engine/rng.hpp"

namespace ebm {

// The instruction set the backend's own kernels were compiled for: "avx512", "avx2+fma", "aarch64" or "baseline",
// followed by the copy of the vector kernels chosen at run time where it is another (engine/cpu/small_gemm.hpp:
// "baseline (vector kernels avx512)" in a portable build on an AVX-512 CPU). With the GEMM library's kernels
// (gemm_provider), what a run's last bits depend on (README: Reproducibility).
std::string cpu_kernel_isa();
// The threads a CpuBackend made now runs (OMP_NUM_THREADS where set, else one per core).
int cpu_backend_threads();
// Under an address-space limit (ulimit -v), the bytes a CpuBackend of `threads` threads maps besides its data:
// OpenBLAS's work buffer for each thread that has none yet, a stack for each thread OpenMP has not made yet
// (engine/address_space.hpp); 0 without a limit.
double cpu_backend_address_space(int threads);

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const EngineOptions& opt);

  std::string describe() const override;
  BackendFacts facts() const override { return {BackendKind::kCpu, false, 0, true}; }
  const EngineOptions& options() const override { return opt_; }

  void set_params(const std::vector<float>& flat) override;
  std::vector<float> params() override { return params_; }
  void set_adam(const AdamState& s) override;
  AdamState adam() override { return adam_; }
  void set_buffer(const Tensor& images) override;
  Tensor buffer() override;
  std::vector<int32_t> buffer_classes() override;
  void set_class_buffer(const Tensor& images, const std::vector<int32_t>& classes) override;
  void set_rng_state(const std::vector<uint64_t>& s) override;
  std::vector<uint64_t> rng_state() override;
  void set_lr(double lr) override { opt_.lr = lr; }
  void reseed(uint64_t seed) override;
  void set_ema(const std::vector<float>& flat) override;
  std::vector<float> ema() override { return ema_; }
  void set_sn_state(const std::vector<float>& u) override;
  std::vector<float> sn_state() override { return sn_u_; }
  std::vector<float> sampling_params() override;

  void set_train_data(const Tensor& train) override;
  void set_train_labels(const std::vector<int32_t>& labels) override;
  void begin_epoch(int64_t epoch) override;
  int64_t batches_per_epoch() const override;
  void train_step(int64_t batch) override;
  std::vector<StepMetrics> drain_metrics() override;
  std::vector<int64_t> permutation() override { return perm_; }
  std::vector<float> gradient() override { return grad_; }

  std::vector<float> energy(const Tensor& x) override;
  std::vector<float> outputs(const Tensor& x, std::vector<float>* features = nullptr) override;
  ValidationMetrics validate(const Tensor& test, int64_t epoch) override;
  void sample(Tensor& x, const SamplerParams& p, uint64_t seed, int every = 0,
              std::vector<Tensor>* trajectory = nullptr, const std::vector<int32_t>* classes = nullptr) override;

  void input_grad(const Tensor& x, std::vector<float>& f, Tensor& dfdx) override;
  void param_grad(const Tensor& x, const std::vector<float>& w, std::vector<float>& f,
                  std::vector<float>& grad) override;
  void adam_step(const std::vector<float>& grad) override;
  bool data_parallel() const override { return true; }

 private:
  std::vector<int64_t> image_shape() const { return {opt_.net.in_c, opt_.net.in_h, opt_.net.in_w}; }
  bool distributed() const { return world_ > 1; }
  int64_t global_batch() const { return int64_t(opt_.batch_size) * world_; }

  // x [n, image] refined in place; x's element i takes element first + i of the Langevin-noise stream, and
  // each step advances by philox_blocks(total) (a W-rank step draws its rows' slice of the global draw).
  // w: the weights the chains run on (the training weights in train_step, the sampling weights in sample()).
  // K > 1: the chains descend E = −s (classes null) or E(x, y_i) = −f_{y_i} (classes [n]).
  void langevin(const float* w, float* x, int n, const SamplerParams& p, Rng& rng, int64_t first, int64_t total,
                const int32_t* classes = nullptr);
  void fill_initial_buffer();
  // fake [batch, image]: this rank's rows of the global buffer draw (W > 1; see cpu_backend.cpp).
  void draw_fake_shard(float* fake);
  StepMetrics sharded_loss(int64_t n_real, int64_t global_fake);
  StepMetrics jem_loss(int64_t n_real, int64_t global_fake);
  ValidationMetrics validate_sharded(const Tensor& test, int64_t epoch);

  // Splits n rows over the threads; each runs its own network on its slice, so the K Langevin steps
  // need no barrier at all and GEMMs stay single-threaded and cache-sized.
  template <class Fn>
  void parallel_rows(int n, Fn&& fn);
  // Rows [0, n) in chunks of at most max_chunk rows — fewer where n is small for the threads, so that each gets one
  // (16 rows on 16 threads: one each) — handed to the threads one at a time as each finishes its last, so a core
  // slowed by other work (a busy SMT sibling, another tenant) takes fewer: fn(net, a, b) per chunk on the thread's
  // net, after start(net) once per thread (and net.release_weights() after its last). For work whose rows are
  // independent (the Langevin chains): the results do not depend on which thread ran a chunk.
  template <class Start, class Fn>
  void parallel_chunks(int n, int max_chunk, Start&& start, Fn&& fn);
  // grad_ = Σ over threads of their partial parameter gradients, in thread order (deterministic).
  void reduce_grads(int n);
  void forward_rows(const float* w, const float* x, int n, float* f);  // f [n] = s(x; w), x [n, image]
  bool ema_on() const { return opt_.ema_decay > 0; }
  bool sn_on() const { return opt_.spectral_norm; }
  // eff(θ, u) into scratch_w_ (u not updated), or θ itself without spectral norm.
  const float* training_weights();
  // eff(θ_ema or θ, u) into scratch_w_ (u not updated), or θ_ema / θ without spectral norm.
  const float* sampling_weights();

  EngineOptions opt_;
  Communicator* comm_;
  int rank_, world_;
  std::vector<std::unique_ptr<CpuNet>> nets_;  // one per thread
  std::vector<std::vector<float>> grads_;      // per-thread partial gradients
  std::vector<float> params_, grad_;
  AdamState adam_;
  std::vector<float> ema_;           // θ_ema [num_params] (EMA on)
  std::vector<float> sn_u_;          // u, all layers [sn_state_size] (spectral norm on)
  std::vector<float> step_w_;        // this step's W_sn [num_params] (spectral norm on)
  std::vector<float> sn_sigma_, sn_v_;  // this step's σ per layer and v [sn_v_size], for the backward
  std::vector<float> scratch_w_;     // training_weights() / sampling_weights()
  ReplayBuffer buffer_;                           // empty (capacity 0) with buffer_per_class
  std::optional<ClassReplayBuffer> class_buffer_;  // buffer_per_class: one ring per class
  std::vector<int32_t> fake_y_;                    // buffer_per_class: this step's fake rows' classes [batch]
  Rng rng_real_, rng_choice_, rng_fresh_, rng_langevin_;
  const Tensor* train_ = nullptr;  // owned by the caller, outlives training
  std::vector<int64_t> perm_;
  std::vector<float> batch_, f_, df_, dfdx_, noise_, ones_, logits_;
  std::vector<int32_t> labels_, y_;  // the training set's classes [N] (objective kJem); this step's real rows' [nr]
  std::vector<StepMetrics> pending_;
};

}  // namespace ebm
