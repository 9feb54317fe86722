// What a JEM model (train.objective "jem": one K-output net that classifies, samples and scores; Grathwohl et
// al. 2020) measures of itself, for ebm_eval, ebm_score and train.eval:
//   - as a classifier, on the labelled test split: accuracy of argmax_y f_y(x), and the expected calibration
//     error of its softmax (15 bins; host/eval/eval_metrics.hpp);
//   - as a density, against an out-of-distribution set (MNIST test digits against Fashion-MNIST's): the AUROC of
//     three scores, each oriented so that higher = more out-of-distribution and 1 = perfect separation:
//       energy     E(x) = −logsumexp_y f_y(x)               (JEM's log p(x) up to its constant, negated)
//       max_prob   −max_y softmax(f(x))_y                   (Hendrycks & Gimpel 2017's baseline, negated)
//       grad_norm  ‖∇x E(x)‖₂                              (JEM's "approximate mass": small near a mode)
//     AUROC = P(score_ood > score_in) + ½·P(=) (host/eval/scoring.hpp auroc);
//   - as a generator asked for a class: how often the data set's own classifier (host/eval/classifier.hpp) labels
//     a class-conditional sample as the class asked for.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/backend.hpp"
#include "host/io/dataset.hpp"

namespace ebm {

// Per image x [n,C,H,W] under the model's weights (a backend holding a K-output net's sampling weights).
struct ClassifierScores {
  std::vector<float> energy;     // [n] E(x) = −logsumexp f(x)
  std::vector<float> max_prob;   // [n] max_y softmax(f(x))_y
  std::vector<int> label;        // [n] argmax_y f_y(x) (ties: the lowest class)
  std::vector<float> grad_norm;  // [n] ‖∇x E(x)‖₂; empty unless asked for
};
ClassifierScores classifier_scores(Backend& model, const Tensor& x, bool grad_norm);

struct JemReport {
  int64_t n_test = 0;
  double accuracy = 0, ece = 0;
  double ece_se = 0;               // ECE's bootstrap standard error over the test set (eval_metrics.hpp)
  double mean_confidence = 0;     // (1/n) Σ max_y p(y|x): below accuracy = underconfident, above = overconfident
  // Against the out-of-distribution set, when one was given (ood non-empty).
  std::string ood;  // its name, as printed
  int64_t n_ood = 0;
  double auroc_energy = 0, auroc_max_prob = 0, auroc_grad_norm = 0;
};

// The three out-of-distribution AUROCs of `out` against `in` (each oriented higher = more unfamiliar): energy,
// max_prob, grad_norm. Both need grad_norm (classifier_scores(..., true)).
struct OodAurocs {
  double energy = 0, max_prob = 0, grad_norm = 0;
};
OodAurocs ood_aurocs(const ClassifierScores& in, const ClassifierScores& out);

// An out-of-distribution set's test split (train.eval.ood, ebm_eval --ood): `dir`'s t10k images, padded as `data`'s;
// a missing file is a UserError naming the fetch command (Fashion-MNIST's where the folder's name says so).
Dataset load_ood_split(const DataConfig& data, const std::string& dir);

// test [n] and its labels [n] (classes < K); `ood` may be null (no AUROCs). UserError when the labels are
// missing or the model is not a K-output net.
JemReport jem_report(Backend& model, const Tensor& test, const std::vector<uint8_t>& labels, const Tensor* ood,
                     const std::string& ood_name);

// Two K-output models on the same labelled test split (ebm_eval --compare): b's accuracy, mean confidence, ECE
// and its standard error, and ECE(a) − ECE(b) with its paired bootstrap standard error (eval_metrics.hpp): the
// figure that says whether a is better calibrated than b on this test set. UserError as jem_report, or when the two
// nets differ in K or input size.
struct CalibrationComparison {
  double accuracy = 0, mean_confidence = 0, ece = 0, ece_se = 0;  // b's
  double ece_difference = 0, ece_difference_se = 0;                // ECE(a) − ECE(b)
};
CalibrationComparison compare_calibration(Backend& a, Backend& b, const Tensor& test,
                                          const std::vector<uint8_t>& labels);
// {"checkpoint": name, "accuracy", "mean_confidence", "ece", "ece_se", "ece_difference", "ece_difference_se"}
nlohmann::json comparison_json(const CalibrationComparison& c, const std::string& name);

// {"accuracy", "mean_confidence", "ece", "ece_se", "n_test"[, "ood", "n_ood", "auroc_energy", "auroc_max_prob",
//  "auroc_grad_norm"]}
nlohmann::json jem_json(const JemReport& r);

// The classes asked of n class-conditional chains over K classes: chain i asks for ⌊i·K/n⌋, so every class
// gets n/K chains (±1) in one contiguous run — a near-square grid of n = m·K samples has a row per class when
// its width is m.
std::vector<int32_t> conditional_classes(int n, int K);

// Fraction of `label` equal to `asked`, overall [0] and per class [1 + k] (NaN for a class never asked).
std::vector<double> class_agreement(const std::vector<int>& label, const std::vector<int32_t>& asked, int K);

}  // namespace ebm
