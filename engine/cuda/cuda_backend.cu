// The CUDA backend: the CPU reference (engine/cpu/cpu_backend.cpp) step for step, on one device.
//
// Layout, beside CpuBackend: the network is a CudaNet (engine/cuda/cuda_net.cuh), the replay buffer a
// DeviceReplayBuffer (engine/cuda/device_replay_buffer.cuh); every kernel is reached through its launcher in
// kernels/ (this file launches none itself). A training step's rows are [real (nr); fake (batch)] in one
// buffer, so the loss pass is one forward and one backward over nr + batch rows. Everything a step touches is
// resident: parameters, Adam moments, replay buffer, training set and its permutation, Philox offsets and
// counters (DeviceState), per-step metrics (a ring read back by drain_metrics).
//
// Graphs: a full-batch train step is captured whole (data, Langevin loop, write-back, loss, backward, Adam)
// at its second occurrence (the first runs eagerly, which loads every kernel and cuDNN engine before capture)
// and replayed from then on; the partial last batch runs eagerly. sample() captures its Langevin chunk the
// second time it sees the same shape. Kernels read seeds, offsets, ring position and Adam's t from device
// memory, so replays draw fresh numbers.
//
// Random numbers: the engine's Philox streams (engine/rng.hpp) drawn in kernels through cuRAND's device API
// exactly as the CPU backend draws them (kernels/random.cuh), so the same state gives the same noise on both —
// the initial replay buffer included. The epoch order is the CPU's permutation (epoch_permutation), uploaded.
// rng_state() = {seed, real-noise, buffer-choice, buffer-fresh, langevin offsets}: CpuBackend's layout and
// meaning, so checkpoints resume on either backend.
//
// Data-parallel (EngineOptions::comm with W > 1 ranks, one GPU each; needs NCCL): CpuBackend's semantics
// (engine/cpu/cpu_backend.hpp) — global batch G = batch_size·W, rank r's share of each global batch's rows and its
// slice of every global random draw (kernels/sharded_step.cuh), a 1/W replay-buffer shard, dL/df over the global
// counts; the gradient (one flat buffer) and the loss sums are all-reduced by NCCL on its own stream, ordered
// by events, inside the captured graph: no host sync is added. sync() waits with a deadline and NCCL's error
// checks, so a dead or hung peer ends in CommError instead of a hang.
//
// Training recipe (engine/backend.hpp, engine/spectral_norm.hpp): with spectral norm, a step starts with
// (W_sn, u) ← eff(θ, u) into step_w_ (kernels/spectral_norm.cuh, one block per layer), runs its Langevin chains,
// loss and backward on step_w_, and turns dL/dW_sn into dL/dθ (after the all-reduce) before Adam; with EMA,
// θ_ema is updated after Adam (kernels/adam.cuh ema_step). All inside the captured step, on buffers allocated
// in the constructor. sample()/energy() run on the sampling weights and validate() on the training weights,
// each computed into its own fixed buffer (sample_w_, eval_w_) before use, so captured sample chunks keep
// their addresses.
//
// Options: EngineOptions::graphs = false (cuda.graphs) runs every step eagerly (debugging, profiling, the
// graph-vs-eager test); EngineOptions::deterministic (cuda.deterministic) picks cuDNN algorithms by
// heuristics instead of timing them; EngineOptions::fused_langevin (cuda.langevin "fused") runs each Langevin
// chain — the training step's and sample()'s chunks — as one launch of a chain kernel instead of
// K·(forward + backward + update) per-layer launches: EngineOptions::chain_kernel (cuda.chain) picks the tiled kernels
// (kernels/langevin_chain_tiled.cuh, after one packing kernel of the weights) for the nets compiled in, else the
// generic one (kernels/langevin_chain.cuh) where the net fits its shared memory, else the per-layer path; one line on
// stderr at construction says which (engine/langevin_chain_plan.hpp), and facts() records it.
//
// train.objective "jem" (a K-output net, engine/loss.hpp): the chains run on s = logsumexp f (or f_y for a class-
// conditional sample()) by the per-layer path, the forward's logits turned into the backward's upstream weights
// (softmax, or one-hot) by kernels/jem.cuh each step — the fused chain kernels take K = 1 only; the real rows'
// labels are gathered beside them from the resident label set; the loss is jem_loss_partials then jem_metrics
// (with the NCCL all-reduce between them on W ranks). energy(), validate() and input_grad() report s. data.shift
// moves the real rows inside gather_real (kernels/augment.hpp, the CPU's draws).
#include "engine/cuda/cuda_backend.hpp"

#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/communicator.hpp"
#include "engine/error.hpp"
#include "engine/langevin_chain_plan.hpp"  // chain_net_for, chain_refusal: whether the fused chain takes the net
#include "engine/loss.hpp"  // guard_max: the divergence guard's measure
#include "engine/rng.hpp"
#include "engine/spectral_norm.hpp"
#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/cuda_net.cuh"
#include "engine/cuda/cuda_raii.cuh"
#include "engine/cuda/device_replay_buffer.cuh"
#include "kernels/adam.cuh"
#include "kernels/device_state.cuh"
#include "kernels/fill.cuh"
#include "kernels/jem.cuh"
#include "kernels/langevin.cuh"
#include "kernels/langevin_chain.cuh"
#include "kernels/langevin_chain_tiled.cuh"
#include "kernels/loss.cuh"
#include "kernels/philox.hpp"
#include "kernels/probe.cuh"
#include "kernels/replay.cuh"
#include "kernels/sharded_step.cuh"
#include "kernels/spectral_norm.cuh"
#ifdef EBM_HAVE_NCCL
#include "engine/cuda/nccl_communicator.cuh"
#endif

namespace ebm {
namespace cuda {
namespace {

constexpr int kMaxSampleGraphs = 8;

std::string arch_of(const cudaDeviceProp& p) { return "sm_" + std::to_string(p.major) + std::to_string(p.minor); }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const EngineOptions& opt);
  ~CudaBackend() override { cudaStreamSynchronize(stream_.get()); }  // errors here have nowhere to go

  std::string describe() const override { return describe_; }
  BackendFacts facts() const override {
    return {BackendKind::kCuda, use_graphs_, captures_, opt_.deterministic, chain_.fused, chain_.kernel, chain_.tf32};
  }
  std::vector<int64_t> permutation() override {
    std::vector<int32_t> p(static_cast<size_t>(n_train_));
    download(p.data(), perm_.get(), n_train_);
    return {p.begin(), p.end()};
  }
  std::vector<float> gradient() override {
    std::vector<float> g(static_cast<size_t>(num_params()));
    download(g.data(), grad_.get(), num_params());
    return g;
  }
  const EngineOptions& options() const override { return opt_; }

  void set_params(const std::vector<float>& flat) override;
  std::vector<float> params() override;
  void set_adam(const AdamState& s) override;
  AdamState adam() override;
  void set_buffer(const Tensor& images) override;
  Tensor buffer() override;
  void set_rng_state(const std::vector<uint64_t>& s) override;
  std::vector<uint64_t> rng_state() override;
  void set_lr(double lr) override;
  void reseed(uint64_t seed) override;
  void set_ema(const std::vector<float>& flat) override;
  std::vector<float> ema() override;
  void set_sn_state(const std::vector<float>& u) override;
  std::vector<float> sn_state() override;
  std::vector<float> sampling_params() override;

