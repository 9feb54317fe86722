#include "host/eval/eval_metrics.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "engine/error.hpp"       // defines: ebm::user_fail (UserError)
#include "host/eval/eigen_dense.hpp"  // defines: Eigen::MatrixXd, Eigen::SelfAdjointEigenSolver

namespace ebm {
namespace {

// Row sums of a probability table may be off by float32 rounding of a softmax (K terms, ~1e-7 each) and by
// a classifier that stores probabilities at reduced precision; 1e-3 allows that and still catches logits
// or unnormalised scores passed by mistake.
constexpr double kRowSumTolerance = 1e-3;

// probs [n][K]: sizes agree, every entry finite and >= 0, every row sums to 1 within kRowSumTolerance.
void check_probs(const char* what, const std::vector<float>& probs, int64_t n, int K) {
  if (n < 1 || K < 1) user_fail(what, ": need n >= 1 rows and K >= 1 classes, got n=", n, ", K=", K);
  if (static_cast<int64_t>(probs.size()) != n * K)
    user_fail(what, ": probs holds ", probs.size(), " values, expected n*K = ", n, "*", K, " = ", n * K);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = probs.data() + i * K;
    double sum = 0;
    for (int y = 0; y < K; ++y) {
      if (!(row[y] >= 0.0f) || !std::isfinite(row[y]))
        user_fail(what, ": probs row ", i, " class ", y, " is ", row[y], ", not a probability");
      sum += row[y];
    }
    if (!(std::abs(sum - 1.0) <= kRowSumTolerance))
      user_fail(what, ": probs row ", i, " sums to ", sum, ", not 1 (within ", kRowSumTolerance,
                "): pass softmax probabilities, not logits");
  }
}

// A GaussianStats' sizes agree with its d.
void check_stats(const char* which, const GaussianStats& s) {
  if (s.d < 1 || s.mean.size() != static_cast<size_t>(s.d) ||
      s.cov.size() != static_cast<size_t>(s.d) * static_cast<size_t>(s.d))
    user_fail("frechet_distance: stats ", which, " has d=", s.d, " but a mean of ", s.mean.size(),
              " and a covariance of ", s.cov.size(), " values (expected d and d*d)");
}

// cov [d][d] row-major to an Eigen matrix, symmetric from its lower triangle.
Eigen::MatrixXd symmetric_from_lower(const std::vector<double>& cov, int d) {
  Eigen::MatrixXd m(d, d);
  for (int r = 0; r < d; ++r)
    for (int c = 0; c <= r; ++c) m(r, c) = m(c, r) = cov[static_cast<size_t>(r) * d + c];
  return m;
}

}  // namespace

double inception_score(const std::vector<float>& probs, int64_t n, int K) {
  check_probs("inception_score", probs, n, K);
  std::vector<double> marginal(K, 0.0);  // p(y) [K]
  for (int64_t i = 0; i < n; ++i)
    for (int y = 0; y < K; ++y) marginal[y] += probs[i * K + y];
  for (double& m : marginal) m /= static_cast<double>(n);

  double kl_sum = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int y = 0; y < K; ++y) {
      const double p = probs[i * K + y];
      if (p > 0) kl_sum += p * std::log(p / marginal[y]);  // marginal[y] >= p/n > 0 here; 0·ln 0 = 0
    }
  return std::exp(kl_sum / static_cast<double>(n));
}

std::vector<int64_t> class_histogram(const std::vector<float>& probs, int64_t n, int K) {
  check_probs("class_histogram", probs, n, K);
  std::vector<int64_t> counts(K, 0);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = probs.data() + i * K;
    ++counts[std::max_element(row, row + K) - row];  // the first maximum: ties go to the lowest class
  }
  return counts;
}

double mean_max_prob(const std::vector<float>& probs, int64_t n, int K) {
  check_probs("mean_max_prob", probs, n, K);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += *std::max_element(probs.data() + i * K, probs.data() + (i + 1) * K);
  return sum / static_cast<double>(n);
}

