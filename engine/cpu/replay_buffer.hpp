// The replay buffer of the seed's first `Buffer` class: FIFO of past Langevin samples.
// Each draw: n_new ~ Binomial(batch, reinit_prob) fresh uniform-noise images in [−1,1], the rest drawn
// uniformly with replacement from the images held; after refinement all are written back as newest.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/rng.hpp"
#include "engine/tensor.hpp"

namespace ebm {

class ReplayBuffer {
 public:
  ReplayBuffer(int capacity, int64_t image_size) : capacity_(capacity), image_size_(image_size),
      data_(size_t(capacity) * image_size) {}

  void fill_noise(int n, Rng& rng);                   // the initial images
  // out [batch, image] ← fresh noise rows first, then held ones. Returns n_new.
  int draw(int batch, double reinit_prob, Rng& choice, Rng& noise, float* out);
  void push(const float* images, int n);              // newest; the oldest fall out past capacity

  int size() const { return size_; }
  int capacity() const { return capacity_; }
  const float* at(int i) const;                       // i-th oldest
  Tensor snapshot(const std::vector<int64_t>& image_shape) const;  // oldest first
  void restore(const Tensor& images);

 private:
  int capacity_;
  int64_t image_size_;
  std::vector<float> data_;
  int head_ = 0;  // slot of the oldest image
  int size_ = 0;
};

}  // namespace ebm