  void set_train_data(const Tensor& train) override;
  void set_train_labels(const std::vector<int32_t>& labels) override;
  void begin_epoch(int64_t epoch) override;
  int64_t batches_per_epoch() const override { return (n_train_ + global_batch() - 1) / global_batch(); }
  void train_step(int64_t batch) override;
  std::vector<StepMetrics> drain_metrics() override;

  std::vector<float> energy(const Tensor& x) override;
  std::vector<float> outputs(const Tensor& x, std::vector<float>* features) override;
  ValidationMetrics validate(const Tensor& test, int64_t epoch) override;
  void sample(Tensor& x, const SamplerParams& p, uint64_t seed, int every, std::vector<Tensor>* trajectory,
              const std::vector<int32_t>* classes) override;

  void input_grad(const Tensor& x, std::vector<float>& f, Tensor& dfdx) override;
  void param_grad(const Tensor& x, const std::vector<float>& w, std::vector<float>& f,
                  std::vector<float>& grad) override;
  void adam_step(const std::vector<float>& grad) override;

#ifdef EBM_HAVE_NCCL
  bool data_parallel() const override { return true; }
#endif

  // nsys --capture-range=cudaProfilerApi: the range starts and ends with the device idle.
  void set_profiling(bool on) override {
    sync();
    EBM_CUDA_CHECK(on ? cudaProfilerStart() : cudaProfilerStop());
  }

 private:
  int64_t img() const { return opt_.net.image_size(); }
  int64_t global_batch() const { return int64_t(opt_.batch_size) * world_; }
  int64_t num_params() const { return opt_.net.num_params; }
  int64_t outputs_per_row() const { return opt_.net.outputs; }  // K
  cudaStream_t stream() const { return stream_.get(); }
  DeviceState* st() const { return state_.get(); }
  std::vector<int64_t> image_shape() const { return {opt_.net.in_c, opt_.net.in_h, opt_.net.in_w}; }

  void invalidate_graphs() {
    train_graph_.reset();
    sample_graphs_.clear();
  }

  // x (n, img) refined in place; normals from stream `rng` at (*seed, *offset + k·blocks) for step k, where
  // blocks = philox_blocks(stride) (stride 0: n·img; a rank of a data-parallel step: G·img, the global draw).
  // w: the weights the chains run on.
  // classes (n, device): a class-conditional chain on f_y (K > 1); null: on s = logsumexp f (f itself for K = 1).
  void langevin(const float* w, float* x, int n, const SamplerParams& p, RngStream rng, const uint64_t* seed,
                const uint64_t* offset, int64_t stride = 0, const int32_t* classes = nullptr);
  // dx_ (n, img) ← ∂s/∂x of rows x on weights w: s = f (K = 1), logsumexp f, or f_y with classes (n, device). The
  // forward's logits go to f_ when K > 1 or `logits` asks (K = 1 and no logits: the dense head is skipped).
  void input_gradient(const float* w, const float* x, int n, const int32_t* classes, bool logits);
  bool jem() const { return opt_.objective == Objective::kJem; }
  JemLossWeights jem_weights() const { return {float(opt_.alpha), float(opt_.cd_weight), float(opt_.ce_weight)}; }
  // out (c) = s of rows f (c, K) = the forward's logits; K = 1: f itself (no launch when out == f).
  void logsumexp_into(const float* f, int c, float* out);
  bool ema_on() const { return opt_.ema_decay > 0; }
  bool sn_on() const { return opt_.spectral_norm; }
  // Enqueue eff(θ, u) into eval_w_ (u not updated), or return θ without spectral norm.
  const float* training_weights();
  // Enqueue eff(θ_ema or θ, u) into sample_w_ (u not updated), or return θ_ema / θ without spectral norm.
  const float* sampling_weights();
  // nr real rows: this rank's share, from row real_first of a global batch of n_real (W = 1: 0 and nr).
  void enqueue_train_step(int nr, int64_t n_real, int64_t real_first);
  void run_sample_chunk(int n, const SamplerParams& q, bool conditional);
  void set_cursor(int64_t batch);
  // perm_ ← order (N indices; empty: the identity), through perm_host_.
  void upload_permutation(const std::vector<int64_t>& order);
  void collect_metrics();

  template <class T>
  void upload(T* dst, const T* src, int64_t n) {
    if (n > 0) EBM_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * size_t(n), cudaMemcpyHostToDevice, stream()));
  }
  template <class T>
  void download(T* dst, const T* src, int64_t n) {
    if (n > 0) EBM_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * size_t(n), cudaMemcpyDeviceToHost, stream()));
    sync();
  }
  float* stage(const Tensor& x);  // x → io_ (tool calls)
  void sync() {
#ifdef EBM_HAVE_NCCL
    if (nccl_) return nccl_->synchronize(stream());  // a deadline and NCCL's errors: a dead peer cannot hang it
#endif
    EBM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  }
  // A capture that fails (e.g. a library call that cannot be captured) must not stop training: say so
  // once, and run eagerly from then on. facts().graphs says so, so the graph test and the benchmark fail.
  void graphs_failed(const Error& e) {
    std::fprintf(stderr, "cuda: CUDA graph capture failed, running eagerly: %s\n", e.what());
    cudaGetLastError();
    use_graphs_ = false;
    describe_ += ", graphs off (capture failed)";
  }
  // The network's activations and the step's scratch (dx_, f_, df_, ones_) for n rows, both grown (never
  // `a || b`: that would skip the second); whatever captured the old addresses is stale once one moved.
  void rows_for(int n) {
    const bool net_moved = net_->reserve_rows(n);
    const bool scratch_moved = ensure_scratch(n);
    if (net_moved || scratch_moved) invalidate_graphs();
  }
  bool ensure_scratch(int n);
  DeviceState read_state();
  void write_state(const DeviceState& s);

  EngineOptions opt_;
  std::string describe_;
  bool use_graphs_ = true;
  Stream stream_;
  CudnnHandle cudnn_;
  DeviceBuffer<DeviceState> state_;                      // (1): declared before what keeps its address
  std::unique_ptr<CudaNet> net_;
  std::unique_ptr<DeviceReplayBuffer> buffer_;
  int scratch_rows_ = 0;                                 // rows dx_, f_, df_, ones_ hold

  DeviceBuffer<float> params_, grad_, adam_m_, adam_v_;  // (num_params)
  DeviceBuffer<float> ema_;                              // (num_params): θ_ema, EMA on
  DeviceBuffer<float> step_w_, eval_w_, sample_w_;       // (num_params): W_sn of the step / validate / sample
  DeviceBuffer<float> sn_u_, sn_u_scratch_;              // (Σ rows): u, and u' of the passes that keep u
  DeviceBuffer<float> sn_v_, sn_sigma_;                  // (Σ cols), (layers): the step's v and σ
  DeviceBuffer<SnLayerDesc> sn_layers_;                  // (layers)
  int sn_count_ = 0;                                     // layers normalised (0: spectral norm off)
  DeviceBuffer<float> dx_;                               // (rows, img): input gradient
  DeviceBuffer<float> f_, df_;                           // (rows, K)
  DeviceBuffer<float> ones_;                             // (rows)
  DeviceBuffer<float> batch_;                            // (2·batch, img): [real; fake] or [test; noise]
  DeviceBuffer<float> io_, io_f_;                        // staging for energy/outputs/sample/input_grad/param_grad
  DeviceBuffer<float> io_features_;                      // (n, D): outputs()' features, chunk by chunk
  DeviceBuffer<int32_t> slots_;                          // (batch): this step's buffer slots
  DeviceBuffer<float> train_;                            // (N, img)
  DeviceBuffer<int32_t> perm_;                           // (N): this epoch's order (epoch_permutation)
  DeviceBuffer<int32_t> labels_;                         // (N): the training labels (train.objective "jem")
  int64_t n_labels_ = 0;                                 // labels held; jem trains only when it is N
  DeviceBuffer<int32_t> y_;                              // (batch): this step's real rows' labels
  DeviceBuffer<int32_t> classes_;                        // (n): a class-conditional sample()'s classes
  std::vector<int32_t> perm_host_;                       // its host copy, the upload's source
  DeviceBuffer<DeviceMetrics> ring_;                     // (kMetricsRing)
  DeviceBuffer<double> validation_stats_;  // (3 × validation batches): two means and max |f| each
  DeviceBuffer<double> dp_sums_;                         // (kJemPartials): the step's loss sums (all-reduced on W ranks)

  int rank_ = 0, world_ = 1;  // data-parallel: this rank of world_ (EngineOptions::comm)
