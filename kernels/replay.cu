// Kernels of replay.cuh.
#include "kernels/replay.cuh"

#include "kernels/augment.hpp"
#include "kernels/ebm_math.hpp"
#include "kernels/launch.cuh"
#include "kernels/random.cuh"
#include "kernels/reduce.cuh"
#include "kernels/rng_streams.hpp"

namespace ebm::cuda {
namespace {

__global__ void begin_step_kernel(DeviceState* st, int32_t* __restrict__ slots, StepDraw d) {
  __shared__ int s_new;
  const int batch = d.batch;
  const uint64_t seed = st->seed, off_choice = st->off_choice;
  const uint64_t choice = stream_id(RngStream::kBufferChoice);
  int count = 0;
  for (int i = threadIdx.x; i < batch; i += blockDim.x) count += philox_unit(seed, choice, off_choice + i) < d.reinit_prob;
  count = block_reduce(count, SumOp{}, 0);
  if (threadIdx.x == 0) s_new = count;
  __syncthreads();
  const int n_new = s_new;
  const int32_t head = st->head, size = st->size;
  for (int i = n_new + threadIdx.x; i < batch; i += blockDim.x) {
    const uint64_t k = philox_below(seed, choice, off_choice + batch + (i - n_new), static_cast<uint64_t>(size));
    slots[i] = static_cast<int32_t>((head + k) % d.capacity);
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
    st->off_real += philox_blocks(uint64_t(d.nr) * d.img);
    st->off_choice += uint64_t(2 * batch - n_new);
    st->off_fresh += philox_blocks(uint64_t(n_new) * d.img);
    if (d.langevin_noise) st->off_langevin += uint64_t(d.langevin_steps) * philox_blocks(uint64_t(batch) * d.img);
    st->cursor += 1;
  }
}

template <class I>
__global__ void gather_real_kernel(const float* __restrict__ train, const int32_t* __restrict__ perm,
                                   const DeviceState* st, float* __restrict__ real, I len, I img, int bs, float sigma,
                                   RealShift shift) {
  const StepSnapshot& s = st->step;
  const uint64_t seed = s.seed, off = s.off_real;
  const int64_t first = s.batch * bs, t = st->adam_t;  // data.shift's draw: the steps taken before this one
  const I blocks = (len + 3) / 4;
  const int hw = shift.h * shift.w;
  for (I b = blockIdx.x * I(blockDim.x) + threadIdx.x; b < blocks; b += I(gridDim.x) * blockDim.x) {
    const float4 nz = philox_normal4(seed, stream_id(RngStream::kRealNoise), off + b);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const I e = 4 * b + lane;
      if (e >= len) break;
      const I i = e / img, j = e - i * img;
      const float* row = train + int64_t(perm[first + i]) * img;
      float v = row[j];
      if (shift.k > 0) {  // the pixel's source in the shifted image (kernels/augment.hpp, as the CPU's shift_image)
        const Shift d = augment_shift(seed, t, shift.row0 + int64_t(i), shift.k);
        const int ch = int(j) / hw, p = int(j) - ch * hw;
        v = shifted_pixel(row, shift.h, shift.w, d.dy, d.dx, ch, p / shift.w, p - (p / shift.w) * shift.w);
      }
      real[e] = langevin_perturb(v, sigma, lane_of(nz, lane));
    }
  }
}

template <class I>
__global__ void draw_fake_kernel(const float* __restrict__ buffer, const int32_t* __restrict__ slots,
                                 const DeviceState* st, float* __restrict__ fake, I len, I img) {
  const StepSnapshot& s = st->step;
  const uint64_t seed = s.seed, off = s.off_fresh;
  const I fresh_len = I(s.n_new) * img;
  const I blocks = (len + 3) / 4;
  for (I b = blockIdx.x * I(blockDim.x) + threadIdx.x; b < blocks; b += I(gridDim.x) * blockDim.x) {
    float4 u = make_float4(0.f, 0.f, 0.f, 0.f);
    if (4 * b < fresh_len) u = philox_uniform4(seed, stream_id(RngStream::kBufferInit), off + b);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const I e = 4 * b + lane;
      if (e >= len) break;
      const I i = e / img, j = e - i * img;
      fake[e] = e < fresh_len ? -1.0f + 2.0f * lane_of(u, lane) : buffer[int64_t(slots[i]) * img + j];
    }
  }
}

template <class I>
__global__ void push_kernel(float* __restrict__ buffer, const float* __restrict__ rows, DeviceState* st, int n,
                            I len, I img, int capacity) {
  const int32_t head = st->step.head, size = st->step.size;
  for (I e = blockIdx.x * I(blockDim.x) + threadIdx.x; e < len; e += I(gridDim.x) * blockDim.x) {
    const I r = e / img, j = e - r * img;
    if (int64_t(r) < int64_t(n) - capacity) continue;  // a later row of this push lands in the same slot
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

}  // namespace

cudaError_t begin_step(DeviceState* st, int32_t* slots, const StepDraw& d, cudaStream_t s) {
  begin_step_kernel<<<1, 256, 0, s>>>(st, slots, d);
  return cudaGetLastError();
}

cudaError_t gather_real(const float* train, const int32_t* perm, const DeviceState* st, float* real, int nr,
                        int64_t img, int bs, float sigma, const RealShift& shift, cudaStream_t s) {
  const int64_t len = int64_t(nr) * img;
  if (len == 0) return cudaSuccess;
  return with_index_type(len + 3, [&](auto zero) {
    using I = decltype(zero);
    gather_real_kernel<I><<<grid_for((len + 3) / 4, 256), 256, 0, s>>>(train, perm, st, real, I(len), I(img), bs,
                                                                       sigma, shift);
  });
}

cudaError_t draw_fake(const float* buffer, const int32_t* slots, const DeviceState* st, float* fake, int nf,
                      int64_t img, cudaStream_t s) {
  const int64_t len = int64_t(nf) * img;
  if (len == 0) return cudaSuccess;
  return with_index_type(len + 3, [&](auto zero) {
    using I = decltype(zero);
    draw_fake_kernel<I><<<grid_for((len + 3) / 4, 256), 256, 0, s>>>(buffer, slots, st, fake, I(len), I(img));
  });
}

cudaError_t push(float* buffer, const float* rows, DeviceState* st, int n, int64_t img, int capacity, cudaStream_t s) {
  const int64_t len = int64_t(n) * img;
  return with_index_type(len, [&](auto zero) {
    using I = decltype(zero);
    push_kernel<I><<<grid_for(len, 256), 256, 0, s>>>(buffer, rows, st, n, I(len), I(img), capacity);
  });
}

cudaError_t set_cursor(DeviceState* st, int64_t batch, cudaStream_t s) {
  set_cursor_kernel<<<1, 1, 0, s>>>(st, batch);
  return cudaGetLastError();
}

cudaError_t set_sample_stream(DeviceState* st, uint64_t seed, cudaStream_t s) {
  set_sample_stream_kernel<<<1, 1, 0, s>>>(st, seed);
  return cudaGetLastError();
}

cudaError_t add_u64(uint64_t* p, uint64_t v, cudaStream_t s) {
  add_u64_kernel<<<1, 1, 0, s>>>(p, v);
  return cudaGetLastError();
}

}  // namespace ebm::cuda
