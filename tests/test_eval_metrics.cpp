// ebm_eval's statistics: Fréchet distance against closed forms (commuting covariances, a 2-D hand formula,
// the sqrtm-of-the-product route pytorch-fid takes) and on sampled Gaussians; Inception Score, the class
// histogram and the mean top probability on hand-made tables; the one-line errors on bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/error.hpp"
#include "host/eval/eigen_dense.hpp"  // defines: Eigen::MatrixXd, LLT, HouseholderQR
#include "host/eval/eval_metrics.hpp"
#include "tests/test_support.hpp"

using namespace ebm;

namespace {

using test::expect_user_error;

// Exact statistics of N(mu, cov), as gaussian_stats would give with infinitely many samples.
GaussianStats exact_stats(const Eigen::VectorXd& mu, const Eigen::MatrixXd& cov) {
  GaussianStats s;
  s.d = static_cast<int>(mu.size());
  s.n = 1000000;
  s.mean.assign(mu.data(), mu.data() + mu.size());
  for (int r = 0; r < s.d; ++r)
    for (int c = 0; c < s.d; ++c) s.cov.push_back(cov(r, c));
  return s;
}

// n draws of N(mu, cov) as float32 [n][d]: mu + L z with cov = L L^T (Cholesky) and z ~ N(0, I).
std::vector<float> sample_gaussian(const Eigen::VectorXd& mu, const Eigen::MatrixXd& cov, int64_t n, uint64_t seed) {
  const int d = static_cast<int>(mu.size());
  const Eigen::LLT<Eigen::MatrixXd> llt(cov);
  EXPECT_EQ(llt.info(), Eigen::Success) << "covariance not positive definite";
  const Eigen::MatrixXd chol = llt.matrixL();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<float> out(static_cast<size_t>(n) * d);
  Eigen::VectorXd z(d);
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) z[j] = normal(rng);
    const Eigen::VectorXd x = mu + chol * z;
    for (int j = 0; j < d; ++j) out[i * d + j] = static_cast<float>(x[j]);
  }
  return out;
}

// A random rotation [d][d]: the Q of a Gaussian matrix's QR.
// The principal square root of a (not necessarily symmetric) matrix with no eigenvalue on the closed negative real
// axis, by the Denman-Beavers iteration (Denman & Beavers 1976; Higham, "Functions of Matrices", 2008, eq. 6.15):
// Y <- (Y + Z^-1) / 2, Z <- (Z + Y^-1) / 2 from Y = A, Z = I, so Y -> A^(1/2) and Z -> A^(-1/2), quadratically.
// A route independent of frechet_distance's symmetric eigendecompositions, and much cheaper to compile than
// Eigen's unsupported MatrixFunctions (36 s of this file's 60 s build).
Eigen::MatrixXd sqrtm_denman_beavers(const Eigen::MatrixXd& a) {
  Eigen::MatrixXd y = a, z = Eigen::MatrixXd::Identity(a.rows(), a.cols());
  for (int k = 0; k < 100; ++k) {
    const Eigen::MatrixXd y_inv = y.partialPivLu().inverse(), z_inv = z.partialPivLu().inverse();
    const Eigen::MatrixXd y_next = 0.5 * (y + z_inv);
    z = 0.5 * (z + y_inv);
    const double change = (y_next - y).norm();
    y = y_next;
    if (change <= 1e-15 * y.norm()) break;
  }
  return y;
}

Eigen::MatrixXd random_rotation(int d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Eigen::MatrixXd g(d, d);
  for (int r = 0; r < d; ++r)
    for (int c = 0; c < d; ++c) g(r, c) = normal(rng);
  return Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ();
}

// Sampled FID, n = 20,000 per set: over 20 other seeds the estimate's deviation from the exact value had a
// standard deviation of 0.050 (the d=4 diagonal case, exact 4.07) and 0.026 (the d=5 rotated case, exact 2.69),
// worst 0.11, mean under 0.01 (mostly 2 Δμ·(ê1 - ê2) and the covariance traces). 0.25 is 5 of the larger
// spread, and far below what a wrong formula gives (a missing sqrt or factor 2 moves the value by more than 1).
constexpr double kSampledFidTolerance = 0.25;
constexpr int64_t kSamples = 20000;

}  // namespace

// --- Fréchet distance ---