#ifdef EBM_HAVE_NCCL
  std::unique_ptr<NcclCommunicator> nccl_;  // world_ > 1 only
#endif

  int64_t n_train_ = 0, next_batch_ = 0;
  int buf_size_ = 0;  // host mirror of the ring's size, for the empty-buffer check
  uint64_t issued_ = 0, drained_ = 0;
  std::vector<StepMetrics> pending_;
  int64_t full_steps_ = 0;
  int64_t captures_ = 0;  // graphs captured (BackendFacts::graph_captures)
  ChainChoice chain_;      // which chain kernel runs (fused_langevin), and the line that says so
  ChainNet chain_net_;     // the generic chain's view of the net
  int chain_images_ = 0;   // images per block of the generic chain; 0: it does not run
  TiledKernelInfo tiled_;  // the tiled chain's kernel (kTiled, kResident)
  TiledParamOffsets tiled_offsets_;
  DeviceBuffer<float> tiled_packed_;  // (tiled_.packed_floats): the weights in its layout, packed before each chain
  const float* sample_weights_ = nullptr;  // what sample()'s chunks run on (sampling_weights())

  // Declared last: destroyed before the buffers they reference.
  GraphExec train_graph_;
  // n, steps, step, noise, clip, x, class-conditional
  using SampleKey = std::tuple<int, int, float, float, float, const float*, bool>;
  std::map<SampleKey, GraphExec> sample_graphs_;  // an empty exec: seen once, ran eagerly
};

CudaBackend::CudaBackend(const EngineOptions& opt) : opt_(opt) {
  const NetSpec& net = opt_.net;
  EBM_CHECK(!net.convs.empty() && net.num_params > 0, "cuda backend: the network has no layers");
  EBM_CHECK(opt_.batch_size > 0 && opt_.buffer_capacity > 0, "cuda backend: batch size and buffer capacity must be > 0");
  if (opt_.buffer_per_class)  // before any device work: the device ring is one ring (device_replay_buffer.cuh)
    user_fail("buffer.per_class trains on the cpu backend only for now (backend \"cpu\", or --backend cpu); the "
              "cuda backend's replay buffer is one ring");
  int count = 0;
  EBM_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (opt_.device < 0 || opt_.device >= count)
    user_fail("cuda: device ", opt_.device, " requested, ", count, " present");
  EBM_CUDA_CHECK(cudaSetDevice(opt_.device));
  use_graphs_ = opt_.graphs;

  cudaDeviceProp prop{};
  EBM_CUDA_CHECK(cudaGetDeviceProperties(&prop, opt_.device));
  const size_t v = cudnnGetVersion();
  describe_ = "cuda: " + std::string(prop.name) + " (" + arch_of(prop) + ", " +
              std::to_string(prop.totalGlobalMem >> 20) + " MiB), cuDNN " + std::to_string(v / 10000) + "." +
              std::to_string(v % 10000 / 100) + (opt_.tf32 ? ", TF32 convolutions" : "") +
              (use_graphs_ ? "" : ", graphs off");

  stream_ = make_stream();
  if (opt_.fused_langevin) {
    chain_ = choose_chain(net, opt_.chain_kernel, prop.sharedMemPerBlockOptin, opt_.chain_tf32, prop.major);
    std::fprintf(stderr, "cuda: %s\n", chain_.line.c_str());
    if (chain_.fused && chain_.kernel == ChainKernel::kGeneric) {
      chain_net_ = chain_net_for(net);
      chain_images_ = chain_images_per_block(chain_net_, prop.sharedMemPerBlockOptin, prop.sharedMemPerMultiprocessor);
      EBM_CUDA_CHECK(langevin_chain_prepare(chain_net_, chain_images_));
      describe_ += ", fused Langevin chain: generic (" + std::to_string(chain_images_) + " image" +
                   (chain_images_ > 1 ? "s" : "") + " a block, " +
                   std::to_string(langevin_chain_smem_bytes(chain_net_, chain_images_) / 1024) + " KB shared)";
    } else if (chain_.fused) {
      tiled_ = tiled_chain_info(tiled_channels(net),
                                chain_.kernel == ChainKernel::kResident ? TiledHome::kShared : TiledHome::kGlobal,
                                chain_.tf32);
      EBM_CHECK(tiled_.found, "cuda backend: the tiled chain's plan and kernels disagree about the net");
      EBM_CUDA_CHECK(tiled_chain_prepare(tiled_));
      tiled_offsets_ = tiled_offsets(net);
      tiled_packed_.resize(size_t(tiled_.packed_floats));
      describe_ += std::string(", fused Langevin chain: ") + chain_kernel_name(chain_.kernel) + " (" +
                   std::to_string(tiled_.threads) + " threads, " + std::to_string(tiled_.smem_bytes / 1024) +
                   " KB shared" + (chain_.tf32 ? ", TF32" : "") + ")";
    }
  }
  const int capacity_global = opt_.buffer_capacity, initial_global = std::min(opt_.buffer_initial, capacity_global);
  if (opt_.comm && opt_.comm->size() > 1) {
    rank_ = opt_.comm->rank();
    world_ = opt_.comm->size();
#ifdef EBM_HAVE_NCCL
    if (img() % 4 != 0)
      user_fail("cuda: data-parallel runs need images of a multiple of 4 pixels (an even data.pad_to), got ", img());
    if (capacity_global / world_ < 1 || initial_global < world_)
      user_fail("buffer.capacity (", capacity_global, ") and buffer.initial (", initial_global,
                ") must be at least the number of ranks (", world_, "): each rank holds a 1/", world_, " shard");
    opt_.buffer_capacity = capacity_global / world_;  // from here on, this rank's shard
    nccl_ = std::make_unique<NcclCommunicator>(*opt_.comm);
    describe_ += ", " + nccl_->describe();
#else
    user_fail("cuda: data-parallel runs need NCCL, which this build lacks (not found at configure time); use "
              "--backend cpu, or rebuild with NCCL");
#endif
  }
  cudnnHandle_t h;
  EBM_CUDNN_CHECK(cudnnCreate(&h));
  cudnn_ = CudnnHandle(h);
  EBM_CUDNN_CHECK(cudnnSetStream(h, stream()));
  state_.resize(1);

  // cuDNN algorithms for the sizes a training step runs (Langevin: batch; loss: 2·batch), then the one
  // workspace, sized for them.
  const int bs = opt_.batch_size;
  net_ = std::make_unique<CudaNet>(net, h, stream(), CudaNetOptions{opt_.tf32, opt_.deterministic, opt_.device},
                                   std::vector<int>{bs, 2 * bs});
  buffer_ = std::make_unique<DeviceReplayBuffer>(opt_.buffer_capacity, img(), st(), stream());

  const int64_t P = num_params();
  params_.resize(P);
  grad_.resize(P);
  adam_m_.resize(P);
  adam_v_.resize(P);
  const std::vector<float> init = init_params(net, opt_.seed);  // the CPU backend's initial parameters
  upload(params_.get(), init.data(), P);
  EBM_CUDA_CHECK(cudaMemsetAsync(grad_.get(), 0, grad_.bytes(), stream()));
  EBM_CUDA_CHECK(cudaMemsetAsync(adam_m_.get(), 0, adam_m_.bytes(), stream()));
  EBM_CUDA_CHECK(cudaMemsetAsync(adam_v_.get(), 0, adam_v_.bytes(), stream()));
  if (ema_on()) {
    ema_.resize(P);
    upload(ema_.get(), init.data(), P);
  }
  if (sn_on()) {
    const std::vector<SnLayer> layers = sn_layers(net);
    std::vector<SnLayerDesc> desc;
    int64_t v_off = 0;
    for (const SnLayer& l : layers) {
      desc.push_back({l.w_off, l.rows, l.cols, l.u_off, v_off});
      v_off += l.cols;
    }
    sn_count_ = int(desc.size());
    sn_layers_.resize(desc.size());
    upload(sn_layers_.get(), desc.data(), int64_t(desc.size()));
    const std::vector<float> u = sn_initial_state(net, opt_.seed);  // the CPU backend's
    sn_u_.resize(u.size());
    sn_u_scratch_.resize(u.size());
    upload(sn_u_.get(), u.data(), int64_t(u.size()));
    sn_v_.resize(size_t(v_off));
    sn_sigma_.resize(desc.size());
    step_w_.resize(P);
    eval_w_.resize(P);
    sample_w_.resize(P);
    sync();  // the host vectors go out of scope
  }
  rows_for(2 * bs);
  batch_.resize(size_t(2 * bs) * img());
  slots_.resize(size_t(bs));
  y_.resize(size_t(bs));
  ring_.resize(kMetricsRing);
  dp_sums_.resize(kJemPartials);  // also the CD step's 6

  // The initial replay buffer: the CPU's draws (ReplayBuffer::fill_noise), this rank's rows of them.
  DeviceState s{};
  s.seed = opt_.seed;
  s.lr = opt_.lr;
  s.beta1 = opt_.beta1;
  s.beta2 = opt_.beta2;
  s.eps = opt_.eps;
  // A rank whose share exceeds its shard keeps the newest rows, as the CPU's ring push does.
  const Share first = share_of(std::max(initial_global, 0), rank_, world_);  // W = 1: all of them
  const int64_t kept = std::min<int64_t>(first.count, buffer_->capacity());
  buffer_->fill_noise(int(kept), opt_.seed, first.first + (first.count - kept));
  s.head = 0;
  s.size = int32_t(kept);
  s.off_fresh = philox_blocks(uint64_t(std::max(initial_global, 0)) * img());  // as CpuBackend: past every rank's
  write_state(s);
  buf_size_ = s.size;
}

