// Sample-quality statistics for ebm_eval: Inception Score and Fréchet distance computed on a classifier's
// outputs for a set of images (the classifier and the tool live elsewhere; these are the pure statistics).
//
// Shapes: n = number of images, K = number of classes, d = feature dimension. Inputs are float32, row-major:
//   probs [n][K]  softmax probabilities p(y|x_i), probs[i*K + y]
//   feats [n][d]  feature vectors (a classifier's penultimate layer), feats[i*d + j]
// Every sum, mean and covariance is accumulated in double.
//
// Bad input (sizes that disagree with n, K or d; n too small; a probability row that is not a distribution;
// non-finite features) is an ebm::UserError with a one-line message naming the problem and, for a bad
// row, its index.
#pragma once
#include <cstdint>
#include <vector>

namespace ebm {

// Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs", §4):
//   IS = exp( (1/n) Σ_i KL( p(y|x_i) || p(y) ) ),   p(y) = (1/n) Σ_i p(y|x_i),
//   KL(p || q) = Σ_y p_y ln(p_y / q_y), with 0·ln 0 = 0.
// In [1, K]: 1 when every row is the same distribution, K when the rows are one-hot and balanced over the
// K classes. One split over all n rows (the original code averages exp(mean KL) over 10 splits of 5,000
// images; split outside this function to reproduce that).
// probs [n][K]: each row's entries >= 0 and summing to 1 within 1e-3, else UserError naming the row.
// n >= 1, K >= 1, probs.size() == n*K.
double inception_score(const std::vector<float>& probs, int64_t n, int K);

// Counts of argmax_y p(y|x_i) over the rows, length K (ties go to the lowest class index). The same
// checks on probs as inception_score.
std::vector<int64_t> class_histogram(const std::vector<float>& probs, int64_t n, int K);

// (1/n) Σ_i max_y p(y|x_i): how confident the classifier is on the samples, in [1/K, 1]. The same checks
// on probs as inception_score.
double mean_max_prob(const std::vector<float>& probs, int64_t n, int K);

// Expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. 3; 15 bins as in
// JEM, Grathwohl et al. 2020, §5.2): confidences c_i = max_y p(y|x_i) in equal-width bins ((b−1)/B, b/B], and
//   ECE = Σ_b (|B_b| / n) · | acc(B_b) − conf(B_b) |,
// acc the fraction of the bin's rows whose prediction is right, conf their mean confidence. In [0, 1]; 0 =
// perfectly calibrated. confidence [n] in [0, 1] and correct [n] (1 = right); n >= 1, bins >= 1; else UserError.
double expected_calibration_error(const std::vector<float>& confidence, const std::vector<uint8_t>& correct,
                                  int bins = 15);

// How far the ECE above could move with another test set of the same size: its bootstrap standard error (Efron &
// Tibshirani 1993, "An Introduction to the Bootstrap", §6.2), the standard deviation (n − 1 in the denominator) of
// the ECEs of `resamples` sets of n rows drawn with replacement from the n given (std::mt19937_64 from `seed`: the
// same figure on every platform). On MNIST's ~1,000 test digits at 98% accuracy it is about 0.002-0.003: ECEs
// closer than twice that are not told apart by this test set. Not a percentile interval: on a finite sample the
// binned ECE is biased upward against the binned calibration error it estimates (a bin's |acc − conf| is positive
// even where the model is calibrated; Kumar et al. 2019, "Verified Uncertainty Calibration", §5), so the resampled
// ECEs lie mostly above the estimate and their percentiles are lopsided (0.0113–0.0203 around 0.0115 on a JEM
// checkpoint). The same checks as expected_calibration_error; resamples >= 2.
double ece_bootstrap_se(const std::vector<float>& confidence, const std::vector<uint8_t>& correct, int bins = 15,
                        int resamples = 1000, uint64_t seed = 0);

// Two models scored on the same n rows (a and b: each's confidence and right/wrong per row): the bootstrap standard
// error of ECE(a) − ECE(b), each resample drawing the same rows for both (a paired bootstrap, Efron & Tibshirani
// §6.2 applied to the difference). What the two share — which digits happen to be hard — cancels, so this is the
// spread that says whether one ECE is below the other on this test set; two models wrong on the same rows at the
// same confidence give exactly 0. The same checks as expected_calibration_error on each; both of n rows.
double ece_difference_bootstrap_se(const std::vector<float>& confidence_a, const std::vector<uint8_t>& correct_a,
                                   const std::vector<float>& confidence_b, const std::vector<uint8_t>& correct_b,
                                   int bins = 15, int resamples = 1000, uint64_t seed = 0);

// A Gaussian fitted to n feature vectors of dimension d: mean [d] and covariance [d][d] (row-major,
// symmetric), the unbiased estimate Σ_i (x_i - mean)(x_i - mean)^T / (n - 1) as numpy.cov computes it.
struct GaussianStats {
  int d = 0;
  std::vector<double> mean;  // [d]
  std::vector<double> cov;   // [d][d]
  int64_t n = 0;             // how many vectors the estimate came from
};

// feats [n][d] float32 row-major. n >= 2 (a covariance needs two points), d >= 1, feats.size() == n*d,
// every value finite; else UserError.
GaussianStats gaussian_stats(const std::vector<float>& feats, int64_t n, int d);

// Fréchet distance between N(mu1, S1) and N(mu2, S2) (Heusel et al. 2017, "GANs Trained by a Two
// Time-Scale Update Rule Converge to a Local Nash Equilibrium"; FID when the features are Inception's):
//   d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr( sqrt(S1 S2) ).
// pytorch-fid takes scipy's sqrtm of the non-symmetric product S1 S2. Here, with the same value for PSD
// S1, S2 but better conditioned: S1 S2 is similar to A = sqrt(S1) S2 sqrt(S1) (symmetric PSD), so
// tr sqrt(S1 S2) = Σ sqrt(λ_k(A)). sqrt(S1) and the λ_k(A) come from Eigen's SelfAdjointEigenSolver;
// eigenvalues below 0 (rounding on a singular covariance) count as 0. The covariances are read as
// symmetric (their lower triangles). The result is clamped to >= 0.
// UserError when a.d != b.d, or a mean or covariance is not of the size its d says.
double frechet_distance(const GaussianStats& a, const GaussianStats& b);

}  // namespace ebm
