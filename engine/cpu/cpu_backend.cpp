#include "engine/cpu/cpu_backend.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <numeric>

#include "engine/address_space.hpp"
#include "kernels/augment.hpp"
#include "engine/communicator.hpp"
#include "engine/error.hpp"
#include "engine/openmp_guard.hpp"
#include "engine/cpu/fast_math.hpp"
#include "engine/cpu/small_gemm.hpp"
#include "engine/cpu/gemm.hpp"
#include "engine/loss.hpp"
#include "engine/spectral_norm.hpp"
#include "kernels/ebm_math.hpp"
#include "kernels/philox.hpp"

namespace ebm {

namespace {

// Each rank's replay-buffer shard holds capacity / W images (W = 1: the whole buffer).
int shard_capacity(const EngineOptions& opt) {
  const int world = opt.comm ? opt.comm->size() : 1;
  if (opt.buffer_capacity / world < 1)
    user_fail("buffer.capacity (", opt.buffer_capacity, ") is smaller than the number of ranks (", world,
              "): each rank holds capacity / ranks images");
  return opt.buffer_capacity / world;
}

// Host twins of kernels/random.cuh's philox_unit / philox_below: the draw at one fixed block, so every
// rank can evaluate any rank's draws. below_at never redraws (Rng::below's rejection, probability < n/2^64).
double unit_at(const Rng& r, uint64_t block) {
  const Philox4 p = philox4x32_10(r.seed, r.stream, block);
  const uint64_t bits = (static_cast<uint64_t>(p.v[0]) << 32 | p.v[1]) >> 11;  // 53 bits, as Rng::unit
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}
uint64_t below_at(const Rng& r, uint64_t block, uint64_t n) {
  const Philox4 p = philox4x32_10(r.seed, r.stream, block);
  return (static_cast<uint64_t>(p.v[0]) << 32 | p.v[1]) % n;
}

// out[i] = element first + i of the stream at r's current offset, i in [0, n); the offset is not advanced.
// The same per-element functions as Rng::normal/uniform, so a slice holds the bits a whole draw would.
void normal_slice(const Rng& r, int64_t first, int64_t n, float* out) {
  if (n > 65536) openmp_region();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = 0.0f + 1.0f * philox_normal_at(r.seed, r.stream, r.offset, uint64_t(first + i));
}
void uniform_slice(const Rng& r, int64_t first, int64_t n, float lo, float hi, float* out) {
  if (n > 65536) openmp_region();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i)
    out[i] = lo + (hi - lo) * philox_uniform_at(r.seed, r.stream, r.offset, uint64_t(first + i));
}

}  // namespace

int cpu_backend_threads() { return omp_get_max_threads(); }

namespace {
// The most threads that have called GEMM at once (parallel_rows' teams): OpenBLAS maps a work buffer for each and
// keeps it for the process's life, so a later backend's threads map none again (ebm_eval's model after its
// classifier).
std::atomic<int> g_gemm_team{0};
}  // namespace