bool CudaBackend::ensure_scratch(int n) {
  if (n <= scratch_rows_) return false;
  scratch_rows_ = n;
  dx_.resize(size_t(n * img()));
  f_.resize(size_t(n * outputs_per_row()));
  df_.resize(size_t(n * outputs_per_row()));
  ones_.resize(size_t(n));
  EBM_CUDA_CHECK(fill(ones_.get(), n, 1.0f, stream()));
  return true;
}

void CudaBackend::langevin(const float* params, float* x, int n, const SamplerParams& p, RngStream rng,
                           const uint64_t* seed, const uint64_t* offset, int64_t stride, const int32_t* classes) {
  if (p.steps <= 0) return;
  NvtxRange range("langevin");
  const int64_t len = int64_t(n) * img();
  const uint64_t blocks = philox_blocks(uint64_t(stride > 0 ? stride : len));
  if (chain_images_ > 0) {  // the whole chain in one launch; the same noise (step k at *offset + k·blocks)
    const ChainNoiseSource src{seed, offset, stream_id(rng), 0, blocks};
    EBM_CUDA_CHECK(langevin_chain(x, params, n, chain_net_, chain_images_,
                                  ChainSampler{p.steps, p.step_size, p.noise, p.grad_clip}, src, stream()));
    return;
  }
  if (tiled_.found) {  // pack these weights, then the whole chain in one launch, the same noise
    const ChainNoiseSource src{seed, offset, stream_id(rng), 0, blocks};
    EBM_CUDA_CHECK(tiled_pack(tiled_packed_.get(), params, tiled_, tiled_offsets_, stream()));
    EBM_CUDA_CHECK(tiled_chain(x, tiled_packed_.get(), n, tiled_,
                               TiledSampler{p.steps, p.step_size, p.noise, p.grad_clip}, src, stream()));
    return;
  }
  const bool noisy = p.noise > 0;
  // Launch k: descend of step k−1 (k > 0), then perturb of step k (k < steps) — the CPU's order.
  auto update = [&](int k) {
    const bool descend = k > 0, perturb = noisy && k < p.steps;
    if (!descend && !perturb) return;
    const NoiseSource src{seed, offset, stream_id(rng), uint64_t(k) * blocks};
    EBM_CUDA_CHECK(langevin_update(x, dx_.get(), len, p.step_size, p.grad_clip, p.noise, src, descend, perturb,
                                   stream()));
  };
  for (int k = 0; k < p.steps; ++k) {
    update(k);
    input_gradient(params, x, n, classes, false);  // f_, df_ are free until the loss
  }
  update(p.steps);
}

// ∂s/∂x = Σ_k softmax(f)_k ∂f_k/∂x (or ∂f_y/∂x): the logits turned into the backward's upstream weights.
void CudaBackend::input_gradient(const float* w, const float* x, int n, const int32_t* classes, bool logits) {
  const int K = int(outputs_per_row());
  net_->forward(w, x, n, K > 1 || logits ? f_.get() : nullptr);
  if (K > 1) EBM_CUDA_CHECK(chain_weights(f_.get(), n, K, classes, df_.get(), stream()));
  net_->backward(w, K > 1 ? df_.get() : ones_.get(), dx_.get(), nullptr);
}

// --- training: CpuBackend::train_step, on the device ---

