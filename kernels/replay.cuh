// A training step's data movement, all on the device so a CUDA graph can replay it: the step's random
// draws (Binomial count of fresh rows, buffer indices), the real batch gathered from the resident training
// set with its noise, the fake batch from the replay buffer, and the FIFO write-back. Each kernel consumes
// the Philox streams exactly as CpuBackend::train_step and ReplayBuffer do, so both backends draw the same
// numbers from the same state. Launchers (kernels in replay.cu); each returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_state.cuh"

namespace ebm::cuda {

// What a step's draw needs to know besides the device state.
struct StepDraw {
  int batch;               // fake rows (the buffer always gives a full batch)
  double reinit_prob;      // a fake row is fresh noise with this probability
  int nr;                  // real rows this step (the last batch of an epoch may be partial)
  int64_t img;             // pixels per image
  int langevin_steps;      // the sampler's steps, for the Langevin stream's advance
  bool langevin_noise;     // whether the sampler draws noise at all
  int capacity;            // the replay buffer's ring size
};

// One block. Snapshots the live counters into st->step for the rest of the step, draws
//   n_new ~ Binomial(batch, p) as `batch` Bernoulli trials (choice blocks off_choice + i), and for the held
//   rows i ≥ n_new a buffer slot uniform over the images held (choice blocks off_choice + batch + i − n_new)
//   into slots (batch),
// then advances the live counters by what this step consumes: nr·img real normals, 2·batch − n_new choice
// blocks, n_new·img fresh uniforms, steps × batch·img Langevin normals (when the sampler is noisy), one batch.
[[nodiscard]] cudaError_t begin_step(DeviceState* st, int32_t* slots, const StepDraw& d, cudaStream_t s);

// data.shift on the device (kernels/augment.hpp): k = 0 moves nothing; else each real row i of this rank is moved
// by augment_shift(seed, st->adam_t, row0 + i, k) (row0: this rank's first row of the global batch) within its
// image (c, h, w).
struct RealShift {
  int k = 0;
  int c = 0, h = 0, w = 0;
  int64_t row0 = 0;
};

// real (nr, img) ← clip(shifted train[perm[st->step.batch·bs + i]] + σ·N(0,1), −1, 1), normals from the
// real-noise stream at the step's snapshot. perm: int32 indices into train (N, img).
[[nodiscard]] cudaError_t gather_real(const float* train, const int32_t* perm, const DeviceState* st, float* real,
                                      int nr, int64_t img, int bs, float sigma, const RealShift& shift, cudaStream_t s);

// fake (nf, img): rows [0, n_new) fresh uniform noise in [−1, 1) from the fresh stream (ReplayBuffer::draw
// puts them first), rows [n_new, nf) copies of the buffer slots begin_step drew.
[[nodiscard]] cudaError_t draw_fake(const float* buffer, const int32_t* slots, const DeviceState* st, float* fake,
                                    int nf, int64_t img, cudaStream_t s);

// ReplayBuffer::push in closed form: row r of rows (n, img) goes to slot (head + size + r) mod capacity, where
// (head, size) are the step's snapshot; rows that a later row of the same push overwrites are skipped (n may
// exceed capacity). Then the live ring position is set.
[[nodiscard]] cudaError_t push(float* buffer, const float* rows, DeviceState* st, int n, int64_t img, int capacity,
                               cudaStream_t s);

// Small writes to the device state (one thread each), so they can sit inside captured graphs.
[[nodiscard]] cudaError_t set_cursor(DeviceState* st, int64_t batch, cudaStream_t s);
[[nodiscard]] cudaError_t set_sample_stream(DeviceState* st, uint64_t seed, cudaStream_t s);
[[nodiscard]] cudaError_t add_u64(uint64_t* p, uint64_t v, cudaStream_t s);

}  // namespace ebm::cuda
