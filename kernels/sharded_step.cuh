// The data-parallel train step's own kernels (W ranks, one GPU each, global batch G = B·W): the device twins
// of CpuBackend's draw_fake_shard and sharded_loss (engine/cpu/cpu_backend.cpp), so that rank r of a W-rank run
// draws its rows' slice of the numbers a 1-rank run with batch G draws, and its loss gradient is scaled by
// the global counts (the NCCL sum of the ranks' gradients is then the 1-rank gradient). The rest of the step
// reuses replay.cuh's kernels on the shifted snapshot this one writes. Launchers (kernels in sharded_step.cu);
// each returns cudaGetLastError().
//
// Requires image % 4 == 0 (the host checks): every rank's element offset into a stream is then a whole
// number of Philox blocks, which the block-wise kernels (gather, draw, Langevin) can start from.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_state.cuh"
#include "kernels/replay.cuh"  // StepDraw

namespace ebm::cuda {

// begin_step for rank `rank` of `world` (one block). The global draw, as CpuBackend::draw_fake_shard:
// G Bernoulli trials at choice blocks off_choice + j, rank q's rows being trials [qB, (q+1)B); this rank's
// held rows' buffer indices at blocks off_choice + G + k, k counting held rows over the ranks in order; its
// fresh rows from the fresh stream after the lower ranks' fresh rows. The snapshot's offsets point at this
// rank's slices (real rows from real_first, its fresh rows, its Langevin rows r·B), so gather_real, draw_fake
// and the Langevin updates run unchanged; the live counters advance by the whole global draw, alike on every
// rank: n_real·img real normals, 2G − Σ n_new choice blocks, Σ n_new·img fresh uniforms, steps × G·img
// Langevin normals. d.batch = B, d.nr is unused (n_real and real_first say it).
[[nodiscard]] cudaError_t sharded_begin_step(DeviceState* st, int32_t* slots, const StepDraw& d, int world, int rank,
                                             int64_t n_real, int64_t real_first, cudaStream_t s);

// Over this rank's rows f (nr + nf) = [f(real); f(fake)]: df = dL/df with the global counts (inv_nr = 1/n_real,
// inv_nf = 1/G), and the partial sums the ranks then reduce: sums[0..3] = Σ f_real, Σ f_real², Σ f_fake,
// Σ f_fake² (NCCL sum), sums[4..5] = max |f| over finite values and 1 if any is NaN/inf (NCCL max). One block.
[[nodiscard]] cudaError_t sharded_loss_partials(const float* f, float* df, int nr, int nf, float alpha, float inv_nr,
                                                float inv_nf, double* sums, cudaStream_t s);

// After the all-reduce of `sums`: the step's metrics into the ring slot metrics_count % kMetricsRing, over the
// global counts (CpuBackend::sharded_loss's formulas). One thread.
[[nodiscard]] cudaError_t sharded_loss_metrics(const double* sums, int64_t n_real, int64_t n_fake, double alpha,
                                               DeviceState* st, DeviceMetrics* ring, cudaStream_t s);

}  // namespace ebm::cuda
