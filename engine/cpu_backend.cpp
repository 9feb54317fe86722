#include "engine/cpu_backend.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/error.hpp"
#include "engine/gemm.hpp"
#include "engine/loss.hpp"
#include "kernels/ebm_math.hpp"
#include "kernels/philox.hpp"

namespace ebm {

CpuBackend::CpuBackend(const EngineOptions& opt)
    : opt_(opt), buffer_(opt.buffer_capacity, opt.net.image_size()) {
  set_gemm_threads(1);  // parallelism comes from splitting the batch over threads
  for (int t = 0; t < omp_get_max_threads(); ++t) nets_.push_back(std::make_unique<CpuNet>(opt_.net));
  grads_.resize(nets_.size());
  params_ = init_params(opt_.net, opt_.seed);
  grad_.assign(params_.size(), 0.0f);
  adam_.m.assign(params_.size(), 0.0f);
  adam_.v.assign(params_.size(), 0.0f);
  reseed(opt_.seed);
  buffer_.fill_noise(std::min(opt_.buffer_initial, opt_.buffer_capacity), rng_fresh_);
}

namespace {

// x[i] = clip(x[i] + σ·n_i) for i in [lo, hi), n_i = element i of the normal stream at `offset`.
void perturb_slice(float* x, int64_t lo, int64_t hi, float sigma, uint64_t seed, uint64_t stream, uint64_t offset) {
  float n4[4];
  int64_t i = lo;
  for (; i < hi && i % 4; ++i) x[i] = langevin_perturb(x[i], sigma, philox_normal_at(seed, stream, offset, uint64_t(i)));
  for (; i + 4 <= hi; i += 4) {
    philox_normal4(seed, stream, offset + uint64_t(i) / 4, n4);
    for (int j = 0; j < 4; ++j) x[i + j] = langevin_perturb(x[i + j], sigma, n4[j]);
  }
  for (; i < hi; ++i) x[i] = langevin_perturb(x[i], sigma, philox_normal_at(seed, stream, offset, uint64_t(i)));
}

}  // namespace

template <class Fn>
void CpuBackend::parallel_rows(int n, Fn&& fn) {
  const int threads = std::max(1, std::min(int(nets_.size()), n));
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const int a = int(int64_t(n) * t / threads), b = int(int64_t(n) * (t + 1) / threads);
    if (b > a) fn(*nets_[t], t, a, b);
  }
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

std::string CpuBackend::describe() const {
  return "cpu (" + std::to_string(omp_get_max_threads()) + " threads, GEMM: " + gemm_provider() + ")";
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

int64_t CpuBackend::batches_per_epoch() const {
  return (int64_t(perm_.size()) + opt_.batch_size - 1) / opt_.batch_size;
}

void CpuBackend::begin_epoch(int64_t epoch) {
  // Fisher–Yates from a stream that depends only on (seed, epoch): resume needs no shuffle state.
  Rng rng(opt_.seed, RngStream::kShuffle);
  rng.offset = uint64_t(epoch) << 32;
  std::iota(perm_.begin(), perm_.end(), 0);
  for (size_t i = perm_.size(); i > 1; --i) std::swap(perm_[i - 1], perm_[rng.below(i)]);
}

void CpuBackend::langevin(float* x, int n, const SamplerParams& p, Rng& rng) {
  const int64_t img = opt_.net.image_size(), len = int64_t(n) * img;
  // Step s draws element i of the stream at offset base + s·blocks: the same numbers for any split.
  const uint64_t base = rng.offset, blocks = philox_blocks(uint64_t(len));
  if (p.noise > 0) rng.offset += uint64_t(p.steps) * blocks;
  dfdx_.resize(size_t(len));
  f_.resize(size_t(n));
  ones_.assign(size_t(n), 1.0f);
  const float* params = params_.data();
  parallel_rows(n, [&](CpuNet& net, int, int a, int b) {
    const int64_t lo = a * img, hi = b * img;
    for (int s = 0; s < p.steps; ++s) {
      if (p.noise > 0) perturb_slice(x, lo, hi, p.noise, rng.seed, rng.stream, base + uint64_t(s) * blocks);
      net.forward(params, x + lo, b - a, f_.data() + a);
      net.backward(params, ones_.data() + a, dfdx_.data() + lo, nullptr);
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i) x[i] = langevin_descend(x[i], dfdx_[i], p.step_size, p.grad_clip);
    }
  });
}

void CpuBackend::train_step(int64_t b) {
  EBM_CHECK(train_ != nullptr, "train_step before set_train_data");
  const int64_t img = opt_.net.image_size();
  const int bs = opt_.batch_size;
  const int64_t start = b * bs;
  EBM_CHECK(start < int64_t(perm_.size()), "batch index past the end of the epoch");
  const int nr = int(std::min<int64_t>(bs, int64_t(perm_.size()) - start));  // the last batch may be partial
  const int nf = bs;                                                           // the buffer always gives a full one
  batch_.resize(size_t(nr + nf) * img);
  float* real = batch_.data();
  float* fake = batch_.data() + int64_t(nr) * img;

  // real ← clip(real + σ·N(0,1), −1, 1)
  for (int i = 0; i < nr; ++i) std::memcpy(real + i * img, train_->ptr() + perm_[start + i] * img, sizeof(float) * img);
  noise_.resize(size_t(nr) * img);
  rng_real_.normal(noise_.data(), int64_t(nr) * img, 0.0f, 1.0f);
  const float rn = float(opt_.real_noise);
  for (int64_t i = 0; i < int64_t(nr) * img; ++i) real[i] = langevin_perturb(real[i], rn, noise_[i]);

  // fake ← buffer draw refined by Langevin, then written back (no gradient flows through the sampler)
  buffer_.draw(nf, opt_.reinit_prob, rng_choice_, rng_fresh_, fake);
  langevin(fake, nf, opt_.sampler, rng_langevin_);
  buffer_.push(fake, nf);

  // One forward/backward over [real; fake] — rows are independent, so this is both batches at once.
  const int n = nr + nf;
  f_.resize(size_t(n));
  df_.resize(size_t(n));
  parallel_rows(n, [&](CpuNet& net, int, int a, int b) {
    net.forward(params_.data(), batch_.data() + a * img, b - a, f_.data() + a);
  });
  const StepMetrics m = cd_loss(f_.data(), nr, f_.data() + nr, nf, float(opt_.alpha), df_.data(), df_.data() + nr);
  parallel_rows(n, [&](CpuNet& net, int t, int a, int b) {  // same split, so each net still holds its rows
    grads_[t].resize(params_.size());
    net.backward(params_.data(), df_.data() + a, nullptr, grads_[t].data());
  });
  reduce_grads(n);
  adam_step(grad_);
  pending_.push_back(m);
}

std::vector<StepMetrics> CpuBackend::drain_metrics() {
  std::vector<StepMetrics> out;
  out.swap(pending_);
  return out;
}

void CpuBackend::adam_step(const std::vector<float>& grad) {
  EBM_CHECK(grad.size() == params_.size(), "gradient size differs from the parameter count");
  adam_.t += 1;
  const AdamHyper h = adam_hyper(opt_.lr, opt_.beta1, opt_.beta2, opt_.eps, adam_.t);
  const int64_t n = int64_t(params_.size());
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) adam_update(params_[i], adam_.m[i], adam_.v[i], grad[i], h);
}

