// Philox4x32-10 known-answer vectors (Random123's kat_vectors) and the stream statistics we rely on.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/rng.hpp"
#include "kernels/philox.hpp"

using namespace ebm;

TEST(Philox, KnownAnswerZero) {
  const Philox4 r = philox4x32_10(0, 0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
}

TEST(Philox, KnownAnswerOnes) {
  const Philox4 r = philox4x32_10(~0ull, ~0ull, ~0ull);
  EXPECT_EQ(r.v[0], 0x408f276du);
  EXPECT_EQ(r.v[1], 0x41c83b0eu);
  EXPECT_EQ(r.v[2], 0xa20bc7c6u);
  EXPECT_EQ(r.v[3], 0x6d5451fdu);
}

TEST(Philox, KnownAnswerPi) {
  // counter = 243f6a88 85a308d3 13198a2e 03707344, key = a4093822 299f31d0
  const Philox4 r = philox4x32_10(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull);
  EXPECT_EQ(r.v[0], 0xd16cfe09u);
  EXPECT_EQ(r.v[1], 0x94fdccebu);
  EXPECT_EQ(r.v[2], 0x5001e420u);
  EXPECT_EQ(r.v[3], 0x24126ea1u);
}

TEST(Rng, NormalMomentsAndOffset) {
  Rng rng(7, RngStream::kLangevin);
  std::vector<float> x(200000);
  rng.normal(x.data(), static_cast<int64_t>(x.size()), 1.0f, 2.0f);
  EXPECT_EQ(rng.offset, 50000u);
  double m = 0, v = 0;
  for (float f : x) m += f;
  m /= x.size();
  for (float f : x) v += (f - m) * (f - m);
  v /= x.size();
  // 200k draws: standard error of the mean is 2/sqrt(2e5) = 0.0045; of the variance ~0.013.
  EXPECT_NEAR(m, 1.0, 0.02);
  EXPECT_NEAR(v, 4.0, 0.06);
}

TEST(Rng, SameStateSameNumbersDifferentStreamsDiffer) {
  Rng a(3, RngStream::kShuffle), b(3, RngStream::kShuffle), c(3, RngStream::kLangevin);
  std::vector<float> xa(10), xb(10), xc(10);
  a.uniform(xa.data(), 10, -1, 1);
  b.uniform(xb.data(), 10, -1, 1);
  c.uniform(xc.data(), 10, -1, 1);
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xc);
  for (float f : xa) {
    EXPECT_GE(f, -1.0f);
    EXPECT_LT(f, 1.0f);
  }
}

TEST(Rng, BelowIsInRangeAndCoversIt) {
  Rng r(1, RngStream::kBufferChoice);
  std::vector<int> seen(5, 0);
  for (int i = 0; i < 1000; ++i) seen[r.below(5)]++;
  for (int s : seen) EXPECT_GT(s, 150);  // expected 200 each; 150 is > 4 sigma below
}