TEST(EvalMetricsFid, SampledDiagonalMatchesClosedForm) {
  // Commuting (diagonal) covariances: tr sqrt(S1 S2) = Σ_k sqrt(λ1_k λ2_k), so
  // d² = |Δμ|² + Σ_k (sqrt(λ1_k) - sqrt(λ2_k))².
  const int d = 4;
  Eigen::VectorXd mu1(d), mu2(d), l1(d), l2(d);
  mu1 << 0.0, 1.0, -1.0, 0.5;
  mu2 << 0.5, 0.0, -1.0, 1.0;
  l1 << 1.0, 2.0, 3.0, 4.0;
  l2 << 4.0, 1.0, 0.5, 2.0;
  double closed = (mu1 - mu2).squaredNorm();
  for (int k = 0; k < d; ++k) closed += std::pow(std::sqrt(l1[k]) - std::sqrt(l2[k]), 2);

  const GaussianStats a = gaussian_stats(sample_gaussian(mu1, l1.asDiagonal().toDenseMatrix(), kSamples, 1), kSamples, d);
  const GaussianStats b = gaussian_stats(sample_gaussian(mu2, l2.asDiagonal().toDenseMatrix(), kSamples, 2), kSamples, d);
  EXPECT_EQ(a.n, kSamples);
  EXPECT_NEAR(frechet_distance(a, b), closed, kSampledFidTolerance);
  // The exact statistics give the closed form to rounding.
  EXPECT_NEAR(frechet_distance(exact_stats(mu1, l1.asDiagonal().toDenseMatrix()),
                               exact_stats(mu2, l2.asDiagonal().toDenseMatrix())),
              closed, 1e-12);
}

TEST(EvalMetricsFid, TwoByTwoMatchesHandFormula) {
  // For 2x2 M with eigenvalues λ1, λ2 >= 0, sqrt(M) = (M + sqrt(det M) I) / sqrt(tr M + 2 sqrt(det M)), so
  // tr sqrt(M) = sqrt(λ1) + sqrt(λ2) = sqrt(tr M + 2 sqrt(det M)) (square both sides), true for the
  // non-symmetric M = S1 S2 too. Non-commuting S1, S2:
  //   S1 = [[2,1],[1,2]], S2 = [[1,0],[0,4]], S1 S2 = [[2,4],[1,8]]: tr 10, det = det S1 · det S2 = 3·4 = 12;
  //   tr sqrt(S1 S2) = sqrt(10 + 2 sqrt(12)) = 4.1143897762;  tr S1 + tr S2 = 4 + 5 = 9;
  //   Δμ = (1, 2): |Δμ|² = 5;  d² = 5 + 9 - 2·4.1143897762 = 5.7712204477.
  Eigen::MatrixXd s1(2, 2), s2(2, 2);
  s1 << 2, 1, 1, 2;
  s2 << 1, 0, 0, 4;
  Eigen::VectorXd mu1(2), mu2(2);
  mu1 << 0, 0;
  mu2 << 1, 2;
  const double hand = 5 + 9 - 2 * std::sqrt(10 + 2 * std::sqrt(12.0));
  EXPECT_NEAR(hand, 5.7712204477, 1e-9);
  EXPECT_NEAR(frechet_distance(exact_stats(mu1, s1), exact_stats(mu2, s2)), hand, 1e-12);
  EXPECT_NEAR(frechet_distance(exact_stats(mu2, s2), exact_stats(mu1, s1)), hand, 1e-12);
}

TEST(EvalMetricsFid, NonCommutingMatchesSqrtmOfProduct) {
  // pytorch-fid's route: tr of the principal square root of the non-symmetric S1 S2 (scipy's sqrtm is Schur-based;
  // here Denman-Beavers, checked by squaring it back).
  // Well-conditioned random SPD covariances (G G^T / d + 0.1 I), d = 6.
  const int d = 6;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto random_spd = [&] {
    Eigen::MatrixXd g(d, d);
    for (int r = 0; r < d; ++r)
      for (int c = 0; c < d; ++c) g(r, c) = normal(rng);
    return Eigen::MatrixXd(g * g.transpose() / d + 0.1 * Eigen::MatrixXd::Identity(d, d));
  };
  const Eigen::MatrixXd s1 = random_spd(), s2 = random_spd();
  Eigen::VectorXd mu1(d), mu2(d);
  for (int j = 0; j < d; ++j) mu1[j] = normal(rng), mu2[j] = normal(rng);
  ASSERT_GT((s1 * s2 - s2 * s1).norm(), 0.1) << "the covariances should not commute";

  const Eigen::MatrixXd root = sqrtm_denman_beavers(s1 * s2);
  ASSERT_LT((root * root - s1 * s2).norm(), 1e-12 * (s1 * s2).norm()) << "not a square root";
  const double reference = (mu1 - mu2).squaredNorm() + s1.trace() + s2.trace() - 2 * root.trace();
  EXPECT_NEAR(frechet_distance(exact_stats(mu1, s1), exact_stats(mu2, s2)), reference, 1e-9 * reference);
}