namespace {
// Under a limit, OpenBLAS's work buffers are mapped now, while the check above says they fit: `threads` threads run
// one GEMM each at once, large enough to need the buffer (1024³: a few tens of ms) and started together so that
// the calls overlap — OpenBLAS hands a free buffer to each call and maps a new one only for a call that finds none
// free. It keeps them, so a later failed allocation is the engine's own (std::bad_alloc: one line), never
// OpenBLAS's, which retries it forever. Where the calls did not overlap (the map did not grow by a buffer a
// thread), once more.
void map_gemm_buffers(int threads, int unbuffered) {
  constexpr int kN = 1024;
  const std::vector<float> a(size_t(kN) * kN, 0.0f);
  const double before = address_space() ? address_space()->mapped : 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::exception_ptr error;
    openmp_region(threads);
#pragma omp parallel num_threads(threads)
    {
      std::vector<float> c(size_t(kN) * kN);
#pragma omp barrier
      try {
        sgemm(false, false, kN, kN, kN, 1.0f, a.data(), kN, a.data(), kN, 0.0f, c.data(), kN);
      } catch (...) {
#pragma omp critical(ebm_map_gemm_buffers_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    const std::optional<AddressSpace> as = address_space();
    if (!as || as->mapped - before >= 0.9 * unbuffered * kBlasWorkBuffer) break;
  }
  atomic_max(g_gemm_team, threads);
}
}  // namespace

double cpu_backend_address_space(int threads) {
  if (!address_space()) return 0;
  return threads_address_space(threads, openmp_team_reached(), gemm_maps_work_buffers(), g_gemm_team.load());
}

CpuBackend::CpuBackend(const EngineOptions& opt)
    : opt_(opt), comm_(opt.comm), rank_(comm_ ? comm_->rank() : 0), world_(comm_ ? comm_->size() : 1),
      buffer_(opt.buffer_per_class ? 0 : shard_capacity(opt), opt.net.image_size()) {
  if (opt_.buffer_per_class) {
    require_objective_net(opt_);
    if (opt_.objective != Objective::kJem)
      user_fail("buffer.per_class needs train.objective \"jem\" (a class for each chain)");
    if (world_ > 1)
      user_fail("buffer.per_class trains in one process for now; this run has ", world_, " ranks (run it without "
                "mpirun, or with buffer.per_class false)");
    class_buffer_.emplace(opt_.buffer_capacity, opt_.net.outputs, opt_.net.image_size());
  }
  check_openmp_usable();  // a child forked after OpenMP ran is told so before anything is made
  cpu_vector_kernels();   // chosen here, not at the first GEMM inside a parallel region: EBM_CPU_ISA's error is one line
  set_gemm_threads(1);    // loads OpenBLAS (its own mapping then counts as mapped below); one thread per GEMM
  const int threads = cpu_backend_threads();
  check_address_space(cpu_backend_address_space(threads),
                      "the CPU backend's " + std::to_string(threads) + " thread" + (threads == 1 ? "" : "s") +
                          " (OpenBLAS's work buffer and a stack each)",
                      threads, cpu_backend_address_space(1));
  if (address_space() && gemm_maps_work_buffers() && threads > g_gemm_team.load())
    map_gemm_buffers(threads, threads - g_gemm_team.load());
  for (int t = 0; t < threads; ++t) nets_.push_back(std::make_unique<CpuNet>(opt_.net));
  grads_.resize(nets_.size());
  params_ = init_params(opt_.net, opt_.seed);
  grad_.assign(params_.size(), 0.0f);
  adam_.m.assign(params_.size(), 0.0f);
  adam_.v.assign(params_.size(), 0.0f);
  if (ema_on()) ema_ = params_;
  if (sn_on()) {
    sn_u_ = sn_initial_state(opt_.net, opt_.seed);
    step_w_.resize(params_.size());
    sn_sigma_.resize(sn_layers(opt_.net).size());
    sn_v_.resize(size_t(sn_v_size(opt_.net)));
  }
  reseed(opt_.seed);
  fill_initial_buffer();
}

void CpuBackend::set_buffer(const Tensor& images) {
  if (class_buffer_)
    user_fail("buffer.per_class: the replay buffer holds a ring per class; its images need their classes "
              "(a checkpoint written without buffer.per_class cannot restore one)");
  buffer_.restore(images);
}

Tensor CpuBackend::buffer() {
  std::vector<int32_t> classes;
  return class_buffer_ ? class_buffer_->snapshot(image_shape(), classes) : buffer_.snapshot(image_shape());
}

std::vector<int32_t> CpuBackend::buffer_classes() {
  return class_buffer_ ? class_buffer_->image_classes() : std::vector<int32_t>{};
}

void CpuBackend::set_class_buffer(const Tensor& images, const std::vector<int32_t>& classes) {
  if (!class_buffer_)
    user_fail("the replay buffer is one ring (buffer.per_class is false); a per-class buffer cannot be restored into it");
  class_buffer_->restore(images, classes);
}

void CpuBackend::fill_initial_buffer() {
  const int n = std::min(opt_.buffer_initial, opt_.buffer_capacity);
  if (class_buffer_) return class_buffer_->fill_noise(n, rng_fresh_);
  if (!distributed()) return buffer_.fill_noise(n, rng_fresh_);
  if (n < world_)  // checked on every rank alike, so every rank reports it
    user_fail("buffer.initial (", n, ") is smaller than the number of ranks (", world_,
              "): every rank's buffer shard needs at least one initial image");
  // This rank's rows of the 1-rank run's initial draw; every rank advances past all of it.
  const Share mine = share_of(n, rank_, world_);
  const int64_t img = opt_.net.image_size();
  std::vector<float> rows(size_t(mine.count * img));
  uniform_slice(rng_fresh_, mine.first * img, mine.count * img, -1.0f, 1.0f, rows.data());
  rng_fresh_.offset += philox_blocks(uint64_t(n) * uint64_t(img));
  buffer_.push(rows.data(), int(mine.count));
}

namespace {

// x[i] = clip(x[i] + σ·n_i) for i in [lo, hi), n_i = element shift + i of the normal stream at `offset`.
void perturb_slice(float* x, int64_t lo, int64_t hi, float sigma, uint64_t seed, uint64_t stream, uint64_t offset,
                   int64_t shift) {
  if (shift % 4 != 0) {  // a rank's slice that starts inside a block: element by element
    for (int64_t i = lo; i < hi; ++i)
      x[i] = langevin_perturb(x[i], sigma, philox_normal_at(seed, stream, offset, uint64_t(shift + i)));
    return;
  }
  offset += uint64_t(shift / 4);  // a whole number of blocks: the same stream from a later block
  // Groups of 64 elements (16 blocks) aligned to the stream, so element i has the same value however the
  // rows are split over threads; edge groups compute all 64 and use their part.
  float n64[64];
  const auto normal64 = cpu_vector_kernels().normal64;  // the copy chosen for this CPU (fast_math's philox_normal64)
  for (int64_t g = lo / 64 * 64; g < hi; g += 64) {
    normal64(seed, stream, offset + uint64_t(g) / 4, n64);
    const int64_t a = std::max(lo, g), b = std::min(hi, g + 64);
    for (int64_t i = a; i < b; ++i) x[i] = langevin_perturb(x[i], sigma, n64[i - g]);
  }
}

}  // namespace

// An exception thrown on a thread (std::bad_alloc, a UserError) must not leave the parallel region, where it
// would end the process (std::terminate): the first one is kept and rethrown once every thread is done.
template <class Fn>
void CpuBackend::parallel_rows(int n, Fn&& fn) {
  const int threads = std::max(1, std::min(int(nets_.size()), n));
  std::exception_ptr error;
  openmp_region(threads);
  atomic_max(g_gemm_team, threads);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const int a = int(int64_t(n) * t / threads), b = int(int64_t(n) * (t + 1) / threads);
    try {
      if (b > a) fn(*nets_[t], t, a, b);
    } catch (...) {
#pragma omp critical(ebm_parallel_rows_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

template <class Start, class Fn>
void CpuBackend::parallel_chunks(int n, int max_chunk, Start&& start, Fn&& fn) {
  const int most = std::max(1, int(nets_.size()));
  const int chunk = std::clamp((n + most - 1) / most, 1, max_chunk);
  const int chunks = (n + chunk - 1) / chunk;
  const int threads = std::max(1, std::min(int(nets_.size()), chunks));
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  openmp_region(threads);
  atomic_max(g_gemm_team, threads);
#pragma omp parallel num_threads(threads)
  {
    CpuNet& net = *nets_[omp_get_thread_num()];
    bool started = false;
#pragma omp for schedule(dynamic, 1)
    for (int c = 0; c < chunks; ++c) {
      if (failed.load(std::memory_order_relaxed)) continue;
      try {
        if (!started) start(net), started = true;
        fn(net, c * chunk, std::min(n, (c + 1) * chunk));
      } catch (...) {
#pragma omp critical(ebm_parallel_rows_error)
        if (!error) error = std::current_exception();
        failed = true;
      }
    }
    net.release_weights();
  }
  if (error) std::rethrow_exception(error);
}

void CpuBackend::reduce_grads(int n) {
  const int threads = std::max(1, std::min(int(nets_.size()), n));
  const int64_t np = int64_t(params_.size());
  grad_.assign(params_.size(), 0.0f);
  for (int t = 0; t < threads; ++t) {
    if (int64_t(n) * (t + 1) / threads == int64_t(n) * t / threads) continue;  // empty slice
    const float* g = grads_[t].data();
    for (int64_t i = 0; i < np; ++i) grad_[i] += g[i];
  }
}

// The instruction set this build's own kernels were compiled for (EBM_NATIVE: the build machine's), and the copy
// of the vector kernels (engine/cpu/small_gemm.hpp) chosen at run time where it is not the build's own (a portable
// build on a wider CPU, or EBM_CPU_ISA): "avx512", "baseline (vector kernels avx512)".
std::string cpu_kernel_isa() {
#if defined(__AVX512F__)
  const std::string build = "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  const std::string build = "avx2+fma";
#elif defined(__aarch64__)
  const std::string build = "aarch64";
#else
  const std::string build = "baseline";
#endif
  const std::string chosen = cpu_vector_dispatched_isa();
  return chosen.empty() ? build : build + " (vector kernels " + chosen + ")";
}

std::string CpuBackend::describe() const {
  return "cpu (" + std::to_string(omp_get_max_threads()) + " threads, kernels: " + cpu_kernel_isa() +
         ", GEMM: " + gemm_provider() + ")" +
         (distributed() ? ", rank " + std::to_string(rank_) + " of " + std::to_string(world_) : "");
}

void CpuBackend::reseed(uint64_t seed) {
  opt_.seed = seed;
  rng_real_ = Rng(seed, RngStream::kRealNoise);
  rng_choice_ = Rng(seed, RngStream::kBufferChoice);
  rng_fresh_ = Rng(seed, RngStream::kBufferInit);
  rng_langevin_ = Rng(seed, RngStream::kLangevin);
}

std::vector<uint64_t> CpuBackend::rng_state() {
  return {opt_.seed, rng_real_.offset, rng_choice_.offset, rng_fresh_.offset, rng_langevin_.offset};
}

void CpuBackend::set_rng_state(const std::vector<uint64_t>& s) {
  if (s.size() != 5) user_fail("checkpoint RNG state has ", s.size(), " values, the cpu backend expects 5");
  reseed(s[0]);
  rng_real_.offset = s[1];
  rng_choice_.offset = s[2];
  rng_fresh_.offset = s[3];
  rng_langevin_.offset = s[4];
}

void CpuBackend::set_params(const std::vector<float>& flat) {
  if (int64_t(flat.size()) != opt_.net.num_params)
    user_fail("parameters: got ", flat.size(), " values, the network has ", opt_.net.num_params);
  params_ = flat;
  if (ema_on()) ema_ = flat;
}

void CpuBackend::set_ema(const std::vector<float>& flat) {
  if (!ema_on()) user_fail("EMA weights given, but train.ema_decay is 0 (EMA off)");
  if (flat.size() != params_.size())
    user_fail("EMA weights: got ", flat.size(), " values, the network has ", params_.size());
  ema_ = flat;
}

void CpuBackend::set_sn_state(const std::vector<float>& u) {
  if (!sn_on()) user_fail("spectral-norm state given, but model.spectral_norm is off");
  if (u.size() != sn_u_.size())
    user_fail("spectral-norm state: got ", u.size(), " values, the network's layers need ", sn_u_.size());
  sn_u_ = u;
}

const float* CpuBackend::training_weights() {
  if (!sn_on()) return params_.data();
  scratch_w_.resize(params_.size());
  std::vector<float> u = sn_u_;
  sn_apply(opt_.net, params_.data(), u.data(), false, scratch_w_.data());
  return scratch_w_.data();
}

const float* CpuBackend::sampling_weights() {
  const std::vector<float>& theta = ema_on() ? ema_ : params_;
  if (!sn_on()) return theta.data();
  scratch_w_.resize(params_.size());
  std::vector<float> u = sn_u_;
  sn_apply(opt_.net, theta.data(), u.data(), false, scratch_w_.data());
  return scratch_w_.data();
}

std::vector<float> CpuBackend::sampling_params() {
  const float* w = sampling_weights();
  return std::vector<float>(w, w + params_.size());
}

void CpuBackend::set_adam(const AdamState& s) {
  if (s.m.size() != params_.size() || s.v.size() != params_.size())
    user_fail("Adam state: moments of ", s.m.size(), "/", s.v.size(), " values, the network has ", params_.size());
  adam_ = s;
}

void CpuBackend::set_train_data(const Tensor& train) {
  EBM_CHECK(train.numel() % opt_.net.image_size() == 0, "training set shape does not match the network input");
  train_ = &train;
  perm_.resize(size_t(train.numel() / opt_.net.image_size()));
  std::iota(perm_.begin(), perm_.end(), 0);
}

void CpuBackend::set_train_labels(const std::vector<int32_t>& labels) {
  EBM_CHECK(int64_t(labels.size()) == int64_t(perm_.size()), "set_train_labels: one label per training image");
  check_classes(labels, opt_.net.outputs, "training label");
  labels_ = labels;
}

int64_t CpuBackend::batches_per_epoch() const {
  return (int64_t(perm_.size()) + global_batch() - 1) / global_batch();
}

void CpuBackend::begin_epoch(int64_t epoch) {
  perm_ = epoch_permutation(opt_.seed, epoch, int64_t(perm_.size()));
}

void CpuBackend::langevin(const float* params, float* x, int n, const SamplerParams& p, Rng& rng, int64_t first,
                          int64_t total, const int32_t* classes) {
  const int64_t img = opt_.net.image_size(), len = int64_t(n) * img, K = opt_.net.outputs;
  // Step s draws element first + i of the stream at offset base + s·blocks: the same numbers for any split
  // over threads or ranks.
  const uint64_t base = rng.offset, blocks = philox_blocks(uint64_t(total));
  if (p.noise > 0) rng.offset += uint64_t(p.steps) * blocks;
  dfdx_.resize(size_t(len));
  f_.resize(size_t(n * K));
  ones_.assign(size_t(n * K), 1.0f);  // K = 1: ∂f/∂f; K > 1: overwritten each step by chain_weights
  // Each chain is independent of the others, so a thread runs up to kChainChunk rows at a time through all the
  // steps: a chunk's activations stay in the core's cache for the whole chain (same numbers as a whole-slice pass),
  // and the chunks go to whichever thread is free (same numbers whichever runs them).
  constexpr int kChainChunk = 8;
  parallel_chunks(
      n, kChainChunk, [&](CpuNet& net) { net.hold_weights(params); },
      [&](CpuNet& net, int c0, int c1) {
        const int m = c1 - c0;
        const int64_t lo = c0 * img, hi = c1 * img;
        float* fc = f_.data() + c0 * K;
        float* wc = ones_.data() + c0 * K;
        for (int s = 0; s < p.steps; ++s) {
          if (p.noise > 0) perturb_slice(x, lo, hi, p.noise, rng.seed, rng.stream, base + uint64_t(s) * blocks, first);
          net.forward(params, x + lo, m, fc);
          if (K > 1) chain_weights(fc, m, int(K), classes ? classes + c0 : nullptr, wc);
          net.backward(params, wc, dfdx_.data() + lo, nullptr);
#pragma omp simd
          for (int64_t i = lo; i < hi; ++i) x[i] = langevin_descend(x[i], dfdx_[i], p.step_size, p.grad_clip);
        }
      });
}

// The global buffer draw of a W-rank step (G = B·W fake rows), as rank r sees it:
//   - G Bernoulli trials at choice blocks off + j; rank q's rows are trials [qB, (q+1)B);
//   - each rank's fresh rows first (as ReplayBuffer::draw), from the fresh stream in rank order: rank r's
//     take elements from Σ_{q<r} n_new_q · image on;
//   - the held rows' buffer indices at choice blocks off + G + k, k counting held rows in rank order.
// Every rank evaluates all G trials (G Philox blocks) to know where its slices start, and every rank
// advances the offsets by the whole draw: choice by 2G − Σ n_new, fresh by the blocks of Σ n_new images —
// what the 1-rank draw of G rows consumes (no index is ever redrawn here, as on the GPU).
void CpuBackend::draw_fake_shard(float* fake) {
  const int B = opt_.batch_size;
  const int64_t G = global_batch(), img = opt_.net.image_size();
  EBM_CHECK(buffer_.size() > 0, "replay buffer is empty");
  const uint64_t off = rng_choice_.offset;
  std::vector<int64_t> fresh(size_t(world_), 0);
  for (int64_t j = 0; j < G; ++j) fresh[size_t(j / B)] += unit_at(rng_choice_, off + uint64_t(j)) < opt_.reinit_prob;
  int64_t fresh_before = 0, held_before = 0, fresh_total = 0;
  for (int q = 0; q < world_; ++q) {
    if (q < rank_) fresh_before += fresh[size_t(q)], held_before += B - fresh[size_t(q)];
    fresh_total += fresh[size_t(q)];
  }
  const int n_new = int(fresh[size_t(rank_)]);
  uniform_slice(rng_fresh_, fresh_before * img, int64_t(n_new) * img, -1.0f, 1.0f, fake);
  for (int i = n_new; i < B; ++i) {
    const uint64_t k = below_at(rng_choice_, off + uint64_t(G + held_before + (i - n_new)), uint64_t(buffer_.size()));
    std::memcpy(fake + int64_t(i) * img, buffer_.at(int(k)), sizeof(float) * size_t(img));
  }
  rng_choice_.offset = off + uint64_t(2 * G - fresh_total);
  rng_fresh_.offset += philox_blocks(uint64_t(fresh_total) * uint64_t(img));
}

void CpuBackend::train_step(int64_t b) {
  require_objective_net(opt_);
  const bool jem = opt_.objective == Objective::kJem;
  EBM_CHECK(train_ != nullptr, "train_step before set_train_data");
  if (jem && labels_.size() != perm_.size())
    user_fail("train.objective \"jem\" trains on labelled images: the training set has no labels");
  const int64_t img = opt_.net.image_size();
  const int bs = opt_.batch_size;
  const int64_t G = global_batch(), start = b * G;
  EBM_CHECK(start < int64_t(perm_.size()), "batch index past the end of the epoch");
  const int64_t n_real = std::min<int64_t>(G, int64_t(perm_.size()) - start);  // the last batch may be partial
  const Share mine = share_of(n_real, rank_, world_);                          // this rank's real rows
  const int nr = int(mine.count);
  const int nf = bs;  // the buffer always gives a full one
  // Spectral norm: (W_sn, u) ← eff(θ, u), the weights of this whole step.
  if (sn_on()) sn_apply(opt_.net, params_.data(), sn_u_.data(), true, step_w_.data(), sn_sigma_.data(), sn_v_.data());
  const float* w = sn_on() ? step_w_.data() : params_.data();
  batch_.resize(size_t(nr + nf) * img);
  float* real = batch_.data();
  float* fake = batch_.data() + int64_t(nr) * img;

  // real ← clip(real + σ·N(0,1), −1, 1): this rank's slice of the global batch's noise
  for (int i = 0; i < nr; ++i) {
    const float* row = train_->ptr() + perm_[start + mine.first + i] * img;
    if (opt_.shift > 0) {  // data.shift: moved by its stateless draw (kernels/augment.hpp)
      const Shift d = augment_shift(opt_.seed, adam_.t, mine.first + i, opt_.shift);
      shift_image(row, opt_.net.in_c, opt_.net.in_h, opt_.net.in_w, d.dy, d.dx, real + i * img);
    } else {
      std::memcpy(real + i * img, row, sizeof(float) * img);
    }
  }
  noise_.resize(size_t(nr) * img);
  normal_slice(rng_real_, mine.first * img, int64_t(nr) * img, noise_.data());
  rng_real_.offset += philox_blocks(uint64_t(n_real * img));
  const float rn = float(opt_.real_noise);
  for (int64_t i = 0; i < int64_t(nr) * img; ++i) real[i] = langevin_perturb(real[i], rn, noise_[i]);

  // fake ← buffer draw refined by Langevin, then written back (no gradient flows through the sampler)
  if (class_buffer_) {  // buffer.per_class: each row's class drawn, its chain on E(x, y) = −f_y(x), back to its ring
    fake_y_.resize(size_t(nf));
    class_buffer_->draw(nf, opt_.reinit_prob, rng_choice_, rng_fresh_, fake, fake_y_.data());
    langevin(w, fake, nf, opt_.sampler, rng_langevin_, 0, G * img, fake_y_.data());
    class_buffer_->push(fake, fake_y_.data(), nf);
  } else {
    if (distributed()) draw_fake_shard(fake);
    else buffer_.draw(nf, opt_.reinit_prob, rng_choice_, rng_fresh_, fake);
    langevin(w, fake, nf, opt_.sampler, rng_langevin_, int64_t(rank_) * nf * img, G * img);
    buffer_.push(fake, nf);
  }

  // One forward/backward over [real; fake] — rows are independent, so this is both batches at once.
  const int n = nr + nf;
  const int64_t K = opt_.net.outputs;
  f_.resize(size_t(n * K));
  df_.resize(size_t(n * K));
  parallel_rows(n, [&](CpuNet& net, int, int a, int b) {
    net.forward(w, batch_.data() + a * img, b - a, f_.data() + a * K);
  });
  StepMetrics m;
  if (jem) {
    y_.resize(size_t(nr));
    for (int i = 0; i < nr; ++i) y_[size_t(i)] = labels_[size_t(perm_[size_t(start + mine.first + i)])];
    m = jem_loss(n_real, G);
  } else {
    m = distributed() ? sharded_loss(n_real, G) :
        cd_loss(f_.data(), nr, f_.data() + nr, nf, float(opt_.alpha), df_.data(), df_.data() + nr);
  }
  parallel_rows(n, [&](CpuNet& net, int t, int a, int b) {  // same split, so each net still holds its rows
    grads_[t].resize(params_.size());
    net.backward(w, df_.data() + a * K, nullptr, grads_[t].data());
  });
  reduce_grads(n);
  // Σ over ranks of Σ_rows dL/df_i ∂f_i/∂θ, each term already scaled by the global counts: the gradient of
  // the global batch's loss, on every rank alike.
  if (distributed()) comm_->allreduce(grad_.data(), int64_t(grad_.size()), ReduceOp::kSum);
  // dL/dW_sn → dL/dθ (the global gradient, so every rank transforms the same numbers)
  if (sn_on()) sn_backward(opt_.net, grad_.data(), step_w_.data(), sn_u_.data(), sn_sigma_.data(), sn_v_.data());
  adam_step(grad_);
  if (ema_on()) {
    const double d = opt_.ema_decay;
    const int64_t np = int64_t(params_.size());
    openmp_region();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < np; ++i) ema_update(ema_[size_t(i)], params_[size_t(i)], d);
  }
  pending_.push_back(m);
}

// cd_loss over the global batch: this rank's rows f_ = [real (nr); fake (batch)], means over the global
// counts (n_real real rows, G fake rows), sums all-reduced. Fills df_.
StepMetrics CpuBackend::sharded_loss(int64_t n_real, int64_t G) {
  const int nf = opt_.batch_size, nr = int(f_.size()) - nf;
  const float alpha = float(opt_.alpha);
  double sums[4] = {0, 0, 0, 0};  // Σ f_real, Σ f_real², Σ f_fake, Σ f_fake²
  for (int i = 0; i < nr + nf; ++i) {
    const float v = f_[size_t(i)];
    const bool is_real = i < nr;
    sums[is_real ? 0 : 2] += v;
    sums[is_real ? 1 : 3] += double(v) * v;
    df_[size_t(i)] = is_real ? dloss_dreal(v, alpha, 1.0f / float(n_real)) : dloss_dfake(v, alpha, 1.0f / float(G));
  }
  comm_->allreduce(sums, 4, ReduceOp::kSum);
  StepMetrics m;
  m.max_abs_f = max_abs_f_all_ranks(*comm_, max_abs_f(f_.data(), nr + nf));
  m.real = sums[0] / double(n_real);
  m.fake = sums[2] / double(G);
  m.cdiv = m.fake - m.real;
  m.reg = alpha * (sums[1] / double(n_real) + sums[3] / double(G));
  m.loss = m.cdiv + m.reg;
  return m;
}

// train.objective "jem" over this rank's rows f_ = [real (nr); fake (batch)] [n][K], labels y_ [nr]: dL/df into df_,
// the sums over the global counts (n_real real rows, G fake rows) all-reduced where there are ranks.
StepMetrics CpuBackend::jem_loss(int64_t n_real, int64_t G) {
  const int nf = opt_.batch_size, K = opt_.net.outputs, nr = int(f_.size() / size_t(K)) - nf;
  const JemWeights jw{float(opt_.alpha), float(opt_.cd_weight), float(opt_.ce_weight)};
  JemSums sums;
  jem_loss_rows(f_.data(), nr, nf, K, y_.data(), n_real, G, jw, df_.data(), sums);
  double worst = max_abs_f(f_.data(), int64_t(f_.size()));
  if (distributed()) {
    comm_->allreduce(sums.v, JemSums::kCount, ReduceOp::kSum);
    worst = max_abs_f_all_ranks(*comm_, worst);
  }
  StepMetrics m = jem_metrics(sums, n_real, G, jw);
  m.max_abs_f = worst;
  return m;
}

std::vector<StepMetrics> CpuBackend::drain_metrics() {
  std::vector<StepMetrics> out;
  out.swap(pending_);
  return out;
}

void CpuBackend::adam_step(const std::vector<float>& grad) {
  EBM_CHECK(grad.size() == params_.size(), "gradient size differs from the parameter count");
  if (&grad != &grad_) grad_ = grad;  // gradient() is the last gradient applied, as on the GPU
  adam_.t += 1;
  const AdamHyper h = adam_hyper(opt_.lr, opt_.beta1, opt_.beta2, opt_.eps, adam_.t);
  const int64_t n = int64_t(params_.size());
  openmp_region();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) adam_update(params_[i], adam_.m[i], adam_.v[i], grad[i], h);
}

std::vector<float> CpuBackend::energy(const Tensor& x) {
  const int64_t img = opt_.net.image_size();
  const int64_t n = x.numel() / img;
  EBM_CHECK(n * img == x.numel(), "energy(): input shape does not match the network input");
  std::vector<float> f(static_cast<size_t>(n));
  const float* w = sampling_weights();
  for (int64_t s = 0; s < n; s += opt_.batch_size) {
    const int c = int(std::min<int64_t>(opt_.batch_size, n - s));
    forward_rows(w, x.ptr() + s * img, c, f.data() + s);
  }
  return f;
}

std::vector<float> CpuBackend::outputs(const Tensor& x, std::vector<float>* features) {
  const int64_t img = opt_.net.image_size(), K = opt_.net.outputs, D = opt_.net.dense_in;
  const int64_t n = x.numel() / img;
  EBM_CHECK(n * img == x.numel(), "outputs(): input shape does not match the network input");
  std::vector<float> f(size_t(n * K));
  if (features) features->resize(size_t(n * D));
  const float* w = sampling_weights();
  for (int64_t s = 0; s < n; s += opt_.batch_size) {  // chunks of the batch size, as energy()
    const int c = int(std::min<int64_t>(opt_.batch_size, n - s));
    parallel_rows(c, [&](CpuNet& net, int, int a, int b) {
      net.forward(w, x.ptr() + (s + a) * img, b - a, f.data() + (s + a) * K);
      if (features) net.features(features->data() + (s + a) * D);
    });
  }
  return f;
}

void CpuBackend::forward_rows(const float* w, const float* x, int n, float* f) {
  const int64_t img = opt_.net.image_size(), K = opt_.net.outputs;
  if (K == 1) {
    parallel_rows(n, [&](CpuNet& net, int, int a, int b) { net.forward(w, x + a * img, b - a, f + a); });
    return;
  }
  logits_.resize(size_t(n * K));
  parallel_rows(n, [&](CpuNet& net, int, int a, int b) {
    net.forward(w, x + a * img, b - a, logits_.data() + a * K);
    for (int i = a; i < b; ++i) f[i] = logsumexp_softmax(logits_.data() + i * K, int(K), static_cast<float*>(nullptr));
  });
}

ValidationMetrics CpuBackend::validate(const Tensor& test, int64_t epoch) {
  if (distributed()) return validate_sharded(test, epoch);
  const int64_t img = opt_.net.image_size();
  const int64_t n = test.numel() / img;
  Rng rng(opt_.seed, RngStream::kValidation);
  rng.offset = uint64_t(epoch) << 40;
  ValidationMetrics v;
  int batches = 0;
  std::vector<float> noise, fr(size_t(opt_.batch_size)), ff(size_t(opt_.batch_size));
  const float* w = training_weights();
  for (int64_t s = 0; s < n; s += opt_.batch_size, ++batches) {
    const int c = int(std::min<int64_t>(opt_.batch_size, n - s));
    noise.resize(size_t(c) * img);
    rng.uniform(noise.data(), int64_t(noise.size()), -1.0f, 1.0f);
    forward_rows(w, test.ptr() + s * img, c, fr.data());
    forward_rows(w, noise.data(), c, ff.data());
    v.max_abs_f = guard_max(v.max_abs_f, guard_max(max_abs_f(fr.data(), c), max_abs_f(ff.data(), c)));
    const double mr = std::accumulate(fr.begin(), fr.begin() + c, 0.0) / c;
    const double mf = std::accumulate(ff.begin(), ff.begin() + c, 0.0) / c;
    v.real += mr;
    v.fake += mf;
  }
  if (batches > 0) {
    v.real /= batches;
    v.fake /= batches;
  }
  v.cdiv = v.real - v.fake;
  return v;
}

// validate() of a 1-rank run with batch G = B·W: each rank takes its share of every batch's test rows and
// the matching slice of its noise, the per-batch sums are all-reduced, then averaged as there.
ValidationMetrics CpuBackend::validate_sharded(const Tensor& test, int64_t epoch) {
  const int64_t img = opt_.net.image_size(), n = test.numel() / img, G = global_batch();
  Rng rng(opt_.seed, RngStream::kValidation);
  rng.offset = uint64_t(epoch) << 40;
  const int64_t batches = (n + G - 1) / G;
  std::vector<double> sums(size_t(2 * batches), 0.0);  // per batch: Σ f(test rows), Σ f(noise rows)
  double worst = 0;  // this rank's max |f| (the guard's measure)
  std::vector<float> noise, fr(static_cast<size_t>(G)), ff(static_cast<size_t>(G));
  const float* w = training_weights();
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t s = b * G, c = std::min(G, n - s);
    const Share mine = share_of(c, rank_, world_);
    if (mine.count > 0) {
      noise.resize(size_t(mine.count * img));
      uniform_slice(rng, mine.first * img, mine.count * img, -1.0f, 1.0f, noise.data());
      forward_rows(w, test.ptr() + (s + mine.first) * img, int(mine.count), fr.data());
      forward_rows(w, noise.data(), int(mine.count), ff.data());
      sums[size_t(2 * b)] = std::accumulate(fr.begin(), fr.begin() + mine.count, 0.0);
      sums[size_t(2 * b + 1)] = std::accumulate(ff.begin(), ff.begin() + mine.count, 0.0);
      worst = guard_max(worst, guard_max(max_abs_f(fr.data(), mine.count), max_abs_f(ff.data(), mine.count)));
    }
    rng.offset += philox_blocks(uint64_t(c * img));
  }
  comm_->allreduce(sums.data(), int64_t(sums.size()), ReduceOp::kSum);
  ValidationMetrics v;
  v.max_abs_f = max_abs_f_all_ranks(*comm_, worst);
  for (int64_t b = 0; b < batches; ++b) {
    const double c = double(std::min(G, n - b * G));
    v.real += sums[size_t(2 * b)] / c;
    v.fake += sums[size_t(2 * b + 1)] / c;
  }
  if (batches > 0) {
    v.real /= double(batches);
    v.fake /= double(batches);
  }
  v.cdiv = v.real - v.fake;
  return v;
}

