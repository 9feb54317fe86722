// Hand-computed cases for the per-element math shared by both backends, and the CD loss.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/loss.hpp"
#include "kernels/ebm_math.hpp"

using namespace ebm;

TEST(EngineMath, SwishAndItsDerivative) {
  EXPECT_FLOAT_EQ(swishf(0.0f), 0.0f);
  const double z = 1.5, s = 1.0 / (1.0 + std::exp(-z));
  EXPECT_NEAR(swishf(1.5f), z * s, 1e-6);
  EXPECT_NEAR(swish_gradf(1.5f), s * (1 + z * (1 - s)), 1e-6);
  EXPECT_NEAR(swish_gradf(0.0f), 0.5, 1e-7);  // σ(0)·(1 + 0)
  const float h = 1e-3f;                      // derivative against a central difference
  EXPECT_NEAR(swish_gradf(-0.7f), (swishf(-0.7f + h) - swishf(-0.7f - h)) / (2 * h), 1e-4);
}

TEST(EngineMath, LangevinUpdateBothClipsActive) {
  // perturb: 0.99 + 0.5·1 = 1.49 → clipped to 1
  EXPECT_FLOAT_EQ(langevin_perturb(0.99f, 0.5f, 1.0f), 1.0f);
  EXPECT_FLOAT_EQ(langevin_perturb(-0.2f, 0.1f, -1.0f), -0.3f);
  // descend: g = −df/dx = 0.5 → clipped to 0.03; x = −0.3 − 10·0.03 = −0.6
  EXPECT_FLOAT_EQ(langevin_descend(-0.3f, -0.5f, 10.0f, 0.03f), -0.6f);
  // g = −0.1 → −0.03; x = 0.9 + 0.3 = 1.2 → clipped to 1
  EXPECT_FLOAT_EQ(langevin_descend(0.9f, 0.1f, 10.0f, 0.03f), 1.0f);
  // no clip: g = −0.01; x = 0.2 + 0.1 = 0.3
  EXPECT_NEAR(langevin_descend(0.2f, 0.01f, 10.0f, 0.03f), 0.3f, 1e-7);
  // lower image clip: g = 0.03 after clip, x = −0.95 − 0.3 → −1
  EXPECT_FLOAT_EQ(langevin_descend(-0.95f, -2.0f, 10.0f, 0.03f), -1.0f);
}

TEST(EngineMath, AdamOneStepByHand) {
  // Keras: lr_t = lr·√(1−β2)/(1−β1) at t=1; m = 0.1·g; v = 0.001·g²; p −= lr_t·m/(√v + ε)
  float p = 1.0f, m = 0.0f, v = 0.0f;
  const AdamHyper h = adam_hyper(1e-4, 0.9, 0.999, 1e-7, 1);
  const double lr_t = 1e-4 * std::sqrt(1 - 0.999) / (1 - 0.9);
  EXPECT_NEAR(h.lr_t, lr_t, 1e-7 * lr_t);  // lr_t is rounded to float once
  adam_update(p, m, v, 0.5f, h);
  // float arithmetic: a few ulps (2^-24 relative) of each value
  EXPECT_NEAR(m, 0.05, 4e-7 * 0.05);
  EXPECT_NEAR(v, 0.00025, 2e-5 * 0.00025);  // 1 − β2 = 0.001 in float carries ~1e-5 relative error
  EXPECT_NEAR(p, 1.0 - lr_t * 0.05 / (std::sqrt(0.00025) + 1e-7), 1e-7);
  // second step, t=2, g=−1
  const AdamHyper h2 = adam_hyper(1e-4, 0.9, 0.999, 1e-7, 2);
  const double m2 = 0.9 * 0.05 + 0.1 * -1.0, v2 = 0.999 * 0.00025 + 0.001 * 1.0;
  const double p2 = p - 1e-4 * std::sqrt(1 - 0.999 * 0.999) / (1 - 0.81) * m2 / (std::sqrt(v2) + 1e-7);
  adam_update(p, m, v, -1.0f, h2);
  EXPECT_NEAR(p, p2, 1e-7);
}

TEST(EngineMath, CdLossHandComputed) {
  const float fr[2] = {0.5f, -0.25f};       // mean 0.125, mean sq (0.25 + 0.0625)/2 = 0.15625
  const float ff[3] = {0.1f, 0.2f, -0.6f};  // mean −0.1,  mean sq (0.01 + 0.04 + 0.36)/3 = 0.136667
  float dr[2], dfk[3];
  const StepMetrics m = cd_loss(fr, 2, ff, 3, 0.1f, dr, dfk);
  EXPECT_NEAR(m.real, 0.125, 1e-7);
  EXPECT_NEAR(m.fake, -0.1, 1e-7);
  EXPECT_NEAR(m.cdiv, -0.225, 1e-7);
  EXPECT_NEAR(m.reg, 0.1 * (0.15625 + 0.41 / 3), 1e-7);
  EXPECT_NEAR(m.loss, -0.225 + 0.1 * (0.15625 + 0.41 / 3), 1e-7);
  EXPECT_NEAR(m.max_abs_f, 0.6, 1e-7);
  EXPECT_NEAR(dr[0], (-1 + 0.2 * 0.5) / 2, 1e-7);    // ∂/∂f_r of −mean f_r + α·mean f_r²
  EXPECT_NEAR(dr[1], (-1 + 0.2 * -0.25) / 2, 1e-7);
  EXPECT_NEAR(dfk[2], (1 + 0.2 * -0.6) / 3, 1e-7);   // ∂/∂f_f of mean f_f + α·mean f_f²
  const float bad[1] = {NAN};
  EXPECT_TRUE(std::isnan(cd_loss(fr, 2, bad, 1, 0.1f, dr, dfk).max_abs_f));
}

