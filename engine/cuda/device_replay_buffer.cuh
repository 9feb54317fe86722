// The replay buffer on the device, beside ReplayBuffer (engine/cpu/replay_buffer.hpp) under the same method
// names: a ring of `capacity` images in device memory whose position (head, size) lives in DeviceState, so a
// captured training step draws and writes back with the ring's current position on every replay. The draw's
// random choices (fresh-row count, slots) are made by the step's begin_step kernel (kernels/replay.cuh).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/cuda/cuda_raii.cuh"
#include "engine/tensor.hpp"
#include "kernels/device_state.cuh"

namespace ebm::cuda {

class DeviceReplayBuffer {
 public:
  DeviceReplayBuffer(int capacity, int64_t image_size, DeviceState* st, cudaStream_t stream);

  // The initial images: n uniform-noise images in [−1, 1) from stream (seed, kBufferInit) starting at
  // element `first` (a rank's rows of the global draw) — the numbers ReplayBuffer::fill_noise draws on the
  // CPU. The caller sets the ring position (head 0, size n) in the device state.
  void fill_noise(int n, uint64_t seed, int64_t first);
  // out [batch, image] ← the step's fresh rows first, then the held rows at the slots begin_step drew.
  void draw(const int32_t* slots, float* out, int batch);
  // The newest images [n, image]; the oldest fall out past capacity (n may exceed it).
  void push(const float* images, int n);

  int capacity() const { return capacity_; }
  // Images held, oldest first, as a tensor of image_shape rows; `now` is the device state read at a sync,
  // `wait` the caller's stream synchronisation (the backend's: with NCCL's deadline in data-parallel runs).
  Tensor snapshot(const DeviceState& now, const std::vector<int64_t>& image_shape, const std::function<void()>& wait);
  // Replaces the contents with `images` [n, image] (n ≤ capacity), oldest first; sets now.head = 0,
  // now.size = n for the caller to write back.
  void restore(const Tensor& images, DeviceState& now);

 private:
  int capacity_;
  int64_t image_size_;
  DeviceState* st_;
  cudaStream_t stream_;
  DeviceBuffer<float> data_;  // (capacity, image): the ring
};

}  // namespace ebm::cuda