GaussianStats gaussian_stats(const std::vector<float>& feats, int64_t n, int d) {
  if (n < 2) user_fail("gaussian_stats: need n >= 2 feature vectors for a covariance, got n=", n);
  if (d < 1) user_fail("gaussian_stats: need feature dimension d >= 1, got d=", d);
  if (static_cast<int64_t>(feats.size()) != n * d)
    user_fail("gaussian_stats: feats holds ", feats.size(), " values, expected n*d = ", n, "*", d, " = ", n * d);

  GaussianStats s;
  s.d = d;
  s.n = n;
  s.mean.assign(d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) {
      const float v = feats[i * d + j];
      if (!std::isfinite(v)) user_fail("gaussian_stats: feats row ", i, " column ", j, " is ", v, ", not finite");
      s.mean[j] += v;
    }
  for (double& m : s.mean) m /= static_cast<double>(n);

  // Two passes (centre, then multiply): no cancellation when the mean is large against the spread.
  s.cov.assign(static_cast<size_t>(d) * d, 0.0);
  std::vector<double> centred(d);  // x_i - mean [d]
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) centred[j] = feats[i * d + j] - s.mean[j];
    for (int r = 0; r < d; ++r)
      for (int c = 0; c <= r; ++c) s.cov[static_cast<size_t>(r) * d + c] += centred[r] * centred[c];
  }
  for (int r = 0; r < d; ++r)
    for (int c = 0; c <= r; ++c) {
      double& v = s.cov[static_cast<size_t>(r) * d + c];
      v /= static_cast<double>(n - 1);
      s.cov[static_cast<size_t>(c) * d + r] = v;
    }
  return s;
}

double frechet_distance(const GaussianStats& a, const GaussianStats& b) {
  check_stats("a", a);
  check_stats("b", b);
  if (a.d != b.d) user_fail("frechet_distance: feature dimensions differ: ", a.d, " and ", b.d);
  const int d = a.d;

  double mean_term = 0;  // |mu1 - mu2|²
  for (int j = 0; j < d; ++j) mean_term += (a.mean[j] - b.mean[j]) * (a.mean[j] - b.mean[j]);

  const Eigen::MatrixXd s1 = symmetric_from_lower(a.cov, d);
  const Eigen::MatrixXd s2 = symmetric_from_lower(b.cov, d);

  // sqrt(S1) = V diag(sqrt(max(λ, 0))) V^T from S1 = V diag(λ) V^T.
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig1(s1);
  if (eig1.info() != Eigen::Success) user_fail("frechet_distance: the eigendecomposition of covariance a failed");
  const Eigen::VectorXd root_l1 = eig1.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  const Eigen::MatrixXd sqrt_s1 = eig1.eigenvectors() * root_l1.asDiagonal() * eig1.eigenvectors().transpose();

  // A = sqrt(S1) S2 sqrt(S1): symmetric PSD with the eigenvalues of S1 S2; symmetrised against rounding.
  Eigen::MatrixXd prod = sqrt_s1 * s2 * sqrt_s1;
  prod = 0.5 * (prod + prod.transpose());
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig_a(prod, Eigen::EigenvaluesOnly);
  if (eig_a.info() != Eigen::Success)
    user_fail("frechet_distance: the eigendecomposition of sqrt(S1) S2 sqrt(S1) failed");
  const double tr_sqrt = eig_a.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();  // tr sqrt(S1 S2)

  const double fid = mean_term + s1.trace() + s2.trace() - 2.0 * tr_sqrt;
  return std::max(fid, 0.0);
}

