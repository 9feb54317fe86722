// The fused Langevin chain's per-image code (kernels/langevin_chain_block.hpp) on the CPU: a driver runs every
// phase for every thread index — ascending, descending, and at other thread counts — with the barrier between
// phases where the GPU has __syncthreads(), and compares with the CPU backend's chain (CpuBackend::sample, the
// reference). Order-dependent bits would be a race; the chain must equal the reference within kChainTol.
//
// CudaParityFusedChain.* runs the kernel itself (cuda.langevin "fused") against the CPU backend and the per-layer
// path on a GPU, and skips, saying why, where there is none. (A suite of its own: gtest refuses plain TESTs in
// test_cuda_parity.cpp's TEST_P suite CudaParity; the name still matches the device check's '^CudaParity'.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/backend.hpp"               // EngineOptions, SamplerParams
#include "engine/cpu/cpu_backend.hpp"       // CpuBackend: the reference chain
#include "engine/langevin_chain_plan.hpp"   // chain_net_for, chain_refusal, chain_images_per_block
#include "engine/rng.hpp"                   // Rng: inputs, and the noise stream drawn directly
#include "host/eval/backend_factory.hpp"         // make_backend, cuda_usable
#include "kernels/langevin_chain_block.hpp"  // chain_phase: the code under test
#include "kernels/philox.hpp"               // philox_blocks

#include "tests/chain_test_support.hpp"  // chain_params, chain_images, compare, same_bits, why_no_cuda

using namespace ebm;
using namespace ebm::test;