TEST(EvalMetricsFid, SampledRotatedMatchesExact) {
  // S1 diagonal, S2 = R D R^T with a random rotation R: the two do not commute. The exact value comes from
  // the true parameters (that route is checked against independent ones above).
  const int d = 5;
  Eigen::VectorXd mu1(d), mu2(d), l1(d), l2(d);
  mu1 << 0.0, 0.0, 0.0, 0.0, 0.0;
  mu2 << 0.3, -0.4, 0.0, 0.5, 0.2;
  l1 << 0.5, 1.0, 1.5, 2.0, 3.0;
  l2 << 3.0, 0.25, 1.0, 2.5, 0.75;
  const Eigen::MatrixXd rot = random_rotation(d, 11);
  const Eigen::MatrixXd s1 = l1.asDiagonal();
  const Eigen::MatrixXd s2 = rot * l2.asDiagonal() * rot.transpose();
  ASSERT_GT((s1 * s2 - s2 * s1).norm(), 0.1) << "the covariances should not commute";
  const double exact = frechet_distance(exact_stats(mu1, s1), exact_stats(mu2, s2));
  ASSERT_GT(exact, 1.0);  // big enough that the tolerance below is a real test

  const GaussianStats a = gaussian_stats(sample_gaussian(mu1, s1, kSamples, 3), kSamples, d);
  const GaussianStats b = gaussian_stats(sample_gaussian(mu2, s2, kSamples, 4), kSamples, d);
  EXPECT_NEAR(frechet_distance(a, b), exact, kSampledFidTolerance);
}

TEST(EvalMetricsFid, IdenticalStatsGiveZeroAndMeanShiftGivesSquaredShift) {
  const int d = 3;
  Eigen::VectorXd mu(d), l(d);
  mu << 1.0, -2.0, 0.5;
  l << 0.5, 1.0, 2.0;
  const Eigen::MatrixXd rot = random_rotation(d, 5);
  const Eigen::MatrixXd cov = rot * l.asDiagonal() * rot.transpose();
  const GaussianStats a = gaussian_stats(sample_gaussian(mu, cov, 2000, 9), 2000, d);
  EXPECT_NEAR(frechet_distance(a, a), 0.0, 1e-9);

  // Same covariance, mean moved by Δ: the covariance terms cancel, d² = |Δ|² = 0.09 + 0.16 + 1 = 1.25.
  GaussianStats shifted = a;
  const double delta[d] = {0.3, -0.4, 1.0};
  for (int j = 0; j < d; ++j) shifted.mean[j] += delta[j];
  EXPECT_NEAR(frechet_distance(a, shifted), 1.25, 1e-9);
  EXPECT_NEAR(frechet_distance(shifted, a), 1.25, 1e-9);
}

TEST(EvalMetricsFid, GaussianStatsMatchesHandComputed) {
  // feats [3][2] = (1,2), (3,6), (5,4): mean (3, 4); centred (-2,-2), (0,2), (2,0);
  // cov = Σ outer / (n-1) = [[4+0+4, 4+0+0], [4+0+0, 4+4+0]] / 2 = [[4, 2], [2, 4]].
  const GaussianStats s = gaussian_stats({1, 2, 3, 6, 5, 4}, 3, 2);
  EXPECT_EQ(s.d, 2);
  EXPECT_EQ(s.n, 3);
  ASSERT_EQ(s.mean.size(), 2u);
  ASSERT_EQ(s.cov.size(), 4u);
  EXPECT_DOUBLE_EQ(s.mean[0], 3.0);
  EXPECT_DOUBLE_EQ(s.mean[1], 4.0);
  EXPECT_DOUBLE_EQ(s.cov[0], 4.0);
  EXPECT_DOUBLE_EQ(s.cov[1], 2.0);
  EXPECT_DOUBLE_EQ(s.cov[2], 2.0);
  EXPECT_DOUBLE_EQ(s.cov[3], 4.0);
}

// --- Inception Score ---

TEST(EvalMetricsIs, UniformRowsGiveOne) {
  const int K = 10;
  const std::vector<float> probs(5 * K, 1.0f / K);
  EXPECT_NEAR(inception_score(probs, 5, K), 1.0, 1e-6);
}

TEST(EvalMetricsIs, BalancedOneHotGivesK) {
  // Each row one-hot, each class twice: p(y) = 1/K, KL of each row = ln(1 / (1/K)) = ln K, IS = K.
  const int K = 4;
  const int64_t n = 8;
  std::vector<float> probs(n * K, 0.0f);
  for (int64_t i = 0; i < n; ++i) probs[i * K + i % K] = 1.0f;
  EXPECT_NEAR(inception_score(probs, n, K), 4.0, 1e-9);
}