std::vector<float> CpuBackend::energy(const Tensor& x) {
  const int64_t img = opt_.net.image_size();
  const int64_t n = x.numel() / img;
  EBM_CHECK(n * img == x.numel(), "energy(): input shape does not match the network input");
  std::vector<float> f(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; s += opt_.batch_size) {
    const int c = int(std::min<int64_t>(opt_.batch_size, n - s));
    forward_rows(x.ptr() + s * img, c, f.data() + s);
  }
  return f;
}

void CpuBackend::forward_rows(const float* x, int n, float* f) {
  const int64_t img = opt_.net.image_size();
  parallel_rows(n, [&](CpuNet& net, int, int a, int b) { net.forward(params_.data(), x + a * img, b - a, f + a); });
}

ValidationMetrics CpuBackend::validate(const Tensor& test, int64_t epoch) {
  const int64_t img = opt_.net.image_size();
  const int64_t n = test.numel() / img;
  Rng rng(opt_.seed, RngStream::kValidation);
  rng.offset = uint64_t(epoch) << 40;
  ValidationMetrics v;
  int batches = 0;
  std::vector<float> noise, fr(size_t(opt_.batch_size)), ff(size_t(opt_.batch_size));
  for (int64_t s = 0; s < n; s += opt_.batch_size, ++batches) {
    const int c = int(std::min<int64_t>(opt_.batch_size, n - s));
    noise.resize(size_t(c) * img);
    rng.uniform(noise.data(), int64_t(noise.size()), -1.0f, 1.0f);
    forward_rows(test.ptr() + s * img, c, fr.data());
    forward_rows(noise.data(), c, ff.data());
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

void CpuBackend::sample(Tensor& x, const SamplerParams& p, uint64_t seed, int every, std::vector<Tensor>* traj) {
  const int64_t img = opt_.net.image_size();
  const int n = int(x.numel() / img);
  Rng rng(seed, RngStream::kGenerate);
  if (every <= 0 || !traj) {
    langevin(x.ptr(), n, p, rng);
    return;
  }
  traj->push_back(x);
  SamplerParams chunk = p;
  for (int done = 0; done < p.steps; done += chunk.steps) {
    chunk.steps = std::min(every, p.steps - done);
    langevin(x.ptr(), n, chunk, rng);
    traj->push_back(x);
  }
}

void CpuBackend::input_grad(const Tensor& x, std::vector<float>& f, Tensor& dfdx) {
  const int n = int(x.numel() / opt_.net.image_size());
  f.resize(size_t(n));
  dfdx = Tensor(x.shape);
  ones_.assign(size_t(n), 1.0f);
  const int64_t img = opt_.net.image_size();
  parallel_rows(n, [&](CpuNet& net, int, int a, int b) {
    net.forward(params_.data(), x.ptr() + a * img, b - a, f.data() + a);
    net.backward(params_.data(), ones_.data() + a, dfdx.ptr() + a * img, nullptr);
  });
}

void CpuBackend::param_grad(const Tensor& x, const std::vector<float>& w, std::vector<float>& f,
                            std::vector<float>& grad) {
  const int n = int(x.numel() / opt_.net.image_size());
  EBM_CHECK(int(w.size()) == n, "param_grad: one weight per image");
  f.resize(size_t(n));
  const int64_t img = opt_.net.image_size();
  parallel_rows(n, [&](CpuNet& net, int t, int a, int b) {
    grads_[t].resize(params_.size());
    net.forward(params_.data(), x.ptr() + a * img, b - a, f.data() + a);
    net.backward(params_.data(), w.data() + a, nullptr, grads_[t].data());
  });
  reduce_grads(n);
  grad = grad_;
}

}  // namespace ebm