void CudaBackend::enqueue_train_step(int nr, int64_t n_real, int64_t real_first) {
  NvtxRange range("train_step");
  const int bs = opt_.batch_size, nf = bs;
  const int64_t im = img();
  float* real = batch_.get();
  float* fake = batch_.get() + int64_t(nr) * im;
  cudaStream_t s = stream();

  // This step's random choices (fresh-row count, buffer slots), and every stream advanced past the step.
  const StepDraw draw{bs, opt_.reinit_prob, nr, im, opt_.sampler.steps, opt_.sampler.noise > 0,
                      buffer_->capacity()};
  // Spectral norm: (W_sn, u) ← eff(θ, u), the weights of this whole step.
  if (sn_on())
    EBM_CUDA_CHECK(spectral_norm_forward(params_.get(), step_w_.get(), num_params(), sn_u_.get(), sn_u_.get(),
                                         sn_v_.get(), sn_sigma_.get(), sn_layers_.get(), sn_count_, s));
  const float* params = sn_on() ? step_w_.get() : params_.get();
  if (world_ == 1) EBM_CUDA_CHECK(begin_step(st(), slots_.get(), draw, s));
  else EBM_CUDA_CHECK(sharded_begin_step(st(), slots_.get(), draw, world_, rank_, n_real, real_first, s));
  {
    NvtxRange data("data");
    // real ← clip(real + σ·N(0,1), −1, 1): this rank's rows of the global batch
    const RealShift shift{opt_.shift, opt_.net.in_c, opt_.net.in_h, opt_.net.in_w, real_first};
    EBM_CUDA_CHECK(gather_real(train_.get(), perm_.get() + real_first, st(), real, nr, im, int(global_batch()),
                               float(opt_.real_noise), shift, s));
    if (jem())
      EBM_CUDA_CHECK(gather_labels(labels_.get(), perm_.get() + real_first, st(), y_.get(), nr, int(global_batch()), s));
  }
  // fake ← buffer draw refined by Langevin, then written back (no gradient flows through the sampler)
  buffer_->draw(slots_.get(), fake, nf);
  langevin(params, fake, nf, opt_.sampler, RngStream::kLangevin, &st()->step.seed, &st()->step.off_langevin,
           global_batch() * im);
  buffer_->push(fake, nf);

  // One forward/backward over [real; fake]: rows are independent.
  net_->forward(params, batch_.get(), nr + nf, f_.get());
  if (jem()) {  // dL/df and the sums over the global counts; the ranks' sums all-reduced before the metrics
    EBM_CUDA_CHECK(jem_loss_partials(f_.get(), df_.get(), nr, nf, int(outputs_per_row()), y_.get(), n_real,
                                     global_batch(), jem_weights(), dp_sums_.get(), s));
    net_->backward(params, df_.get(), nullptr, grad_.get());
#ifdef EBM_HAVE_NCCL
    if (world_ > 1) {
      nccl_->allreduce_sum(grad_.get(), num_params(), s);
      nccl_->allreduce_sum(dp_sums_.get(), 6, s);
      nccl_->allreduce_max(dp_sums_.get() + 6, 2, s);
    }
#endif
    EBM_CUDA_CHECK(jem_metrics(dp_sums_.get(), n_real, global_batch(), jem_weights(), st(), ring_.get(), s));
  } else if (world_ == 1) {
    EBM_CUDA_CHECK(loss_metrics(f_.get(), df_.get(), nr, nf, opt_.alpha, st(), ring_.get(), s));
    net_->backward(params, df_.get(), nullptr, grad_.get());
  } else {
#ifdef EBM_HAVE_NCCL
    const float alpha = float(opt_.alpha);  // CpuBackend::sharded_loss's rounding
    EBM_CUDA_CHECK(sharded_loss_partials(f_.get(), df_.get(), nr, nf, alpha, 1.0f / float(n_real),
                                         1.0f / float(global_batch()), dp_sums_.get(), s));
    // grad_ (num_params): this rank's rows' Σ dL/df_i ∂f_i/∂θ, scaled by the global counts; the NCCL sum over
    // the ranks is the global batch's gradient, on every rank alike. Then the loss sums, then the metrics.
    net_->backward(params, df_.get(), nullptr, grad_.get());
    nccl_->allreduce_sum(grad_.get(), num_params(), s);
    nccl_->allreduce_sum(dp_sums_.get(), 4, s);
    nccl_->allreduce_max(dp_sums_.get() + 4, 2, s);
    EBM_CUDA_CHECK(sharded_loss_metrics(dp_sums_.get(), n_real, global_batch(), double(alpha), st(), ring_.get(), s));
#endif
  }
  // dL/dW_sn → dL/dθ (the global gradient, after the all-reduce, as on the CPU)
  if (sn_on())
    EBM_CUDA_CHECK(spectral_norm_backward(grad_.get(), step_w_.get(), sn_u_.get(), sn_v_.get(), sn_sigma_.get(),
                                          sn_layers_.get(), sn_count_, s));
  NvtxRange optim("optimizer");
  EBM_CUDA_CHECK(cuda::adam_step(params_.get(), adam_m_.get(), adam_v_.get(), grad_.get(), num_params(), st(), s));
  if (ema_on()) EBM_CUDA_CHECK(ema_step(ema_.get(), params_.get(), num_params(), opt_.ema_decay, s));
}

void CudaBackend::train_step(int64_t b) {
  require_objective_net(opt_);
  EBM_CHECK(n_train_ > 0, "train_step before set_train_data");
  if (jem() && n_labels_ != n_train_)
    user_fail("train.objective \"jem\" trains on labelled images: the training set has no labels");
  const int bs = opt_.batch_size;
  const int64_t G = global_batch();
  EBM_CHECK(b >= 0 && b * G < n_train_, "batch index past the end of the epoch");
  EBM_CHECK(buf_size_ > 0, "replay buffer is empty");
  const int64_t n_real = std::min<int64_t>(G, n_train_ - b * G);  // the last batch may be partial
  const Share mine = share_of(n_real, rank_, world_);              // W = 1: {0, n_real}
  const int nr = int(mine.count);
  if (b != next_batch_) set_cursor(b);
  next_batch_ = b + 1;
  if (issued_ - drained_ >= uint64_t(kMetricsRing)) collect_metrics();  // the ring would wrap: read it now

  if (n_real == G && use_graphs_) {
    if (!train_graph_ && full_steps_ > 0) {
      net_->plan_for(bs);
      net_->plan_for(2 * bs);
      try {
        train_graph_ = capture_graph(stream(), [&] { enqueue_train_step(nr, n_real, mine.first); });
        ++captures_;
      } catch (const Error& e) {  // training goes on eagerly; describe() says so, and the graph test fails
        graphs_failed(e);
      }
    }
    if (train_graph_) {
      NvtxRange range("train_step (graph)");
      EBM_CUDA_CHECK(cudaGraphLaunch(train_graph_.get(), stream()));
    } else {
      enqueue_train_step(nr, n_real, mine.first);
    }
    ++full_steps_;
  } else {
    enqueue_train_step(nr, n_real, mine.first);
  }
  ++issued_;
  buf_size_ = int(std::min<int64_t>(int64_t(buf_size_) + bs, opt_.buffer_capacity));
}

void CudaBackend::collect_metrics() {
  if (issued_ == drained_) return;
  std::vector<DeviceMetrics> ring(kMetricsRing);
  EBM_CUDA_CHECK(cudaMemcpyAsync(ring.data(), ring_.get(), ring_.bytes(), cudaMemcpyDeviceToHost, stream()));
  const DeviceState s = read_state();  // syncs
  EBM_CHECK(s.metrics_count == issued_, "device metrics counter differs from the steps issued");
  for (uint64_t k = drained_; k < issued_; ++k) {
    const DeviceMetrics& d = ring[k % kMetricsRing];
    pending_.push_back({d.loss, d.reg, d.cdiv, d.real, d.fake, d.max_abs_f, d.ce, d.accuracy});
  }
  drained_ = issued_;
}