TEST(EvalMetricsIs, SameOneHotGivesOne) {
  const int K = 3;
  const int64_t n = 6;
  std::vector<float> probs(n * K, 0.0f);
  for (int64_t i = 0; i < n; ++i) probs[i * K + 2] = 1.0f;
  EXPECT_NEAR(inception_score(probs, n, K), 1.0, 1e-12);
}

TEST(EvalMetricsIs, TwoClassHandComputed) {
  // Rows (1, 0) and (0.5, 0.5): p(y) = (0.75, 0.25).
  //   KL_1 = 1·ln(1/0.75) + 0·ln 0 = ln(4/3)
  //   KL_2 = 0.5·ln(0.5/0.75) + 0.5·ln(0.5/0.25) = 0.5·ln(2/3) + 0.5·ln 2 = 0.5·ln(4/3)
  //   mean KL = 0.75·ln(4/3) = 0.2157615543;  IS = (4/3)^0.75 = 1.2408064788.
  const std::vector<float> probs = {1.0f, 0.0f, 0.5f, 0.5f};
  EXPECT_NEAR(inception_score(probs, 2, 2), 1.2408064788, 1e-9);
  EXPECT_NEAR(inception_score(probs, 2, 2), std::pow(4.0 / 3.0, 0.75), 1e-12);
}

// --- class histogram, mean top probability ---

TEST(EvalMetricsHistogram, CountsArgmaxAndMeanMaxProb) {
  // [4][3]: argmax 1, 0, 1, and 1 for the last row (0.4 = 0.4: a tie goes to the lower class), so counts
  // (1, 3, 0). Maxima 0.7, 0.5, 0.9, 0.4: mean 2.5 / 4 = 0.625.
  const std::vector<float> probs = {0.1f, 0.7f, 0.2f,   //
                                    0.5f, 0.3f, 0.2f,   //
                                    0.05f, 0.9f, 0.05f,  //
                                    0.2f, 0.4f, 0.4f};
  EXPECT_EQ(class_histogram(probs, 4, 3), (std::vector<int64_t>{1, 3, 0}));
  EXPECT_NEAR(mean_max_prob(probs, 4, 3), 0.625, 1e-7);
}

// --- bad input ---

TEST(EvalMetricsErrors, ProbsRowNotADistribution) {
  const std::vector<float> off = {0.5f, 0.5f, 0.6f, 0.6f};  // row 1 sums to 1.2
  expect_user_error([&] { inception_score(off, 2, 2); }, {"inception_score", "row 1", "sums to 1.2", "logits"});
  expect_user_error([&] { class_histogram(off, 2, 2); }, {"class_histogram", "row 1"});
  expect_user_error([&] { mean_max_prob(off, 2, 2); }, {"mean_max_prob", "row 1"});
  const std::vector<float> negative = {1.0f, 0.0f, 1.5f, -0.5f};  // sums to 1, but not a distribution
  expect_user_error([&] { inception_score(negative, 2, 2); }, {"row 1 class 1", "-0.5", "not a probability"});
  const std::vector<float> nan = {1.0f, 0.0f, NAN, 0.5f};
  expect_user_error([&] { inception_score(nan, 2, 2); }, {"row 1 class 0", "not a probability"});
}

TEST(EvalMetricsErrors, SizeMismatch) {
  expect_user_error([] { inception_score(std::vector<float>(5, 0.2f), 2, 3); }, {"holds 5 values", "n*K = 2*3 = 6"});
  expect_user_error([] { inception_score({}, 0, 3); }, {"n >= 1", "n=0"});
  expect_user_error([] { gaussian_stats(std::vector<float>(7, 0.0f), 4, 2); }, {"holds 7 values", "n*d = 4*2 = 8"});
  const GaussianStats a = gaussian_stats({1, 2, 3, 6, 5, 4}, 3, 2);
  const GaussianStats b = gaussian_stats({1, 2, 3, 3, 6, 4, 5, 4, 1}, 3, 3);
  expect_user_error([&] { frechet_distance(a, b); }, {"feature dimensions differ", "2 and 3"});
  GaussianStats broken = a;
  broken.cov.pop_back();
  expect_user_error([&] { frechet_distance(a, broken); }, {"stats b", "d=2", "covariance of 3 values"});
}

TEST(EvalMetricsErrors, GaussianStatsNeedsTwoFiniteVectors) {
  expect_user_error([] { gaussian_stats({1.0f, 2.0f}, 1, 2); }, {"n >= 2", "n=1"});
  expect_user_error([] { gaussian_stats({1.0f, 2.0f, INFINITY, 4.0f}, 2, 2); }, {"row 1 column 0", "not finite"});
}