void CpuBackend::sample(Tensor& x, const SamplerParams& p, uint64_t seed, int every, std::vector<Tensor>* traj,
                        const std::vector<int32_t>* classes) {
  const int64_t img = opt_.net.image_size();
  const int n = int(x.numel() / img);
  const int32_t* y = nullptr;
  if (classes) {
    check_conditional(opt_.net, *classes, n);
    y = classes->data();
  }
  Rng rng(seed, RngStream::kGenerate);
  const float* w = sampling_weights();
  const int64_t len = int64_t(n) * img;
  if (every <= 0 || !traj) {
    langevin(w, x.ptr(), n, p, rng, 0, len, y);
    return;
  }
  traj->push_back(x);
  SamplerParams chunk = p;
  for (int done = 0; done < p.steps; done += chunk.steps) {
    chunk.steps = std::min(every, p.steps - done);
    langevin(w, x.ptr(), n, chunk, rng, 0, len, y);
    traj->push_back(x);
  }
}

void CpuBackend::input_grad(const Tensor& x, std::vector<float>& f, Tensor& dfdx) {
  const int n = int(x.numel() / opt_.net.image_size());
  const int64_t K = opt_.net.outputs, img = opt_.net.image_size();
  f.resize(size_t(n));
  dfdx = Tensor(x.shape);
  ones_.assign(size_t(n * K), 1.0f);
  logits_.resize(size_t(n * K));
  parallel_rows(n, [&](CpuNet& net, int, int a, int b) {
    float* fa = K == 1 ? f.data() + a : logits_.data() + a * K;
    net.forward(params_.data(), x.ptr() + a * img, b - a, fa);
    if (K > 1)  // s = logsumexp f and ∂s/∂f = softmax(f), one pass per row (chain_weights' own call)
      for (int i = a; i < b; ++i) f[size_t(i)] = logsumexp_softmax(fa + (i - a) * K, int(K), ones_.data() + i * K);
    net.backward(params_.data(), ones_.data() + a * K, dfdx.ptr() + a * img, nullptr);
  });
}

void CpuBackend::param_grad(const Tensor& x, const std::vector<float>& w, std::vector<float>& f,
                            std::vector<float>& grad) {
  const int n = int(x.numel() / opt_.net.image_size());
  const int64_t K = opt_.net.outputs;
  EBM_CHECK(int64_t(w.size()) == n * K, "param_grad: one weight per image and output (w [n·K])");
  f.resize(size_t(n * K));
  const int64_t img = opt_.net.image_size();
  parallel_rows(n, [&](CpuNet& net, int t, int a, int b) {
    grads_[t].resize(params_.size());
    net.forward(params_.data(), x.ptr() + a * img, b - a, f.data() + a * K);
    net.backward(params_.data(), w.data() + a * K, nullptr, grads_[t].data());
  });
  reduce_grads(n);
  grad = grad_;
}

}  // namespace ebm
