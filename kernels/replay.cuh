// A training step's data movement, all on the device so a CUDA graph can replay it: the step's random
// draws (Binomial count of fresh rows, buffer indices), the real batch gathered from the resident training
// set with its noise, the fake batch from the replay buffer, and the FIFO write-back. Each kernel consumes
// the Philox streams exactly as CpuBackend::train_step and ReplayBuffer do, so both backends draw the same
// numbers from the same state. Included by cuda_backend.cu only.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/rng.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/device_state.cuh"
#include "kernels/random.cuh"
#include "kernels/reduce.cuh"

namespace ebm::cuda {

constexpr uint64_t stream_id(RngStream s) { return static_cast<uint64_t>(s); }

// One block. Snapshots the live counters into st->step for the rest of the step, draws
//   n_new ~ Binomial(batch, p) as `batch` Bernoulli trials (choice blocks off_choice + i), and for the held
//   rows i ≥ n_new a buffer slot uniform over the images held (choice blocks off_choice + batch + i − n_new),
// then advances the live counters by what this step consumes: nr·img real normals, 2·batch − n_new choice
// blocks, n_new·img fresh uniforms, steps × batch·img Langevin normals (when the sampler is noisy), one batch.
__global__ void begin_step_kernel(DeviceState* st, int32_t* __restrict__ slots, int batch, double reinit_prob, int nr,
                                  int64_t img, int langevin_steps, bool langevin_noise, int capacity) {
  __shared__ int s_new;
  const uint64_t seed = st->seed, off_choice = st->off_choice;
  const uint64_t choice = stream_id(RngStream::kBufferChoice);
  int count = 0;
  for (int i = threadIdx.x; i < batch; i += blockDim.x) count += philox_unit(seed, choice, off_choice + i) < reinit_prob;
  count = block_reduce(count, SumOp{}, 0);
  if (threadIdx.x == 0) s_new = count;
  __syncthreads();
  const int n_new = s_new;
  const int32_t head = st->head, size = st->size;
  for (int i = n_new + threadIdx.x; i < batch; i += blockDim.x) {
    const uint64_t k = philox_below(seed, choice, off_choice + batch + (i - n_new), static_cast<uint64_t>(size));
    slots[i] = static_cast<int32_t>((head + k) % capacity);
  }
  __syncthreads();  // every thread has read the live counters before thread 0 rewrites them
  if (threadIdx.x == 0) {
    StepSnapshot& s = st->step;
    s.seed = seed;
    s.off_real = st->off_real;
    s.off_choice = off_choice;
    s.off_fresh = st->off_fresh;
    s.off_langevin = st->off_langevin;
    s.batch = st->cursor;
    s.head = head;
    s.size = size;
    s.n_new = n_new;
    st->off_real += philox_blocks(uint64_t(nr) * img);
    st->off_choice += uint64_t(2 * batch - n_new);
    st->off_fresh += philox_blocks(uint64_t(n_new) * img);
    if (langevin_noise) st->off_langevin += uint64_t(langevin_steps) * philox_blocks(uint64_t(batch) * img);
    st->cursor += 1;
  }
}

// real (nr, img) ← clip(train[perm[batch·bs + i]] + σ·N(0,1), −1, 1), normals from the real-noise stream.
__global__ void gather_real_kernel(const float* __restrict__ train, const int32_t* __restrict__ perm,
                                   const DeviceState* st, float* __restrict__ real, int nr, int64_t img, int bs,
                                   float sigma) {
  const StepSnapshot& s = st->step;
  const uint64_t seed = s.seed, off = s.off_real;
  const int64_t first = s.batch * bs, len = int64_t(nr) * img, blocks = (len + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    const float4 nz = philox_normal4(seed, stream_id(RngStream::kRealNoise), off + b);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t e = 4 * b + lane;
      if (e >= len) break;
      const int64_t i = e / img, j = e % img;
      real[e] = langevin_perturb(train[int64_t(perm[first + i]) * img + j], sigma, lane_of(nz, lane));
    }
  }
}

// fake (nf, img): rows [0, n_new) fresh uniform noise in [−1, 1) from the fresh stream (ReplayBuffer::draw
// puts them first), rows [n_new, nf) copies of the buffer slots begin_step_kernel drew.
__global__ void draw_fake_kernel(const float* __restrict__ buffer, const int32_t* __restrict__ slots,
                                 const DeviceState* st, float* __restrict__ fake, int nf, int64_t img) {
  const StepSnapshot& s = st->step;
  const uint64_t seed = s.seed, off = s.off_fresh;
  const int n_new = s.n_new;
  const int64_t len = int64_t(nf) * img, blocks = (len + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    const bool any_fresh = 4 * b < int64_t(n_new) * img;
    float4 u = make_float4(0.f, 0.f, 0.f, 0.f);
    if (any_fresh) u = philox_uniform4(seed, stream_id(RngStream::kBufferInit), off + b);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t e = 4 * b + lane;
      if (e >= len) break;
      const int64_t i = e / img, j = e % img;
      fake[e] = i < n_new ? -1.0f + 2.0f * lane_of(u, lane) : buffer[int64_t(slots[i]) * img + j];
    }
  }
}

// The FIFO push of ReplayBuffer::push in closed form: row r goes to slot (head + size + r) mod capacity, where
// (head, size) are the step's snapshot; rows that a later row of the same push overwrites are skipped. One
// thread then sets the live ring position (no other thread of this launch reads it).
__global__ void push_kernel(float* __restrict__ buffer, const float* __restrict__ rows, DeviceState* st, int n,
                            int64_t img, int capacity) {
  const int32_t head = st->step.head, size = st->step.size;
  const int64_t len = int64_t(n) * img;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < len; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / img, j = e % img;
    if (r < n - capacity) continue;
    const int64_t slot = (int64_t(head) + size + r) % capacity;
    buffer[slot * img + j] = rows[e];
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    const int64_t total = int64_t(size) + n, dropped = total > capacity ? total - capacity : 0;
    st->size = static_cast<int32_t>(total < capacity ? total : capacity);
    st->head = static_cast<int32_t>((head + dropped) % capacity);
  }
}

__global__ void set_cursor_kernel(DeviceState* st, int64_t batch) { st->cursor = batch; }

__global__ void set_sample_stream_kernel(DeviceState* st, uint64_t seed) {
  st->sample_seed = seed;
  st->sample_off = 0;
}

__global__ void add_u64_kernel(uint64_t* p, uint64_t v) { *p += v; }

}  // namespace ebm::cuda