std::vector<StepMetrics> CudaBackend::drain_metrics() {
  collect_metrics();
  std::vector<StepMetrics> out;
  out.swap(pending_);
  return out;
}

void CudaBackend::set_cursor(int64_t batch) {
  EBM_CUDA_CHECK(cuda::set_cursor(st(), batch, stream()));
}

// Resident, as the images: the step gathers its rows' labels by the epoch's permutation.
void CudaBackend::set_train_labels(const std::vector<int32_t>& labels) {
  EBM_CHECK(int64_t(labels.size()) == n_train_, "set_train_labels: one label per training image");
  check_classes(labels, opt_.net.outputs, "training label");
  if (labels_.reserve(labels.size())) invalidate_graphs();
  upload(labels_.get(), labels.data(), n_train_);
  sync();  // `labels` may go out of scope
  n_labels_ = n_train_;
}

void CudaBackend::set_train_data(const Tensor& train) {
  const int64_t im = img();
  EBM_CHECK(train.numel() % im == 0, "training set shape does not match the network input");
  const int64_t n = train.numel() / im;
  EBM_CHECK(n < int64_t(INT32_MAX), "training set larger than 2^31 images");
  bool moved = train_.reserve(size_t(n * im));
  moved |= perm_.reserve(size_t(n));
  if (moved) invalidate_graphs();
  upload(train_.get(), train.ptr(), n * im);  // resident from now on
  n_train_ = n;
  n_labels_ = 0;  // set_train_labels gives the new set's
  upload_permutation({});  // the identity: the order before the first begin_epoch, as on the CPU
  set_cursor(0);
  next_batch_ = 0;
}

void CudaBackend::begin_epoch(int64_t epoch) {
  NvtxRange range("shuffle");
  upload_permutation(epoch_permutation(opt_.seed, epoch, n_train_));  // the CPU's order
  set_cursor(0);
  next_batch_ = 0;
}

// --- state ---

DeviceState CudaBackend::read_state() {
  DeviceState s;
  download(&s, st(), 1);
  return s;
}

void CudaBackend::write_state(const DeviceState& s) {
  upload(st(), &s, 1);
  sync();
}

void CudaBackend::set_params(const std::vector<float>& flat) {
  if (int64_t(flat.size()) != num_params())
    user_fail("parameters: got ", flat.size(), " values, the network has ", num_params());
  upload(params_.get(), flat.data(), num_params());
  if (ema_on()) upload(ema_.get(), flat.data(), num_params());  // θ_ema = θ until set_ema says otherwise
  sync();
}

void CudaBackend::set_ema(const std::vector<float>& flat) {
  if (!ema_on()) user_fail("EMA weights given, but train.ema_decay is 0 (EMA off)");
  if (int64_t(flat.size()) != num_params())
    user_fail("EMA weights: got ", flat.size(), " values, the network has ", num_params());
  upload(ema_.get(), flat.data(), num_params());
  sync();
}

std::vector<float> CudaBackend::ema() {
  if (!ema_on()) return {};
  std::vector<float> e(static_cast<size_t>(num_params()));
  download(e.data(), ema_.get(), num_params());
  return e;
}

void CudaBackend::set_sn_state(const std::vector<float>& u) {
  if (!sn_on()) user_fail("spectral-norm state given, but model.spectral_norm is off");
  if (u.size() != sn_u_.size())
    user_fail("spectral-norm state: got ", u.size(), " values, the network's layers need ", sn_u_.size());
  upload(sn_u_.get(), u.data(), int64_t(u.size()));
  sync();
}

std::vector<float> CudaBackend::sn_state() {
  std::vector<float> u(sn_u_.size());
  download(u.data(), sn_u_.get(), int64_t(u.size()));
  return u;
}

const float* CudaBackend::training_weights() {
  if (!sn_on()) return params_.get();
  EBM_CUDA_CHECK(spectral_norm_forward(params_.get(), eval_w_.get(), num_params(), sn_u_.get(), sn_u_scratch_.get(),
                                       sn_v_.get(), sn_sigma_.get(), sn_layers_.get(), sn_count_, stream()));
  return eval_w_.get();
}

const float* CudaBackend::sampling_weights() {
  const float* theta = ema_on() ? ema_.get() : params_.get();
  if (!sn_on()) return theta;
  EBM_CUDA_CHECK(spectral_norm_forward(theta, sample_w_.get(), num_params(), sn_u_.get(), sn_u_scratch_.get(),
                                       sn_v_.get(), sn_sigma_.get(), sn_layers_.get(), sn_count_, stream()));
  return sample_w_.get();
}

std::vector<float> CudaBackend::sampling_params() {
  std::vector<float> p(static_cast<size_t>(num_params()));
  download(p.data(), sampling_weights(), num_params());
  return p;
}

std::vector<float> CudaBackend::params() {
  std::vector<float> p(static_cast<size_t>(num_params()));
  download(p.data(), params_.get(), num_params());
  return p;
}

void CudaBackend::set_adam(const AdamState& a) {
  if (int64_t(a.m.size()) != num_params() || int64_t(a.v.size()) != num_params())
    user_fail("Adam state: moments of ", a.m.size(), "/", a.v.size(), " values, the network has ", num_params());
  upload(adam_m_.get(), a.m.data(), num_params());
  upload(adam_v_.get(), a.v.data(), num_params());
  DeviceState s = read_state();
  s.adam_t = a.t;
  write_state(s);
}

AdamState CudaBackend::adam() {
  AdamState a;
  a.m.resize(size_t(num_params()));
  a.v.resize(size_t(num_params()));
  EBM_CUDA_CHECK(cudaMemcpyAsync(a.m.data(), adam_m_.get(), adam_m_.bytes(), cudaMemcpyDeviceToHost, stream()));
  download(a.v.data(), adam_v_.get(), num_params());
  a.t = read_state().adam_t;
  return a;
}

void CudaBackend::set_buffer(const Tensor& images) {
  DeviceState s = read_state();
  buffer_->restore(images, s);
  write_state(s);
  buf_size_ = s.size;
}

Tensor CudaBackend::buffer() { return buffer_->snapshot(read_state(), image_shape(), [this] { sync(); }); }

void CudaBackend::upload_permutation(const std::vector<int64_t>& order) {
  perm_host_.resize(size_t(n_train_));
  for (int64_t i = 0; i < n_train_; ++i) perm_host_[size_t(i)] = int32_t(order.empty() ? i : order[size_t(i)]);
  upload(perm_.get(), perm_host_.data(), n_train_);
  sync();  // perm_host_ changes at the next epoch; the copy must be done by then
}

std::vector<uint64_t> CudaBackend::rng_state() {
  const DeviceState s = read_state();
  return {s.seed, s.off_real, s.off_choice, s.off_fresh, s.off_langevin};
}

void CudaBackend::set_rng_state(const std::vector<uint64_t>& v) {
  if (v.size() != 5) user_fail("checkpoint RNG state has ", v.size(), " values, the cuda backend expects 5");
  DeviceState s = read_state();
  opt_.seed = v[0];
  s.seed = v[0];
  s.off_real = v[1];
  s.off_choice = v[2];
  s.off_fresh = v[3];
  s.off_langevin = v[4];
  write_state(s);
}