namespace {

struct ChainShape {
  const char* name;
  std::vector<int> channels;
  int k, stride, hw;
};
const ChainShape kSeed{"seed", {16, 32, 64, 64}, 3, 2, 32};  // DESIGN §1's net
const ChainShape kSmall{"small", {8, 16}, 3, 2, 32};
const ChainShape kWide{"wide3", {32, 64, 64}, 3, 2, 32};     // 116 KB an image: one image a block
const ChainShape kK5S1{"k5s1", {8, 16}, 5, 1, 32};           // kernel 5, stride 1: 164 KB an image
const ChainShape kOdd{"odd29", {8, 16}, 3, 2, 29};           // 841 pixels: noise element by element

// Tolerance of the fused chain against CpuBackend::sample, |fused − cpu| per element of x in [−1, 1]. Not bit-exact:
// the two compute the same sums in other orders (a per-element gather here, the CPU's GEMMs and col2im there),
// swish with libm's expf here and the CPU's vector expf there, and the noise's Box–Muller with libm's
// logf/sinf/cosf here (philox_normal_at, exactly: LangevinChainNoise) and the CPU's vector versions there (a few
// ulp of N(0,1), times noise 0.005). All of it is rounding. Measured on this machine (the harness's cases):
// one step within 1.2e-7 (an ulp of x near 1 is 6e-8), noise on or off; 100 steps within 1.7e-6 — each step's
// rounding passes through the next steps' gradients (step size 10: a change δ in x moves the next x by up to
// 10·|∂²f/∂x²|·δ where the gradient is not clipped), so it grows along the chain. Each tolerance is ~10× the
// worst measured; an indexing, layout or noise bug moves x by 1e-3 and more (one draw is 0.005·N(0,1)).
constexpr double kChainTolOne = 1e-6;
constexpr double kChainTolLong = 2e-5;

struct Chain {
  ChainNet net;
  std::vector<float> params;
  SamplerParams p;
  uint64_t seed = 11;
};

EngineOptions options_for(const ChainShape& s) {
  EngineOptions o;
  o.net = NetSpec::make(s.channels, s.k, s.stride, s.hw);
  o.seed = 3;
  o.batch_size = 8;
  o.buffer_initial = 8;
  return o;
}

// The GPU's launch, on the host: block b owns images [b·kImages, ...); every phase runs for every thread index
// in `order` before the next phase starts (the barrier). Shared memory starts as NaN, so a read of anything no
// earlier phase wrote shows up in the result.
template <int kImages>
void run_host_chain(const ChainNet& net, const float* params, std::vector<float>& x, int n, const SamplerParams& sp,
                    const ChainNoise& nz, int nthreads, bool descending) {
  const ChainSampler p{sp.steps, sp.step_size, sp.noise, sp.grad_clip};
  std::vector<float> smem(static_cast<size_t>(kImages) * static_cast<size_t>(net.image_floats));
  const int phases = chain_phases(net, p.steps);
  for (int first = 0; first < n; first += kImages) {
    std::fill(smem.begin(), smem.end(), std::numeric_limits<float>::quiet_NaN());
    const int nimg = std::min(kImages, n - first);
    for (int ph = 0; ph < phases; ++ph)
      for (int i = 0; i < nthreads; ++i) {
        const int tid = descending ? nthreads - 1 - i : i;
        HostLane lane{tid, nthreads};
        chain_phase<kImages>(lane, ph, tid, nthreads, smem.data(), net, params, x.data() + int64_t(first) * net.img,
                             nimg, first, p, nz);
      }
  }
}

std::vector<float> host_chain(int images, const ChainNet& net, const std::vector<float>& params, std::vector<float> x,
                              int n, const SamplerParams& sp, const ChainNoise& nz, int nthreads, bool descending) {
  if (sp.steps <= 0) return x;
  if (images == 1) run_host_chain<1>(net, params.data(), x, n, sp, nz, nthreads, descending);
  else run_host_chain<2>(net, params.data(), x, n, sp, nz, nthreads, descending);
  return x;
}

// sample()'s noise: stream (seed, kGenerate) from block 0, step k at k·philox_blocks(n·img).
ChainNoise sample_noise(uint64_t seed, int n, int img) {
  return {seed, stream_id(RngStream::kGenerate), 0, philox_blocks(uint64_t(n) * uint64_t(img))};
}

struct HarnessCase {
  const ChainShape* shape;
  int n, steps;
  bool noise;
  int images;  // per block
  std::string name() const {
    return std::string(shape->name) + "_n" + std::to_string(n) + "_k" + std::to_string(steps) +
           (noise ? "_noise" : "_nonoise") + "_ipb" + std::to_string(images);
  }
};
void PrintTo(const HarnessCase& c, std::ostream* os) { *os << c.name(); }

class LangevinChainHarness : public ::testing::TestWithParam<HarnessCase> {};

// Both thread orders and three thread counts give the same bits; all equal the CPU backend's chain.
TEST_P(LangevinChainHarness, MatchesCpuBackendInEveryThreadOrder) {
  const HarnessCase& c = GetParam();
  const EngineOptions o = options_for(*c.shape);
  CpuBackend cpu(o);
  const std::vector<float> params = chain_params(o.net, 7);
  cpu.set_params(params);
  const ChainNet net = chain_net_for(o.net);
  ASSERT_EQ(chain_refusal(o.net, 227 * 1024), "");
  const int img = net.img;
  const SamplerParams sp{c.steps, 10.0f, c.noise ? 0.005f : 0.0f, 0.03f};
  const uint64_t seed = 11;
  const std::vector<float> x0 = chain_images(c.n, img, 21);

  Tensor ref({c.n, 1, o.net.in_h, o.net.in_w});
  ref.data = x0;
  cpu.sample(ref, sp, seed);

  const ChainNoise nz = sample_noise(seed, c.n, img);
  const std::vector<float> asc = host_chain(c.images, net, params, x0, c.n, sp, nz, kChainThreads, false);
  const std::vector<float> desc = host_chain(c.images, net, params, x0, c.n, sp, nz, kChainThreads, true);
  EXPECT_TRUE(same_bits(asc, desc)) << "ascending and descending thread orders differ: a race between threads";
  for (int threads : {1, 97}) {  // one thread does every element; 97 splits every layer unevenly
    if (c.steps > 1) break;       // (one step shows it; 100 would double the test's time)
    EXPECT_TRUE(same_bits(host_chain(c.images, net, params, x0, c.n, sp, nz, threads, true), asc))
        << threads << " threads differ from " << kChainThreads;
  }
  const double tol = c.steps == 1 ? kChainTolOne : kChainTolLong;
  const Diff d = compare(asc, ref.data, tol);
  double moved = 0;  // the chain must have done something for the comparison to mean anything
  for (size_t i = 0; i < x0.size(); ++i) moved = std::max(moved, std::fabs(double(ref.data[i]) - double(x0[i])));
  std::printf("[  chain   ] %s: max |fused - cpu| %.3g (tolerance %.3g) at %zu; max |x_K - x_0| %.3g\n",
              c.name().c_str(), d.max_abs, tol, d.at, moved);
  EXPECT_GT(moved, 1e-3);
  EXPECT_EQ(d.bad, 0u) << d.bad << "/" << x0.size() << " beyond " << tol << "; worst " << d.max_abs << " at " << d.at
                       << ": fused " << asc[d.at] << ", cpu " << ref.data[d.at];
}

std::vector<HarnessCase> harness_cases() {
  std::vector<HarnessCase> t;
  // The seed net: K = 1 and K = 100, noise on and off; a partial batch at two images a block (3 = 2 + 1).
  for (bool noise : {false, true}) {
    t.push_back({&kSeed, 3, 1, noise, 2});
    t.push_back({&kSeed, 2, 100, noise, 1});
  }
  t.push_back({&kSeed, 3, 100, true, 2});
  for (const ChainShape* s : {&kSmall, &kWide, &kK5S1, &kOdd}) {
    t.push_back({s, 3, 1, true, s == &kWide || s == &kK5S1 ? 1 : 2});
    t.push_back({s, 3, 1, false, 2});
  }
  t.push_back({&kSmall, 3, 100, true, 2});
  t.push_back({&kOdd, 3, 100, true, 2});
  return t;
}

INSTANTIATE_TEST_SUITE_P(, LangevinChainHarness, ::testing::ValuesIn(harness_cases()),
                         [](const ::testing::TestParamInfo<HarnessCase>& i) { return i.param.name(); });

// The noise exactly: with zero weights dfdx = 0, so the chain is x ← clip(x + 0.005·n) step after step, n the
// stream's normals drawn by Rng::normal (philox_normal_at) at each step's offset — compared bit for bit, at
// a partial block, from a nonzero offset (a data-parallel rank's slice, a later training step).
TEST(LangevinChainNoise, DrawsTheEnginesPhiloxStreamBitForBit) {
  for (const ChainShape* s : {&kSeed, &kOdd}) {
    const NetSpec spec = NetSpec::make(s->channels, s->k, s->stride, s->hw);
    const ChainNet net = chain_net_for(spec);
    const std::vector<float> zero(size_t(spec.num_params), 0.0f);
    const int n = 3, img = net.img;
    const SamplerParams sp{5, 10.0f, 0.005f, 0.03f};
    const uint64_t seed = 9, blocks = philox_blocks(uint64_t(n) * uint64_t(img)) + 3;
    const ChainNoise nz{seed, stream_id(RngStream::kLangevin), 1234, blocks};
    const std::vector<float> x0 = chain_images(n, img, 5);
    const std::vector<float> want = noise_only_chain(x0, sp.steps, sp.noise, seed, nz.offset, blocks);
    for (int ipb : {1, 2})
      EXPECT_TRUE(same_bits(host_chain(ipb, net, zero, x0, n, sp, nz, kChainThreads, false), want))
          << s->name << ", " << ipb << " images a block";
  }
}

// What takes the fused path: the seed net and the harness's shapes fit an H200's 227 KB a block; a 256×256 input
// and a 9-layer net do not, and say why in one line.
TEST(LangevinChainPlan, BudgetAndRefusals) {
  const size_t kBlock = 227 * 1024, kSm = 228 * 1024;
  const NetSpec seed = NetSpec::make({16, 32, 64, 64}, 3, 2, 32);
  const ChainNet c = chain_net_for(seed);
  // DESIGN §3: image 1,024 + swish' of layers 1–3 (4,096 + 2,048 + 1,024) + two buffers of 4,096 floats = 64 KB.
  EXPECT_EQ(chain_image_bytes(c), size_t(16384) * 4);
  EXPECT_EQ(chain_refusal(seed, kBlock), "");
  EXPECT_EQ(chain_images_per_block(c, kBlock, kSm), 1);  // 2 images = 128 KB: two such blocks would not fit
  EXPECT_EQ(chain_images_per_block(chain_net_for(NetSpec::make({8, 16}, 3, 2, 32)), kBlock, kSm), 2);
  const std::string big = chain_refusal(NetSpec::make({16, 32}, 3, 2, 256), kBlock);
  EXPECT_NE(big.find("KB of shared memory"), std::string::npos) << big;
  EXPECT_NE(chain_refusal(NetSpec::make({8, 8, 8, 8, 8, 8, 8, 8, 8}, 3, 1, 32), kBlock), "");
  EXPECT_NE(chain_refusal(NetSpec::make({16, 32}, 3, 2, 32, 1, 10), kBlock), "");  // a classifier's K outputs
}

// --- on a GPU: the kernel against the CPU backend, and against the per-layer path ---

struct GpuCase {
  const ChainShape* shape;
  int n, steps;
  bool noise;
};

void run_gpu_case(const GpuCase& c) {
  const std::string why = why_no_cuda();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  EngineOptions o = options_for(*c.shape);
  o.fused_langevin = true;
  CpuBackend cpu(o);
  auto gpu = make_backend("cuda", o);
  ASSERT_TRUE(gpu->facts().fused_langevin) << "the fused chain fell back: " << gpu->describe();
  const std::vector<float> params = chain_params(o.net, 7);
  cpu.set_params(params);
  gpu->set_params(params);
  const SamplerParams sp{c.steps, 10.0f, c.noise ? 0.005f : 0.0f, 0.03f};
  Tensor xc({c.n, 1, o.net.in_h, o.net.in_w});
  xc.data = chain_images(c.n, int(o.net.image_size()), 21);
  const Tensor x0 = xc;
  Tensor xg = xc;
  cpu.sample(xc, sp, 11);
  gpu->sample(xg, sp, 11);
  const double tol = c.steps == 1 ? kChainTolOne : kChainTolLong;
  const Diff d = compare(xg.data, xc.data, tol);
  std::printf("[  chain   ] gpu %s n%d k%d %s: max |fused - cpu| %.3g (tolerance %.3g)\n", c.shape->name, c.n,
              c.steps, c.noise ? "noise" : "no noise", d.max_abs, tol);
  EXPECT_EQ(d.bad, 0u) << "worst " << d.max_abs << " at " << d.at;
  // The per-layer path on the same device, same chain.
  o.fused_langevin = false;
  auto layers = make_backend("cuda", o);
  ASSERT_FALSE(layers->facts().fused_langevin);
  layers->set_params(params);
  Tensor xl = x0;
  layers->sample(xl, sp, 11);
  const Diff dl = compare(xg.data, xl.data, tol);
  std::printf("[  chain   ] gpu %s: max |fused - layers| %.3g\n", c.shape->name, dl.max_abs);
  EXPECT_EQ(dl.bad, 0u) << "fused vs layers: worst " << dl.max_abs << " at " << dl.at;
}

TEST(CudaParityFusedChain, SeedNetOneStep) { run_gpu_case({&kSeed, 5, 1, true}); }
TEST(CudaParityFusedChain, SeedNetOneStepNoNoise) { run_gpu_case({&kSeed, 5, 1, false}); }
TEST(CudaParityFusedChain, SeedNet100Steps) { run_gpu_case({&kSeed, 128, 100, true}); }
TEST(CudaParityFusedChain, SeedNet100StepsNoNoise) { run_gpu_case({&kSeed, 9, 100, false}); }
TEST(CudaParityFusedChain, SmallNetPartialBatch) { run_gpu_case({&kSmall, 7, 100, true}); }
TEST(CudaParityFusedChain, Kernel5Stride1) { run_gpu_case({&kK5S1, 3, 10, true}); }
TEST(CudaParityFusedChain, OddImage) { run_gpu_case({&kOdd, 5, 10, true}); }

// A net past the budget falls back to the per-layer path and says so in facts().
TEST(CudaParityFusedChain, FallsBackForALargeInput) {
  const std::string why = why_no_cuda();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  EngineOptions o;
  o.net = NetSpec::make({16, 32}, 3, 2, 256);
  o.batch_size = 2;
  o.buffer_initial = 2;
  o.fused_langevin = true;
  auto gpu = make_backend("cuda", o);
  EXPECT_FALSE(gpu->facts().fused_langevin);
}

}  // namespace