double expected_calibration_error(const std::vector<float>& confidence, const std::vector<uint8_t>& correct, int bins) {
  if (confidence.empty() || confidence.size() != correct.size() || bins < 1)
    user_fail("ECE needs one confidence and one right/wrong per row and at least one bin (got ", confidence.size(),
              " confidences, ", correct.size(), " outcomes, ", bins, " bins)");
  std::vector<double> count(size_t(bins), 0), right(size_t(bins), 0), conf(size_t(bins), 0);
  for (size_t i = 0; i < confidence.size(); ++i) {
    const double c = confidence[i];
    if (!(c >= 0 && c <= 1)) user_fail("ECE: confidence of row ", i, " is ", c, ", not in [0, 1]");
    // bin b holds ((b)/B, (b+1)/B]; a confidence of exactly 0 goes to the first
    const int b = std::clamp(int(std::ceil(c * bins)) - 1, 0, bins - 1);
    count[size_t(b)] += 1;
    right[size_t(b)] += correct[i] ? 1 : 0;
    conf[size_t(b)] += c;
  }
  double ece = 0;
  for (int b = 0; b < bins; ++b)
    if (count[size_t(b)] > 0) ece += std::fabs(right[size_t(b)] - conf[size_t(b)]);  // |B|·|acc − conf|
  return ece / double(confidence.size());
}

namespace {

// The standard deviation (n − 1) of stat(rows) over `resamples` draws of n row indices with replacement
// (std::mt19937_64 from seed), computed in two passes so that equal values give exactly 0.
template <class Stat>
double bootstrap_sd(size_t n, int resamples, uint64_t seed, Stat&& stat) {
  if (resamples < 2) user_fail("ECE bootstrap: needs at least 2 resamples (got ", resamples, ")");
  std::mt19937_64 gen(seed);
  std::vector<size_t> rows(n);
  std::vector<double> v(static_cast<size_t>(resamples));
  for (double& x : v) {
    for (size_t& r : rows) r = size_t(gen() % n);  // modulo bias < n / 2^64
    x = stat(rows);
  }
  double mean = 0, ss = 0;
  for (double x : v) mean += x;
  mean /= resamples;
  for (double x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / (resamples - 1));
}

// The ECE of the rows `rows` of (confidence, correct), through the buffers c and r.
double ece_of_rows(const std::vector<float>& confidence, const std::vector<uint8_t>& correct,
                   const std::vector<size_t>& rows, int bins, std::vector<float>& c, std::vector<uint8_t>& r) {
  c.resize(rows.size()), r.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) c[i] = confidence[rows[i]], r[i] = correct[rows[i]];
  return expected_calibration_error(c, r, bins);
}

}  // namespace

double ece_bootstrap_se(const std::vector<float>& confidence, const std::vector<uint8_t>& correct, int bins,
                        int resamples, uint64_t seed) {
  expected_calibration_error(confidence, correct, bins);  // the same checks, with the same messages
  std::vector<float> c;
  std::vector<uint8_t> r;
  return bootstrap_sd(confidence.size(), resamples, seed,
                      [&](const std::vector<size_t>& rows) { return ece_of_rows(confidence, correct, rows, bins, c, r); });
}

double ece_difference_bootstrap_se(const std::vector<float>& confidence_a, const std::vector<uint8_t>& correct_a,
                                   const std::vector<float>& confidence_b, const std::vector<uint8_t>& correct_b,
                                   int bins, int resamples, uint64_t seed) {
  expected_calibration_error(confidence_a, correct_a, bins);
  expected_calibration_error(confidence_b, correct_b, bins);
  if (confidence_a.size() != confidence_b.size())
    user_fail("ECE difference: the two models must be scored on the same rows (got ", confidence_a.size(), " and ",
              confidence_b.size(), ")");
  std::vector<float> c;
  std::vector<uint8_t> r;
  return bootstrap_sd(confidence_a.size(), resamples, seed, [&](const std::vector<size_t>& rows) {
    const double a = ece_of_rows(confidence_a, correct_a, rows, bins, c, r);
    return a - ece_of_rows(confidence_b, correct_b, rows, bins, c, r);
  });
}

}  // namespace ebm
