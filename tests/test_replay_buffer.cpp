// Replay buffer: FIFO order, capacity, the fresh-noise fraction and uniform draws of held images.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/cpu/replay_buffer.hpp"

using namespace ebm;

TEST(ReplayBuffer, FifoOrderAndCapacity) {
  ReplayBuffer b(10, 2);
  std::vector<float> img(30);
  for (int i = 0; i < 15; ++i) img[2 * i] = img[2 * i + 1] = float(i);  // image i is filled with i
  b.push(img.data(), 7);
  EXPECT_EQ(b.size(), 7);
  EXPECT_EQ(b.at(0)[0], 0.0f);
  b.push(img.data() + 14, 8);  // images 7..14: 15 pushed into 10 slots
  EXPECT_EQ(b.size(), 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(b.at(i)[1], float(5 + i)) << "oldest first";
  const Tensor t = b.snapshot({1, 1, 2});
  EXPECT_EQ(t.shape, (std::vector<int64_t>{10, 1, 1, 2}));
  EXPECT_EQ(t.data[0], 5.0f);
  ReplayBuffer c(10, 2);
  c.restore(t);
  EXPECT_EQ(c.size(), 10);
  EXPECT_EQ(c.at(9)[0], 14.0f);
  ReplayBuffer small(4, 2);
  EXPECT_THROW(small.restore(t), std::runtime_error);
}

TEST(ReplayBuffer, FreshFractionAndUniformDraws) {
  ReplayBuffer b(8, 1);
  std::vector<float> held{10, 11, 12, 13, 14, 15, 16, 17};
  b.push(held.data(), 8);
  Rng choice(5, RngStream::kBufferChoice), noise(5, RngStream::kBufferInit);
  const int draws = 400, batch = 128;
  std::vector<float> out(batch);
  int fresh = 0;
  std::vector<int> counts(8, 0);
  for (int d = 0; d < draws; ++d) {
    const int n_new = b.draw(batch, 0.05, choice, noise, out.data());
    fresh += n_new;
    for (int i = 0; i < batch; ++i) {
      if (i < n_new) {
        EXPECT_TRUE(out[i] >= -1.0f && out[i] < 1.0f) << "fresh rows are uniform noise in [-1,1]";
      } else {
        ASSERT_TRUE(out[i] >= 10 && out[i] <= 17);
        counts[int(out[i]) - 10]++;
      }
    }
  }
  // 51,200 Bernoulli(0.05) trials: sd of the fraction is √(.05·.95/51200) ≈ 0.00096; allow ~5 sd.
  EXPECT_NEAR(double(fresh) / (draws * batch), 0.05, 0.005);
  const double expected = double(draws * batch - fresh) / 8;  // ≈ 6080 each, sd ≈ 73
  for (int c : counts) EXPECT_NEAR(c, expected, 5 * std::sqrt(expected));
}

TEST(ReplayBuffer, ReinitProbabilityOneGivesOnlyNoise) {
  ReplayBuffer b(4, 3);
  std::vector<float> held(12, 5.0f);
  b.push(held.data(), 4);
  Rng choice(1, RngStream::kBufferChoice), noise(1, RngStream::kBufferInit);
  std::vector<float> out(30);
  EXPECT_EQ(b.draw(10, 1.0, choice, noise, out.data()), 10);
  for (float v : out) EXPECT_LE(std::fabs(v), 1.0f);
  EXPECT_EQ(b.draw(10, 0.0, choice, noise, out.data()), 0);
  for (float v : out) EXPECT_EQ(v, 5.0f);
}
