// The replay buffer of the seed's first `Buffer` class: FIFO of past Langevin samples.
// Each draw: n_new ~ Binomial(batch, reinit_prob) fresh uniform-noise images in [−1,1], the rest drawn
// uniformly with replacement from the images held; after refinement all are written back as newest.
#pragma once
#include <cstdint>
#include <string>
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

// buffer.per_class (JEM's class-conditional replay buffer, Grathwohl et al. 2020, their `class_cond_p_x_sample`): K
// rings, one per class, ring k of capacity C/K (the first C mod K one image more), each a ReplayBuffer. A row's
// class y is drawn uniformly; a held row comes from ring y and goes back to ring y after its chain ran on
// E(x, y) = −f_y(x). The initial images go to the rings in turn (image i to class i mod K).
class ClassReplayBuffer {
 public:
  // Ring k's capacity: capacity/K, the first capacity mod K rings one more.
  static int ring_capacity(int capacity, int classes, int k) {
    return capacity / classes + (k < capacity % classes ? 1 : 0);
  }
  // Whether `classes` ([n], one per image) can be restored into rings of `capacity` images over K classes: each class
  // in [0, K), no ring past its capacity, none empty. UserError naming `where` otherwise.
  static void check(const std::vector<int32_t>& classes, int64_t images, int capacity, int K, const std::string& where);

  ClassReplayBuffer(int capacity, int classes, int64_t image_size);

  void fill_noise(int n, Rng& rng);  // n >= classes: every ring starts with at least one image
  // out [batch, image] ← fresh noise rows first, then held ones; classes [batch] each row's class. The choice
  // stream gives the batch's Bernoulli trials (as ReplayBuffer::draw), then each row's class (row order), then
  // each held row's slot in its ring. Returns n_new.
  int draw(int batch, double reinit_prob, Rng& choice, Rng& noise, float* out, int32_t* classes);
  void push(const float* images, const int32_t* classes, int n);  // row i as the newest of ring classes[i]

  int size() const;  // images held, all rings
  int classes() const { return int(rings_.size()); }
  // Every ring's images, ring 0's oldest first, then ring 1's, ...; `classes` gets each image's class.
  Tensor snapshot(const std::vector<int64_t>& image_shape, std::vector<int32_t>& classes) const;
  std::vector<int32_t> image_classes() const;  // snapshot's classes, without the images
  // The inverse of snapshot: each image to the ring of its class, in order (UserError naming what does not fit).
  void restore(const Tensor& images, const std::vector<int32_t>& classes);

 private:
  int64_t image_size_;
  std::vector<ReplayBuffer> rings_;
};

}  // namespace ebm