void CudaBackend::reseed(uint64_t seed) {
  opt_.seed = seed;
  DeviceState s = read_state();
  s.seed = seed;
  s.off_real = s.off_choice = s.off_fresh = s.off_langevin = 0;
  write_state(s);
}

// Stream-ordered and without a sync, since a learning-rate schedule sets it before every step: the steps
// queued before it keep their rate. A copy from pageable memory is staged at once, so opt_.lr may change.
void CudaBackend::set_lr(double lr) {
  opt_.lr = lr;
  EBM_CUDA_CHECK(cudaMemcpyAsync(&st()->lr, &opt_.lr, sizeof(double), cudaMemcpyHostToDevice, stream()));
}

// --- evaluation and tools ---

float* CudaBackend::stage(const Tensor& x) {
  if (io_.reserve(size_t(x.numel()))) sample_graphs_.clear();
  upload(io_.get(), x.ptr(), x.numel());
  return io_.get();
}

void CudaBackend::logsumexp_into(const float* f, int c, float* out) {
  if (outputs_per_row() > 1) EBM_CUDA_CHECK(logsumexp_rows(f, c, int(outputs_per_row()), out, stream()));
  else if (f != out)
    EBM_CUDA_CHECK(cudaMemcpyAsync(out, f, sizeof(float) * size_t(c), cudaMemcpyDeviceToDevice, stream()));
}

// f per image; with K outputs s = logsumexp f (the logits of each chunk in f_ first).
std::vector<float> CudaBackend::energy(const Tensor& x) {
  const int64_t im = img(), n = x.numel() / im;
  EBM_CHECK(n * im == x.numel(), "energy(): input shape does not match the network input");
  std::vector<float> f(static_cast<size_t>(n));
  if (n == 0) return f;
  const float* in = stage(x);
  io_f_.reserve(size_t(n));
  const float* w = sampling_weights();
  for (int64_t s = 0; s < n; s += opt_.batch_size) {
    const int c = int(std::min<int64_t>(opt_.batch_size, n - s));
    float* f = outputs_per_row() > 1 ? f_.get() : io_f_.get() + s;
    net_->forward(w, in + s * im, c, f);
    logsumexp_into(f, c, io_f_.get() + s);
  }
  download(f.data(), io_f_.get(), n);
  return f;
}

// energy()'s chunks, K outputs per row; each chunk's features (the last conv activation, (c, D) at row s) are
// copied out before the next chunk's forward overwrites them, so they come back in row order.
std::vector<float> CudaBackend::outputs(const Tensor& x, std::vector<float>* features) {
  const int64_t im = img(), n = x.numel() / im, K = outputs_per_row(), D = opt_.net.dense_in;
  EBM_CHECK(n * im == x.numel(), "outputs(): input shape does not match the network input");
  std::vector<float> f(static_cast<size_t>(n * K));
  if (features) features->assign(size_t(n * D), 0.0f);
  if (n == 0) return f;
  const float* in = stage(x);
  io_f_.reserve(size_t(n * K));
  if (features) io_features_.reserve(size_t(n * D));
  const float* w = sampling_weights();  // as energy(): θ, or θ_ema / eff(θ, u) with the recipe features on
  for (int64_t s = 0; s < n; s += opt_.batch_size) {
    const int c = int(std::min<int64_t>(opt_.batch_size, n - s));
    net_->forward(w, in + s * im, c, io_f_.get() + s * K);
    if (features)
      EBM_CUDA_CHECK(cudaMemcpyAsync(io_features_.get() + s * D, net_->features(), sizeof(float) * size_t(c * D),
                                     cudaMemcpyDeviceToDevice, stream()));
  }
  if (features)
    EBM_CUDA_CHECK(cudaMemcpyAsync(features->data(), io_features_.get(), sizeof(float) * size_t(n * D),
                                   cudaMemcpyDeviceToHost, stream()));
  download(f.data(), io_f_.get(), n * K);
  return f;
}

ValidationMetrics CudaBackend::validate(const Tensor& test, int64_t epoch) {
  const int64_t im = img(), n = test.numel() / im;
  EBM_CHECK(n * im == test.numel(), "validate(): test set shape does not match the network input");
  ValidationMetrics v;
  if (n == 0) return v;
  const float* in = stage(test);
  const int64_t G = global_batch();  // W > 1: each rank takes its share of every global batch, then a host sum
  const int64_t batches = (n + G - 1) / G;
  validation_stats_.reserve(size_t(3 * batches));  // per batch: mean f(test rows), mean f(noise rows), max |f|
  if (world_ > 1) EBM_CUDA_CHECK(cudaMemsetAsync(validation_stats_.get(), 0, sizeof(double) * 3 * batches, stream()));
  uint64_t offset = uint64_t(epoch) << 40;  // CpuBackend::validate's stream position
  const float* w = training_weights();
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t s = b * G;
    const int64_t c_all = std::min<int64_t>(G, n - s);
    const Share mine = share_of(c_all, rank_, world_);
    const int c = int(mine.count);
    if (c > 0) {
      // batch_ (2c, img) = [test rows; uniform noise rows], one forward for both
      EBM_CUDA_CHECK(cudaMemcpyAsync(batch_.get(), in + (s + mine.first) * im, sizeof(float) * c * im,
                                     cudaMemcpyDeviceToDevice, stream()));
      EBM_CUDA_CHECK(uniform_fill(batch_.get() + c * im, c * im, opt_.seed, stream_id(RngStream::kValidation),
                                  offset + uint64_t(mine.first * im / 4), -1.0f, 1.0f, stream()));
      net_->forward(w, batch_.get(), 2 * c, f_.get());
      float* s_rows = outputs_per_row() > 1 ? df_.get() : f_.get();  // K > 1: s of each row, into free scratch
      logsumexp_into(f_.get(), 2 * c, s_rows);
      EBM_CUDA_CHECK(pair_means(s_rows, c, validation_stats_.get() + 3 * b, stream()));
    }
    offset += philox_blocks(uint64_t(c_all) * im);
  }
  std::vector<double> stats(static_cast<size_t>(3 * batches));
  download(stats.data(), validation_stats_.get(), 3 * batches);
  double worst = 0;  // this rank's max |f| (the guard's measure, engine/loss.hpp)
  for (int64_t b = 0; b < batches; ++b) worst = guard_max(worst, stats[size_t(3 * b + 2)]);
  if (world_ > 1) {  // per-batch means over the shares → sums → all ranks' sums → means over the global batch
    std::vector<double> sums(static_cast<size_t>(2 * batches));
    for (int64_t b = 0; b < batches; ++b) {
      const int64_t c_all = std::min<int64_t>(G, n - b * G);
      const double mine = double(share_of(c_all, rank_, world_).count);
      sums[size_t(2 * b)] = stats[size_t(3 * b)] * mine, sums[size_t(2 * b + 1)] = stats[size_t(3 * b + 1)] * mine;
    }
    opt_.comm->allreduce(sums.data(), int64_t(sums.size()), ReduceOp::kSum);
    worst = max_abs_f_all_ranks(*opt_.comm, worst);
    for (int64_t b = 0; b < batches; ++b) {
      const double c_all = double(std::min<int64_t>(G, n - b * G));
      stats[size_t(3 * b)] = sums[size_t(2 * b)] / c_all, stats[size_t(3 * b + 1)] = sums[size_t(2 * b + 1)] / c_all;
    }
  }
  for (int64_t b = 0; b < batches; ++b) v.real += stats[3 * b], v.fake += stats[3 * b + 1];  // the CPU's order
  v.real /= double(batches);
  v.fake /= double(batches);
  v.max_abs_f = worst;
  v.cdiv = v.real - v.fake;
  return v;
}

