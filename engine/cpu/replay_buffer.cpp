#include "engine/cpu/replay_buffer.hpp"

#include <algorithm>
#include <cstring>

#include "engine/error.hpp"

namespace ebm {

const float* ReplayBuffer::at(int i) const {
  return data_.data() + int64_t((head_ + i) % capacity_) * image_size_;
}

void ReplayBuffer::push(const float* images, int n) {
  for (int i = 0; i < n; ++i) {
    int slot;
    if (size_ < capacity_) {
      slot = (head_ + size_) % capacity_;
      ++size_;
    } else {  // full: overwrite the oldest, which makes the next one the oldest
      slot = head_;
      head_ = (head_ + 1) % capacity_;
    }
    std::memcpy(data_.data() + int64_t(slot) * image_size_, images + int64_t(i) * image_size_,
                sizeof(float) * image_size_);
  }
}

void ReplayBuffer::fill_noise(int n, Rng& rng) {
  std::vector<float> img(size_t(n) * image_size_);
  rng.uniform(img.data(), int64_t(img.size()), -1.0f, 1.0f);
  push(img.data(), n);
}

int ReplayBuffer::draw(int batch, double reinit_prob, Rng& choice, Rng& noise, float* out) {
  EBM_CHECK(size_ > 0, "replay buffer is empty");
  int n_new = 0;  // Binomial(batch, p) as `batch` Bernoulli trials: exact, and cheap at these sizes
  for (int i = 0; i < batch; ++i) n_new += choice.unit() < reinit_prob;
  noise.uniform(out, int64_t(n_new) * image_size_, -1.0f, 1.0f);
  for (int i = n_new; i < batch; ++i)
    std::memcpy(out + int64_t(i) * image_size_, at(int(choice.below(uint64_t(size_)))), sizeof(float) * image_size_);
  return n_new;
}

Tensor ReplayBuffer::snapshot(const std::vector<int64_t>& image_shape) const {
  std::vector<int64_t> shape{size_};
  shape.insert(shape.end(), image_shape.begin(), image_shape.end());
  Tensor t(shape);
  for (int i = 0; i < size_; ++i) std::memcpy(t.ptr() + int64_t(i) * image_size_, at(i), sizeof(float) * image_size_);
  return t;
}

void ReplayBuffer::restore(const Tensor& images) {
  const int64_t n = images.numel() / image_size_;
  if (n > capacity_ || n * image_size_ != images.numel())
    user_fail("replay buffer in checkpoint holds ", shape_str(images.shape), ", which does not fit capacity ",
              capacity_, " of ", image_size_, "-pixel images");
  head_ = 0;
  size_ = 0;
  push(images.ptr(), int(n));
}

}  // namespace ebm
