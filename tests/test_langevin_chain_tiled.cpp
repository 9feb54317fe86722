// The tiled Langevin chain (kernels/langevin_chain_tiled.hpp) on the CPU: its per-thread code run by the block
// simulator (tests/block_sim.hpp) — every thread a fiber, warp shuffles and mbarriers emulated — against the CPU
// backend's chain, in both thread orders, for the weights read from global memory ("tiled") and kept on chip
// ("resident", with the ring); and what decides its speed on the GPU, measured from that code.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/backend.hpp"              // EngineOptions, SamplerParams
#include "engine/cpu/cpu_backend.hpp"      // CpuBackend: the reference chain
#include "engine/rng.hpp"                  // Rng, stream_id
#include "kernels/langevin_chain_tiled.hpp"  // TiledChain: the code under test
#include "tests/block_sim.hpp"             // BlockSim, SimLane

using namespace ebm;
using sim::BlockSim;
using sim::SimLane;

namespace {

using SeedNet = TiledNet<1, 32, 16, 32, 64, 64>;

TiledParamOffsets offsets_of(const NetSpec& n) {
  TiledParamOffsets o;
  for (size_t l = 0; l < n.convs.size(); ++l) o.w_off[l] = n.convs[l].w_off, o.b_off[l] = n.convs[l].b_off;
  o.dense_w_off = n.dense_w_off;
  return o;
}

std::vector<float> params_for(const NetSpec& net, uint64_t seed) {
  std::vector<float> p = init_params(net, seed);
  Rng r(seed + 1, RngStream::kInit);
  for (const ConvShape& c : net.convs) r.uniform(p.data() + c.b_off, c.cout, -0.2f, 0.2f);
  r.uniform(p.data() + net.dense_b_off, 1, -0.2f, 0.2f);
  return p;
}

std::vector<float> images(int n, int img, uint64_t seed) {
  std::vector<float> x(size_t(n) * size_t(img));
  Rng(seed, RngStream::kInit).uniform(x.data(), int64_t(x.size()), -1.0f, 1.0f);
  return x;
}

template <class Chain>
std::vector<F4> pack(const NetSpec& spec, const std::vector<float>& params) {
  constexpr TiledPlan P = Chain::P;
  std::vector<F4> out(size_t(P.packed_floats + 3) / 4);
  float* f = &out[0].x;
  const TiledParamOffsets o = offsets_of(spec);
  for (int i = 0; i < P.packed_floats; ++i) {
    const int64_t s = tiled_pack_source(P, o, i);
    f[i] = s >= 0 ? params[size_t(s)] : 0.0f;
  }
  return out;
}

struct SimRun {
  std::vector<float> x;
  std::map<int, sim::PhaseStats> stats;
  int64_t barriers = 0;
};

template <class Chain>
SimRun sim_chain(const NetSpec& spec, const std::vector<float>& params, std::vector<float> x, int n,
                 const SamplerParams& sp, const TiledNoise& nz, bool descending, bool record = false) {
  constexpr TiledPlan P = Chain::P;
  const std::vector<F4> packed = pack<Chain>(spec, params);
  std::vector<F4> smem(size_t(P.smem_floats + 3) / 4);
  const int img = int(spec.image_size());
  SimRun out;
  const TiledSampler p{sp.steps, sp.step_size, sp.noise, sp.grad_clip};
  for (int g = 0; g < n; ++g) {
    float* sm = &smem[0].x;
    std::fill(sm, sm + P.smem_floats, std::numeric_limits<float>::quiet_NaN());
    BlockSim s({P.nt, descending, record});
    s.set_shared(sm, size_t(P.smem_floats));
    float* xg = x.data() + size_t(g) * size_t(img);
    s.run([&](SimLane& lane) { Chain::run(lane, sm, &packed[0].x, xg, g, p, nz); });
    for (const auto& [id, st] : s.stats()) {
      sim::PhaseStats& a = out.stats[id];
      a = st;
    }
    out.barriers += s.block_barriers();
  }
  out.x = std::move(x);
  return out;
}

TiledNoise sample_noise(uint64_t seed, int n, int img) {
  return {seed, stream_id(RngStream::kGenerate), 0, philox_blocks(uint64_t(n) * uint64_t(img))};
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (!(d <= m)) m = d;
  }
  return m;
}

