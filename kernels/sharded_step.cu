// Kernels of sharded_step.cuh.
#include "kernels/sharded_step.cuh"

#include <cmath>

#include "kernels/ebm_math.hpp"
#include "kernels/random.cuh"
#include "kernels/reduce.cuh"
#include "kernels/rng_streams.hpp"

namespace ebm::cuda {
namespace {

// begin_step_kernel for rank `rank` of `world` (one block). The global draw, as CpuBackend::draw_fake_shard:
// G Bernoulli trials at choice blocks off_choice + j, rank q's rows being trials [qB, (q+1)B); this rank's
// held rows' buffer indices at blocks off_choice + G + k, k counting held rows over the ranks in order; its
// fresh rows from the fresh stream after the lower ranks' fresh rows. The snapshot's offsets point at this
// rank's slices (real rows from real_first, its fresh rows, its Langevin rows r·B), so gather_real_kernel,
// draw_fake_kernel and the Langevin updates run unchanged; the live counters advance by the whole global
// draw, alike on every rank: n_real·img real normals, 2G − Σ n_new choice blocks, Σ n_new·img fresh
// uniforms, steps × G·img Langevin normals.
__global__ void sharded_begin_step_kernel(DeviceState* st, int32_t* __restrict__ slots, StepDraw d, int world,
                                          int rank, int64_t n_real, int64_t real_first) {
  const int batch = d.batch, capacity = d.capacity;
  const int64_t img = d.img;
  __shared__ int s_mine, s_before, s_total;
  const uint64_t seed = st->seed, off_choice = st->off_choice;
  const uint64_t choice = stream_id(RngStream::kBufferChoice);
  const int64_t G = int64_t(batch) * world;
  int mine = 0, before = 0, total = 0;
  for (int64_t j = threadIdx.x; j < G; j += blockDim.x) {
    const int fresh = philox_unit(seed, choice, off_choice + uint64_t(j)) < d.reinit_prob;
    const int64_t q = j / batch;
    total += fresh;
    mine += q == rank ? fresh : 0;
    before += q < rank ? fresh : 0;
  }
  mine = block_reduce(mine, SumOp{}, 0);
  before = block_reduce(before, SumOp{}, 0);
  total = block_reduce(total, SumOp{}, 0);
  if (threadIdx.x == 0) s_mine = mine, s_before = before, s_total = total;
  __syncthreads();
  const int n_new = s_mine;
  const int64_t held_before = int64_t(rank) * batch - s_before;  // Σ_{q<r} (B − n_new_q)
  const int32_t head = st->head, size = st->size;
  for (int i = n_new + threadIdx.x; i < batch; i += blockDim.x) {
    const uint64_t k = philox_below(seed, choice, off_choice + uint64_t(G + held_before + (i - n_new)), uint64_t(size));
    slots[i] = static_cast<int32_t>((head + k) % capacity);
  }
  __syncthreads();  // every thread has read the live counters before thread 0 rewrites them
  if (threadIdx.x == 0) {
    StepSnapshot& s = st->step;
    s.seed = seed;
    s.off_real = st->off_real + uint64_t(real_first * img / 4);
    s.off_choice = off_choice;
    s.off_fresh = st->off_fresh + uint64_t(int64_t(s_before) * img / 4);
    s.off_langevin = st->off_langevin + uint64_t(int64_t(rank) * batch * img / 4);
    s.batch = st->cursor;
    s.head = head;
    s.size = size;
    s.n_new = n_new;
    st->off_real += philox_blocks(uint64_t(n_real * img));
    st->off_choice += uint64_t(2 * G - s_total);
    st->off_fresh += philox_blocks(uint64_t(s_total) * uint64_t(img));
    if (d.langevin_noise) st->off_langevin += uint64_t(d.langevin_steps) * philox_blocks(uint64_t(G * img));
    st->cursor += 1;
  }
}

// Over this rank's rows f (nr + nf) = [f(real); f(fake)]: df = dL/df with the global counts (inv_nr = 1/n_real,
// inv_nf = 1/G), and the partial sums the ranks then reduce: sums[0..3] = Σ f_real, Σ f_real², Σ f_fake,
// Σ f_fake² (NCCL sum), sums[4..5] = max |f| over finite values and 1 if any is NaN/inf (NCCL max). One block.
__global__ void sharded_loss_partials_kernel(const float* __restrict__ f, float* __restrict__ df, int nr, int nf,
                                             float alpha, float inv_nr, float inv_nf, double* __restrict__ sums) {
  double sr = 0, sr2 = 0, sf = 0, sf2 = 0, mx = 0, bad = 0;
  for (int i = threadIdx.x; i < nr + nf; i += blockDim.x) {
    const float v = f[i];
    const double d = v;
    if (i < nr) {
      sr += d, sr2 += d * d;
      df[i] = dloss_dreal(v, alpha, inv_nr);
    } else {
      sf += d, sf2 += d * d;
      df[i] = dloss_dfake(v, alpha, inv_nf);
    }
    if (isfinite(v)) mx = fmax(mx, fabs(d));
    else bad = 1;
  }
  sr = block_reduce(sr, SumOp{}, 0.0);
  sr2 = block_reduce(sr2, SumOp{}, 0.0);
  sf = block_reduce(sf, SumOp{}, 0.0);
  sf2 = block_reduce(sf2, SumOp{}, 0.0);
  mx = block_reduce(mx, MaxOp{}, 0.0);
  bad = block_reduce(bad, MaxOp{}, 0.0);
  if (threadIdx.x == 0) {
    sums[0] = sr, sums[1] = sr2, sums[2] = sf, sums[3] = sf2, sums[4] = mx, sums[5] = bad;
  }
}

// After the all-reduce of `sums`: the step's metrics into the ring slot metrics_count % kMetricsRing, over the
// global counts (CpuBackend::sharded_loss's formulas). One thread.
__global__ void sharded_loss_metrics_kernel(const double* __restrict__ sums, int64_t n_real, int64_t n_fake,
                                            double alpha, DeviceState* st, DeviceMetrics* ring) {
  DeviceMetrics m{};
  m.real = sums[0] / double(n_real);
  m.fake = sums[2] / double(n_fake);
  m.cdiv = m.fake - m.real;
  m.reg = alpha * (sums[1] / double(n_real) + sums[3] / double(n_fake));
  m.loss = m.cdiv + m.reg;
  m.max_abs_f = sums[5] != 0 ? NAN : sums[4];  // the divergence guard must see NaN/inf
  const uint64_t k = st->metrics_count;
  ring[k % kMetricsRing] = m;
  st->metrics_count = k + 1;
}

}  // namespace

cudaError_t sharded_begin_step(DeviceState* st, int32_t* slots, const StepDraw& d, int world, int rank, int64_t n_real,
                               int64_t real_first, cudaStream_t s) {
  sharded_begin_step_kernel<<<1, 256, 0, s>>>(st, slots, d, world, rank, n_real, real_first);
  return cudaGetLastError();
}

cudaError_t sharded_loss_partials(const float* f, float* df, int nr, int nf, float alpha, float inv_nr, float inv_nf,
                                  double* sums, cudaStream_t s) {
  sharded_loss_partials_kernel<<<1, 256, 0, s>>>(f, df, nr, nf, alpha, inv_nr, inv_nf, sums);
  return cudaGetLastError();
}

cudaError_t sharded_loss_metrics(const double* sums, int64_t n_real, int64_t n_fake, double alpha, DeviceState* st,
                                 DeviceMetrics* ring, cudaStream_t s) {
  sharded_loss_metrics_kernel<<<1, 1, 0, s>>>(sums, n_real, n_fake, alpha, st, ring);
  return cudaGetLastError();
}

}  // namespace ebm::cuda
