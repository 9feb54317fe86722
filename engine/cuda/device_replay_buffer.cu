#include "engine/cuda/device_replay_buffer.cuh"

#include <algorithm>

#include "engine/cuda/cuda_check.cuh"
#include "engine/error.hpp"
#include "kernels/fill.cuh"
#include "kernels/replay.cuh"
#include "kernels/rng_streams.hpp"

namespace ebm::cuda {

DeviceReplayBuffer::DeviceReplayBuffer(int capacity, int64_t image_size, DeviceState* st, cudaStream_t stream)
    : capacity_(capacity), image_size_(image_size), st_(st), stream_(stream) {
  EBM_CHECK(capacity > 0, "replay buffer capacity must be > 0");
  data_.resize(size_t(capacity) * size_t(image_size));
}

void DeviceReplayBuffer::fill_noise(int n, uint64_t seed, int64_t first) {
  EBM_CHECK(n >= 0 && n <= capacity_, "initial replay buffer larger than its capacity");
  EBM_CHECK(first * image_size_ % 4 == 0, "a rank's initial rows must start on a Philox block");
  EBM_CUDA_CHECK(uniform_fill(data_.get(), int64_t(n) * image_size_, seed, stream_id(RngStream::kBufferInit),
                              uint64_t(first * image_size_ / 4), -1.0f, 1.0f, stream_));
}

void DeviceReplayBuffer::draw(const int32_t* slots, float* out, int batch) {
  EBM_CUDA_CHECK(draw_fake(data_.get(), slots, st_, out, batch, image_size_, stream_));
}

void DeviceReplayBuffer::push(const float* images, int n) {
  EBM_CUDA_CHECK(cuda::push(data_.get(), images, st_, n, image_size_, capacity_, stream_));
}

Tensor DeviceReplayBuffer::snapshot(const DeviceState& now, const std::vector<int64_t>& image_shape,
                                    const std::function<void()>& wait) {
  std::vector<int64_t> shape{int64_t(now.size)};
  shape.insert(shape.end(), image_shape.begin(), image_shape.end());
  Tensor t(shape);
  const int64_t im = image_size_;
  const int64_t first = std::min<int64_t>(now.size, capacity_ - now.head);  // oldest first: [head, cap) then [0, ...)
  if (first > 0)
    EBM_CUDA_CHECK(cudaMemcpyAsync(t.ptr(), data_.get() + now.head * im, sizeof(float) * first * im,
                                   cudaMemcpyDeviceToHost, stream_));
  if (now.size > first)
    EBM_CUDA_CHECK(cudaMemcpyAsync(t.ptr() + first * im, data_.get(), sizeof(float) * (now.size - first) * im,
                                   cudaMemcpyDeviceToHost, stream_));
  wait();
  return t;
}

void DeviceReplayBuffer::restore(const Tensor& images, DeviceState& now) {
  const int64_t n = images.numel() / image_size_;
  if (n > capacity_ || n * image_size_ != images.numel())
    user_fail("replay buffer in checkpoint holds ", shape_str(images.shape), ", which does not fit capacity ",
              capacity_, " of ", image_size_, "-pixel images");
  if (n > 0)
    EBM_CUDA_CHECK(cudaMemcpyAsync(data_.get(), images.ptr(), sizeof(float) * size_t(n * image_size_),
                                   cudaMemcpyHostToDevice, stream_));
  now.head = 0;  // oldest first: slots 0..n−1, as ReplayBuffer::restore
  now.size = int32_t(n);
}

}  // namespace ebm::cuda