void CudaBackend::run_sample_chunk(int n, const SamplerParams& q, bool conditional) {
  if (q.steps <= 0) return;
  auto enqueue = [&] {
    langevin(sample_weights_, io_.get(), n, q, RngStream::kGenerate, &st()->sample_seed, &st()->sample_off, 0,
             conditional ? classes_.get() : nullptr);
    if (q.noise > 0)
      EBM_CUDA_CHECK(add_u64(&st()->sample_off, uint64_t(q.steps) * philox_blocks(uint64_t(n) * img()), stream()));
  };
  if (!use_graphs_) return enqueue();
  const SampleKey key{n, q.steps, q.step_size, q.noise, q.grad_clip, io_.get(), conditional};
  auto it = sample_graphs_.find(key);
  if (it == sample_graphs_.end()) {  // first time: eagerly, which also loads the kernels before any capture
    enqueue();
    if (int(sample_graphs_.size()) >= kMaxSampleGraphs) sample_graphs_.clear();
    sample_graphs_.emplace(key, GraphExec{});
    return;
  }
  if (!it->second) {
    net_->plan_for(n);
    try {
      it->second = capture_graph(stream(), enqueue);
      ++captures_;
    } catch (const Error& e) {
      graphs_failed(e);
      return enqueue();
    }
  }
  EBM_CUDA_CHECK(cudaGraphLaunch(it->second.get(), stream()));
}

void CudaBackend::sample(Tensor& x, const SamplerParams& p, uint64_t seed, int every, std::vector<Tensor>* traj,
                         const std::vector<int32_t>* classes) {
  if (classes) check_conditional(opt_.net, *classes, x.numel() / img());
  const int64_t im = img(), n64 = x.numel() / im;
  EBM_CHECK(n64 * im == x.numel() && n64 < int64_t(INT32_MAX), "sample(): input shape does not match the network input");
  const int n = int(n64);
  const bool chunked = every > 0 && traj;
  if (n > 0) {
    rows_for(n);
    stage(x);
    if (classes) {  // read by the captured chunks from this buffer: its address must hold, its contents may change
      if (classes_.reserve(size_t(n))) sample_graphs_.clear();
      upload(classes_.get(), classes->data(), n);
    }
    sample_weights_ = sampling_weights();  // the same buffer every call: captured chunks stay valid
    EBM_CUDA_CHECK(set_sample_stream(st(), seed, stream()));
  }
  auto run = [&](const SamplerParams& q) {
    if (n == 0) return;
    run_sample_chunk(n, q, classes != nullptr);
    download(x.ptr(), io_.get(), x.numel());
  };
  if (!chunked) return run(p);
  traj->push_back(x);
  SamplerParams chunk = p;
  for (int done = 0; done < p.steps; done += chunk.steps) {
    chunk.steps = std::min(every, p.steps - done);
    run(chunk);
    traj->push_back(x);
  }
}

// f = s and dfdx = ∂s/∂x per image (K > 1: through the softmax weights of the logits, as the chains).
void CudaBackend::input_grad(const Tensor& x, std::vector<float>& f, Tensor& dfdx) {
  const int64_t im = img(), K = outputs_per_row();
  const int n = int(x.numel() / im);
  f.assign(size_t(n), 0.0f);
  dfdx = Tensor(x.shape);
  if (n == 0) return;
  rows_for(n);
  const float* in = stage(x);
  input_gradient(params_.get(), in, n, nullptr, true);
  const float* s_rows = f_.get();
  if (K > 1) {
    io_f_.reserve(size_t(n));
    logsumexp_into(f_.get(), n, io_f_.get());
    s_rows = io_f_.get();
  }
  EBM_CUDA_CHECK(cudaMemcpyAsync(f.data(), s_rows, sizeof(float) * n, cudaMemcpyDeviceToHost, stream()));
  download(dfdx.ptr(), dx_.get(), int64_t(n) * im);
}

void CudaBackend::param_grad(const Tensor& x, const std::vector<float>& w, std::vector<float>& f,
                             std::vector<float>& grad) {
  const int n = int(x.numel() / img());
  const int64_t K = outputs_per_row();
  EBM_CHECK(int64_t(w.size()) == n * K, "param_grad: one weight per image and output (w [n·K])");
  f.assign(size_t(n * K), 0.0f);
  grad.assign(size_t(num_params()), 0.0f);
  if (n == 0) return;
  rows_for(n);
  const float* in = stage(x);
  upload(df_.get(), w.data(), n * K);
  net_->forward(params_.get(), in, n, f_.get());
  net_->backward(params_.get(), df_.get(), nullptr, grad_.get());
  EBM_CUDA_CHECK(cudaMemcpyAsync(f.data(), f_.get(), sizeof(float) * size_t(n * K), cudaMemcpyDeviceToHost, stream()));
  download(grad.data(), grad_.get(), num_params());
}

void CudaBackend::adam_step(const std::vector<float>& grad) {
  EBM_CHECK(int64_t(grad.size()) == num_params(), "gradient size differs from the parameter count");
  upload(grad_.get(), grad.data(), num_params());
  NvtxRange range("optimizer");
  EBM_CUDA_CHECK(cuda::adam_step(params_.get(), adam_m_.get(), adam_v_.get(), grad_.get(), num_params(), st(),
                                 stream()));
  sync();  // the interface's callers read state right after; also keeps `grad`'s lifetime simple
}

}  // namespace
}  // namespace cuda

int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // not sticky, but leave nothing behind for the next caller
    int driver = 0;
    cudaDriverGetVersion(&driver);  // 0: no driver installed at all
    if (!why) return 0;
    if (driver == 0 || err == cudaErrorNoDevice)
      *why = "no NVIDIA GPU or driver found on this machine (" + std::string(cudaGetErrorString(err)) + ")";
    else if (err == cudaErrorInsufficientDriver)
      *why = "the NVIDIA driver (CUDA " + std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10) +
             ") is older than this build's CUDA runtime needs: update the driver";
    else
      *why = cudaGetErrorString(err);
    return 0;
  }
  if (n == 0) {
    if (why) *why = "no CUDA-capable device";
    return 0;
  }
  // The device must run this build's kernels (SASS for its architecture, or PTX it can compile).
  const cudaError_t k = cuda::probe_device();
  if (k != cudaSuccess) {
    cudaGetLastError();
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    const std::string dev = "device 0 (" + std::string(prop.name) + ", " + cuda::arch_of(prop) + ")";
    if (why && k == cudaErrorNoKernelImageForDevice)
      *why = dev + " cannot run this build's kernels (" + cudaGetErrorString(k) +
             "); rebuild with -DEBM_CUDA_ARCHITECTURES=" + std::to_string(prop.major) + std::to_string(prop.minor);
    else if (why)  // e.g. a device in exclusive-process mode that another process holds
      *why = dev + " is not usable: " + cudaGetErrorString(k);
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(const EngineOptions& opt) {
  return std::make_unique<cuda::CudaBackend>(opt);
}

}  // namespace ebm
