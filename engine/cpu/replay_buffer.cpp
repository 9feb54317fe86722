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

void ClassReplayBuffer::check(const std::vector<int32_t>& classes, int64_t images, int capacity, int K,
                              const std::string& where) {
  if (int64_t(classes.size()) != images)
    user_fail(where, ": the per-class replay buffer holds ", images, " images but ", classes.size(), " classes",
              classes.empty() ? " (no 'buffer.classes': written without buffer.per_class)" : "");
  std::vector<int> count(size_t(K), 0);
  for (int32_t y : classes) {
    if (y < 0 || y >= K) user_fail(where, ": the per-class replay buffer holds class ", y, ", outside [0, ", K, ")");
    if (++count[size_t(y)] > ring_capacity(capacity, K, y))
      user_fail(where, ": class ", y, " holds more than its ring's ", ring_capacity(capacity, K, y), " images");
  }
  for (int k = 0; k < K; ++k)
    if (count[size_t(k)] == 0) user_fail(where, ": class ", k, " holds no image (every ring starts with one)");
}

ClassReplayBuffer::ClassReplayBuffer(int capacity, int classes, int64_t image_size) : image_size_(image_size) {
  if (classes < 2 || capacity < classes)
    user_fail("buffer.per_class: buffer.capacity (", capacity, ") must hold at least one image per class (",
              classes, " classes)");
  for (int k = 0; k < classes; ++k) rings_.emplace_back(ring_capacity(capacity, classes, k), image_size);
}

void ClassReplayBuffer::fill_noise(int n, Rng& rng) {
  if (n < classes())
    user_fail("buffer.per_class: buffer.initial (", n, ") must be at least one image per class (", classes(), ")");
  std::vector<float> img(size_t(n) * image_size_);
  rng.uniform(img.data(), int64_t(img.size()), -1.0f, 1.0f);
  for (int i = 0; i < n; ++i) rings_[size_t(i % classes())].push(img.data() + int64_t(i) * image_size_, 1);
}

int ClassReplayBuffer::draw(int batch, double reinit_prob, Rng& choice, Rng& noise, float* out, int32_t* classes) {
  int n_new = 0;
  for (int i = 0; i < batch; ++i) n_new += choice.unit() < reinit_prob;
  for (int i = 0; i < batch; ++i) classes[i] = int32_t(choice.below(uint64_t(rings_.size())));
  noise.uniform(out, int64_t(n_new) * image_size_, -1.0f, 1.0f);
  for (int i = n_new; i < batch; ++i) {
    const ReplayBuffer& ring = rings_[size_t(classes[i])];
    EBM_CHECK(ring.size() > 0, "per-class replay buffer: a class's ring is empty");
    std::memcpy(out + int64_t(i) * image_size_, ring.at(int(choice.below(uint64_t(ring.size())))),
                sizeof(float) * image_size_);
  }
  return n_new;
}

void ClassReplayBuffer::push(const float* images, const int32_t* classes, int n) {
  for (int i = 0; i < n; ++i) {
    EBM_CHECK(classes[i] >= 0 && classes[i] < this->classes(), "per-class replay buffer: class out of range");
    rings_[size_t(classes[i])].push(images + int64_t(i) * image_size_, 1);
  }
}

int ClassReplayBuffer::size() const {
  int n = 0;
  for (const ReplayBuffer& r : rings_) n += r.size();
  return n;
}

Tensor ClassReplayBuffer::snapshot(const std::vector<int64_t>& image_shape, std::vector<int32_t>& classes) const {
  std::vector<int64_t> shape{size()};
  shape.insert(shape.end(), image_shape.begin(), image_shape.end());
  Tensor t(shape);
  classes.clear();
  int64_t row = 0;
  for (size_t k = 0; k < rings_.size(); ++k)
    for (int i = 0; i < rings_[k].size(); ++i, ++row) {
      std::memcpy(t.ptr() + row * image_size_, rings_[k].at(i), sizeof(float) * image_size_);
      classes.push_back(int32_t(k));
    }
  return t;
}

void ClassReplayBuffer::restore(const Tensor& images, const std::vector<int32_t>& classes) {
  const int64_t n = images.numel() / image_size_;
  if (n * image_size_ != images.numel())
    user_fail("per-class replay buffer in checkpoint: ", shape_str(images.shape), " is not whole images");
  int capacity = 0;
  for (const ReplayBuffer& r : rings_) capacity += r.capacity();
  check(classes, n, capacity, this->classes(), "checkpoint");
  for (size_t k = 0; k < rings_.size(); ++k) rings_[k] = ReplayBuffer(rings_[k].capacity(), image_size_);
  for (int64_t i = 0; i < n; ++i) rings_[size_t(classes[size_t(i)])].push(images.ptr() + i * image_size_, 1);
}

std::vector<int32_t> ClassReplayBuffer::image_classes() const {
  std::vector<int32_t> classes;
  for (size_t k = 0; k < rings_.size(); ++k) classes.insert(classes.end(), size_t(rings_[k].size()), int32_t(k));
  return classes;
}

}  // namespace ebm