TEST(TiledChainPlan, PrintsSeedTiles) {
  using C = TiledChain<SeedNet, 512, true>;
  constexpr TiledPlan P = C::P;
  for (int l = 0; l < P.layers; ++l)
    std::printf("layer %d: fwd tc %d tp %d sk %d pgw %d | bwd tc %d tp %d sk %d pgw %d | cp %d dp %d wp %d\n", l,
                P.fwd[l].tc, P.fwd[l].tp, P.fwd[l].sk, P.fwd[l].pgw, P.bwd[l].tc, P.bwd[l].tp, P.bwd[l].sk,
                P.bwd[l].pgw, P.cp[l], P.dp[l], P.wp[l]);
  std::printf("smem %d floats (%d KB), resident layers %d, ring %d x %d floats, packed %d\n", P.smem_floats,
              P.smem_floats * 4 / 1024, P.resident_layers, P.ring_slots, P.chunk_floats, P.packed_floats);
}

TEST(TiledChainSim, SeedNetOneStepMatchesCpu) {
  const NetSpec spec = NetSpec::make({16, 32, 64, 64}, 3, 2, 32);
  EngineOptions o;
  o.net = spec;
  o.batch_size = 2;
  o.buffer_initial = 2;
  CpuBackend cpu(o);
  const std::vector<float> params = params_for(spec, 7);
  cpu.set_params(params);
  const int n = 2, img = int(spec.image_size());
  const SamplerParams sp{1, 10.0f, 0.005f, 0.03f};
  const std::vector<float> x0 = images(n, img, 21);
  Tensor ref({n, 1, 32, 32});
  ref.data = x0;
  cpu.sample(ref, sp, 11);
  const TiledNoise nz = sample_noise(11, n, img);
  const SimRun a = sim_chain<TiledChain<SeedNet, 512, false>>(spec, params, x0, n, sp, nz, false, true);
  std::printf("tiled vs cpu: %.3g\n", max_diff(a.x, ref.data));
  for (const auto& [id, s] : a.stats)
    std::printf("phase %3d: simt %.3f lds %lld waves/ideal %.2f worst %lld (line %d) sts ways %.2f fma %lld bal %.3f shfl %lld ldg %lld sectors %lld\n",
                id, s.simt(), (long long)s.lds, s.lds_ways(), (long long)s.lds_worst, s.worst_lds_line,
                s.sts_ideal ? double(s.sts_wavefronts) / double(s.sts_ideal) : 1.0, (long long)s.fma, s.balance(),
                (long long)s.shfl, (long long)s.ldg, (long long)s.ldg_sectors);
  const SimRun b = sim_chain<TiledChain<SeedNet, 512, true>>(spec, params, x0, n, sp, nz, true, true);
  for (const auto& [id, s] : b.stats)
    std::printf("phase %3d: simt %.3f lds %lld waves/ideal %.2f worst %lld (line %d) sts ways %.2f fma %lld bal %.3f shfl %lld ldg %lld sectors %lld\n",
                id, s.simt(), (long long)s.lds, s.lds_ways(), (long long)s.lds_worst, s.worst_lds_line,
                s.sts_ideal ? double(s.sts_wavefronts) / double(s.sts_ideal) : 1.0, (long long)s.fma, s.balance(),
                (long long)s.shfl, (long long)s.ldg, (long long)s.ldg_sectors);
  std::printf("resident vs cpu: %.3g\n", max_diff(b.x, ref.data));
  EXPECT_TRUE(same_bits(a.x, b.x));
  EXPECT_LT(max_diff(a.x, ref.data), 1e-6);
}

}  // namespace
