#include "host/eval/jem_eval.hpp"

#include <algorithm>
#include <cmath>

#include "engine/error.hpp"
#include "host/eval/eval_metrics.hpp"
#include "host/eval/scoring.hpp"
#include "kernels/ebm_math.hpp"

namespace ebm {

namespace {

constexpr int64_t kChunk = 256;  // rows per input-gradient pass: the activations of 256 images, not of 10,000

Tensor rows(const Tensor& x, int64_t first, int64_t m) {
  const int64_t img = x.numel() / x.dim(0);
  Tensor t({m, x.dim(1), x.dim(2), x.dim(3)});
  std::copy_n(x.ptr() + first * img, m * img, t.ptr());
  return t;
}

}  // namespace

ClassifierScores classifier_scores(Backend& model, const Tensor& x, bool grad_norm) {
  const int K = model.options().net.outputs;
  if (K < 2)
    user_fail("the classifier's measures (accuracy, calibration, out-of-distribution AUROCs) need a model with one ",
              "output per class (train.objective \"jem\"); this one has model.outputs = ", K);
  const int64_t n = x.dim(0);
  ClassifierScores s;
  const std::vector<float> f = model.outputs(x);
  s.energy.resize(size_t(n));
  s.max_prob.resize(size_t(n));
  s.label.resize(size_t(n));
  std::vector<float> p(static_cast<size_t>(K), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float* fi = f.data() + i * K;
    s.energy[size_t(i)] = -logsumexp_softmax(fi, K, p.data());
    const auto best = std::max_element(p.begin(), p.end());
    s.max_prob[size_t(i)] = *best;
    s.label[size_t(i)] = int(best - p.begin());
  }
  if (grad_norm) {
    s.grad_norm.resize(size_t(n));
    const int64_t img = x.numel() / std::max<int64_t>(n, 1);
    std::vector<float> lse;
    Tensor g;
    for (int64_t first = 0; first < n; first += kChunk) {
      const int64_t m = std::min(kChunk, n - first);
      model.input_grad(rows(x, first, m), lse, g);  // ∂s/∂x = −∇x E: the same norm
      for (int64_t i = 0; i < m; ++i) {
        double sq = 0;
        for (int64_t j = 0; j < img; ++j) sq += double(g.ptr()[i * img + j]) * g.ptr()[i * img + j];
        s.grad_norm[size_t(first + i)] = float(std::sqrt(sq));
      }
    }
  }
  return s;
}

OodAurocs ood_aurocs(const ClassifierScores& in, const ClassifierScores& out) {
  auto negated = [](std::vector<float> v) {  // max p: lower = more unfamiliar
    for (float& x : v) x = -x;
    return v;
  };
  return {auroc(out.energy, in.energy), auroc(negated(out.max_prob), negated(in.max_prob)),
          auroc(out.grad_norm, in.grad_norm)};
}

Dataset load_ood_split(const DataConfig& data, const std::string& dir) {
  DataConfig ood = data;
  ood.dir = dir;
  ood.dataset = dir.find("fashion") != std::string::npos ? "fashion-mnist" : "mnist";
  return load_test_split(ood);
}

namespace {

void check_labels(const Tensor& test, const std::vector<uint8_t>& labels) {
  if (labels.empty() || int64_t(labels.size()) != test.dim(0))
    user_fail("the classifier's accuracy and calibration need the test split's labels (t10k-labels-idx1-ubyte[.gz] ",
              "beside its images; scripts/get_data.sh fetches them)");
}

// Per test row: right or wrong, and the model's confidence max p(y|x); their means and the ECE (its bootstrap
// standard error apart: 1,000 resampled ECEs, computed only where reported).
struct Calibration {
  std::vector<uint8_t> right;
  double accuracy = 0, mean_confidence = 0, ece = 0;
};
Calibration calibration(const ClassifierScores& s, const std::vector<uint8_t>& labels) {
  Calibration c;
  c.right.resize(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) c.right[i] = s.label[i] == int(labels[i]);
  c.accuracy = double(std::count(c.right.begin(), c.right.end(), uint8_t(1))) / double(c.right.size());
  double conf = 0;
  for (float p : s.max_prob) conf += p;
  c.mean_confidence = conf / double(s.max_prob.size());
  c.ece = expected_calibration_error(s.max_prob, c.right, 15);
  return c;
}

}  // namespace

JemReport jem_report(Backend& model, const Tensor& test, const std::vector<uint8_t>& labels, const Tensor* ood,
                     const std::string& ood_name) {
  check_labels(test, labels);
  const bool with_ood = ood && ood->numel() > 0;
  const ClassifierScores in = classifier_scores(model, test, with_ood);
  JemReport r;
  r.n_test = test.dim(0);
  const Calibration c = calibration(in, labels);
  r.accuracy = c.accuracy, r.mean_confidence = c.mean_confidence, r.ece = c.ece;
  r.ece_se = ece_bootstrap_se(in.max_prob, c.right, 15);
  if (with_ood) {
    const OodAurocs a = ood_aurocs(in, classifier_scores(model, *ood, true));
    r.ood = ood_name;
    r.n_ood = ood->dim(0);
    r.auroc_energy = a.energy;
    r.auroc_max_prob = a.max_prob;
    r.auroc_grad_norm = a.grad_norm;
  }
  return r;
}

CalibrationComparison compare_calibration(Backend& a, Backend& b, const Tensor& test,
                                          const std::vector<uint8_t>& labels) {
  check_labels(test, labels);
  const NetSpec &na = a.options().net, &nb = b.options().net;
  if (na.outputs != nb.outputs || na.image_size() != nb.image_size())
    user_fail("the models compared must have the same classes and input: ", na.outputs, " outputs of ", na.in_c, "x",
              na.in_h, "x", na.in_w, " images against ", nb.outputs, " of ", nb.in_c, "x", nb.in_h, "x", nb.in_w);
  const ClassifierScores sa = classifier_scores(a, test, false), sb = classifier_scores(b, test, false);
  const Calibration ca = calibration(sa, labels), cb = calibration(sb, labels);
  CalibrationComparison r;
  r.accuracy = cb.accuracy, r.mean_confidence = cb.mean_confidence, r.ece = cb.ece;
  r.ece_se = ece_bootstrap_se(sb.max_prob, cb.right, 15);  // b's alone: a's was reported by jem_report
  r.ece_difference = ca.ece - cb.ece;
  r.ece_difference_se = ece_difference_bootstrap_se(sa.max_prob, ca.right, sb.max_prob, cb.right, 15);
  return r;
}

nlohmann::json comparison_json(const CalibrationComparison& c, const std::string& name) {
  return {{"checkpoint", name},   {"accuracy", c.accuracy},           {"mean_confidence", c.mean_confidence},
          {"ece", c.ece},         {"ece_se", c.ece_se},               {"ece_difference", c.ece_difference},
          {"ece_difference_se", c.ece_difference_se}};
}

nlohmann::json jem_json(const JemReport& r) {
  nlohmann::json j = {{"accuracy", r.accuracy}, {"mean_confidence", r.mean_confidence},
                      {"ece", r.ece},           {"ece_se", r.ece_se},
                      {"n_test", r.n_test}};
  if (!r.ood.empty()) {
    j["ood"] = r.ood;
    j["n_ood"] = r.n_ood;
    j["auroc_energy"] = r.auroc_energy;
    j["auroc_max_prob"] = r.auroc_max_prob;
    j["auroc_grad_norm"] = r.auroc_grad_norm;
  }
  return j;
}

std::vector<int32_t> conditional_classes(int n, int K) {
  std::vector<int32_t> y(size_t(std::max(n, 0)));
  for (int i = 0; i < n; ++i) y[size_t(i)] = int32_t(int64_t(i) * K / n);
  return y;
}

std::vector<double> class_agreement(const std::vector<int>& label, const std::vector<int32_t>& asked, int K) {
  EBM_CHECK(label.size() == asked.size(), "class_agreement: one label per asked class");
  std::vector<double> hit(size_t(K) + 1, 0), total(size_t(K) + 1, 0);
  for (size_t i = 0; i < label.size(); ++i) {
    const bool ok = label[i] == asked[i];
    hit[0] += ok, total[0] += 1;
    hit[size_t(asked[i]) + 1] += ok, total[size_t(asked[i]) + 1] += 1;
  }
  std::vector<double> out(size_t(K) + 1);
  for (size_t k = 0; k < out.size(); ++k) out[k] = total[k] > 0 ? hit[k] / total[k] : NAN;
  return out;
}

}  // namespace ebm
