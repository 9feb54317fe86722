// Sample quality, as ebm_eval and train.eval measure it: the data set's classifier (host/eval/classifier.hpp)
// scores samples drawn by a fixed protocol, giving the Inception Score, the Fréchet distance of its
// penultimate features to the held-out real images (host/eval/eval_metrics.hpp), the class histogram and the
// mean top probability.
//
// The sampling protocol (README "Measuring sample quality"; figures are reproducible from it):
//   x0 = uniform_start(n, net, seed): n images of uniform noise in [−1,1] (host/eval/sampling.hpp);
//   chains in chunks of kEvalChunk rows, chunk c (rows [c·kEvalChunk, ...)) refined by Backend::sample
//   with the `generate` settings (steps, step size, noise; grad clip from `sampler`) and seed + c.
// So a figure is fixed by (checkpoint, n, steps, step size, noise, seed) and the classifier's cache.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/backend.hpp"
#include "host/eval/classifier.hpp"
#include "host/eval/eval_metrics.hpp"

namespace ebm {

constexpr int kEvalChunk = 250;
constexpr double kWeakClassifier = 0.9;

// n samples by the protocol above from `model` (a backend holding the energy net's sampling weights).
// `progress(done, n)` is called after each chunk. With `classes` [n] (a K-output model), chain i runs on the
// class-conditional energy E(x, classes[i]) (Backend::sample); the noise is the unconditional protocol's.
Tensor draw_eval_samples(Backend& model, int n, const SamplerParams& p, uint64_t seed,
                         const std::function<void(int, int)>& progress = {},
                         const std::vector<int32_t>* classes = nullptr);

struct QualityReport {
  double is = 0;              // Inception Score, 1..K
  double fid = 0;             // Fréchet distance to the test split's features (0 = the same statistics)
  double mean_max_prob = 0;   // mean over samples of max_y p(y|x)
  std::vector<int64_t> class_hist;  // argmax counts, K
  std::vector<int> label;           // argmax per sample [n]
  std::vector<float> max_prob;      // max_y p(y|x) per sample [n]
  int64_t n = 0;
};

class QualityMeter {
 public:
  // Loads (or trains and, with `save`, caches) the classifier of `data`'s set on backend `backend`, and the
  // reference statistics of its test split. Progress and what it does are said on `log`, and a warning when
  // the classifier is below kWeakClassifier on the test split (its figures then say little).
  QualityMeter(const DataConfig& data, const std::string& backend, std::ostream& log,
               const ClassifierRecipe& recipe = {}, bool save = true);
  ~QualityMeter();

  // Scores samples [n,C,H,W] in [−1,1] (n >= 2) of the data set's image shape.
  QualityReport score(const Tensor& samples);
  const ClassifierInfo& classifier() const { return classifier_.info; }
  const NetSpec& net() const { return classifier_.model.net; }  // its input shape is the data set's
  const GaussianStats& reference() const { return real_; }

 private:
  Classifier classifier_;
  std::unique_ptr<Backend> backend_;
  GaussianStats real_;
};

// {"is", "fid", "class_hist", "mean_max_prob", "n"}.
nlohmann::json quality_json(const QualityReport& r);

}  // namespace ebm