#include "engine/cpu/fast_math.hpp"

TEST(EngineMath, VectorisedBiasSwishMatchesLibm) {
  // 1000 values over [-100, 100] (both clamps, the polynomial's whole range) as 50 rows of 20
  // channels: one 16-wide vector and a 4-lane tail per row.
  std::vector<float> z(1000), s(1000), a(1000), bias(20);
  for (int i = 0; i < 1000; ++i) z[i] = -100.0f + 0.2f * float(i) + 0.013f;
  for (int c = 0; c < 20; ++c) bias[c] = 0.01f * float(c) - 0.05f;
  const std::vector<float> z0 = z;
  bias_swish(z.data(), s.data(), a.data(), 50, 20, bias.data());
  for (int i = 0; i < 1000; ++i) {
    const float b = bias[i % 20];
    const double zz = double(z0[i] + b), sig = 1.0 / (1.0 + std::exp(-zz));
    ASSERT_FLOAT_EQ(z[i], z0[i] + b);
    // a few ulps: the polynomial is within ~1 ulp of expf, the division adds one more rounding
    ASSERT_NEAR(s[i], sig, 4e-7 * sig + 1e-38) << zz;
    ASSERT_NEAR(a[i], zz * sig, 4e-7 * std::fabs(zz * sig) + 1e-30) << zz;
  }
}

TEST(EngineMath, ExpvInstructionFormsGiveTheGenericBits) {
  // expv's clamp, floor and 2^n in this build's instructions (AVX-512: vmaxps/vminps, vrndscaleps, vscalefps; AVX2:
  // vmaxps/vminps, vroundps) against their generic vector forms, bit for bit, on every 1021st float bit pattern
  // (4.2 million: every exponent, both signs, subnormals, ±∞ and NaNs with their payloads) and on the values at and
  // around the clamps and the floor's integer steps. σ = 1/(1 + exp(−z)) is compared too. Where both are the generic
  // code (baseline, aarch64) the test still runs and must agree.
  using namespace fast_math_detail;
  std::vector<uint32_t> bits;
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 1021) bits.push_back(uint32_t(u));
  for (const float edge : {-87.3f, 88.3f, 0.0f, -0.0f, 0.5f, -0.5f, 1.0f, -1.0f, 0.34657359f, -0.34657359f,
                           87.33654f, -87.33654f, 88.72284f, -103.97208f, INFINITY, -INFINITY, NAN, -NAN}) {
    uint32_t e;
    std::memcpy(&e, &edge, 4);
    for (uint32_t d = 0; d < 64; ++d) bits.push_back(e + d), bits.push_back(e - d);
  }
  for (int k = -130; k <= 130; ++k) {  // x where x·log2(e) + 0.5 is an integer: the floor's edges
    const float x = (float(k) - 0.5f) * 0.69314718f;
    uint32_t e;
    std::memcpy(&e, &x, 4);
    for (uint32_t d = 0; d < 8; ++d) bits.push_back(e + d), bits.push_back(e - d);
  }
  while (bits.size() % kNF) bits.push_back(0);
  int64_t differ = 0;
  for (size_t i = 0; i < bits.size(); i += kNF) {
    fv x;
    std::memcpy(&x, bits.data() + i, sizeof x);
    const fv fast = expv(x), generic = expv<true>(x);
    const fv s_fast = 1.0f / (1.0f + expv(-x)), s_generic = 1.0f / (1.0f + expv<true>(-x));
    if (std::memcmp(&fast, &generic, sizeof x) != 0 || std::memcmp(&s_fast, &s_generic, sizeof x) != 0) {
      if (differ++ < 5) ADD_FAILURE() << "differs in the vector of bit patterns from 0x" << std::hex << bits[i];
    }
  }
  EXPECT_EQ(differ, 0) << "of " << bits.size() / kNF << " vectors";
  // and the function's values: exp(1), exp(−1), the clamps (exp(88.3) finite, exp(−87.3) normal)
  const fv x = fv{} + 1.0f;
  EXPECT_FLOAT_EQ(expv(x)[0], 2.7182818f);
  EXPECT_FLOAT_EQ(expv(-x)[0], 0.36787944f);
  EXPECT_TRUE(std::isfinite(expv(fv{} + 1000.0f)[0]));
  EXPECT_GE(expv(fv{} - 1000.0f)[0], 1.17549435e-38f);
}

TEST(EngineMath, VectorisedNormalsMatchThePhiloxStream) {
  // philox_normal64 (vector log and sincos) against philox_normal_at (libm): the same stream to a few ulp,
  // over 64,000 draws (the Box–Muller tails included).
  float n64[64];
  double worst = 0, sum = 0, sum2 = 0;
  for (uint64_t g = 0; g < 1000; ++g) {
    philox_normal64(9, 5, 16 * g, n64);
    for (int i = 0; i < 64; ++i) {
      const float ref = philox_normal_at(9, 5, 0, 64 * g + uint64_t(i));
      worst = std::max(worst, std::fabs(double(n64[i]) - ref) / (1.0 + std::fabs(ref)));
      sum += n64[i];
      sum2 += double(n64[i]) * n64[i];
    }
  }
  EXPECT_LT(worst, 2e-6);
  EXPECT_NEAR(sum / 64000, 0.0, 0.02);   // sd of the mean 0.004
  EXPECT_NEAR(sum2 / 64000, 1.0, 0.03);  // sd of the variance ~0.0056
}
