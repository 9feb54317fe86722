#include "host/eval/eval_quality.hpp"

#include <algorithm>
#include <cmath>
#include <ostream>

#include "engine/error.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/eval/sampling.hpp"
#include "host/io/dataset.hpp"

namespace ebm {

Tensor draw_eval_samples(Backend& model, int n, const SamplerParams& p, uint64_t seed,
                         const std::function<void(int, int)>& progress, const std::vector<int32_t>* classes) {
  const NetSpec& net = model.options().net;
  Tensor x = uniform_start(n, net, seed);
  const int64_t img = net.image_size();
  for (int first = 0, c = 0; first < n; first += kEvalChunk, ++c) {
    const int m = std::min(kEvalChunk, n - first);
    Tensor chunk({m, net.in_c, net.in_h, net.in_w});
    std::copy_n(x.ptr() + int64_t(first) * img, int64_t(m) * img, chunk.ptr());
    if (classes) {
      const std::vector<int32_t> mine(classes->begin() + first, classes->begin() + first + m);
      model.sample(chunk, p, seed + uint64_t(c), 0, nullptr, &mine);
    } else {
      model.sample(chunk, p, seed + uint64_t(c));
    }
    std::copy_n(chunk.ptr(), int64_t(m) * img, x.ptr() + int64_t(first) * img);
    if (progress) progress(first + m, n);
  }
  return x;
}

QualityMeter::QualityMeter(const DataConfig& data, const std::string& backend, std::ostream& log,
                           const ClassifierRecipe& recipe, bool save)
    : classifier_(load_or_train_classifier(data, backend, log, recipe, save)) {
  if (classifier_.info.test_accuracy < kWeakClassifier)
    log << "classifier: warning: " << classifier_.info.dir << " classifies only " << 100 * classifier_.info.test_accuracy
        << "% of the test images right; IS and FID under it say little\n";
  EngineOptions o = engine_options_for(classifier_.model.config);
  o.net = classifier_.model.net;
  o.buffer_capacity = o.buffer_initial = o.batch_size;
  backend_ = make_backend(backend, o);
  backend_->set_params(classifier_.model.params);
  DataConfig dc = data;
  dc.limit = 0;
  const Dataset ds = load_dataset(dc);
  std::vector<float> probs, feats;
  classify(*backend_, ds.test, probs, &feats);
  real_ = gaussian_stats(feats, ds.test.dim(0), int(o.net.dense_in));
}

QualityMeter::~QualityMeter() = default;

QualityReport QualityMeter::score(const Tensor& samples) {
  const NetSpec& net = classifier_.model.net;
  if (samples.shape.size() != 4 || samples.dim(1) != net.in_c || samples.dim(2) != net.in_h || samples.dim(3) != net.in_w)
    user_fail("samples ", shape_str(samples.shape), " do not have the data set's image shape [n,", net.in_c, ",",
              net.in_h, ",", net.in_w, "]");
  QualityReport r;
  r.n = samples.dim(0);
  if (r.n < 2) user_fail("sample quality needs at least 2 samples, got ", r.n);
  for (int64_t i = 0; i < samples.numel(); ++i)
    if (!std::isfinite(samples.data[size_t(i)]))
      user_fail("sample ", i / net.image_size(), " holds NaN or infinity (a diverged model?): no quality to measure");
  std::vector<float> probs, feats;
  classify(*backend_, samples, probs, &feats);
  const int k = net.outputs;
  r.is = inception_score(probs, r.n, k);
  r.class_hist = class_histogram(probs, r.n, k);
  r.mean_max_prob = mean_max_prob(probs, r.n, k);
  r.fid = frechet_distance(gaussian_stats(feats, r.n, int(net.dense_in)), real_);
  for (int64_t i = 0; i < r.n; ++i) {
    const float* row = probs.data() + i * k;
    const float* top = std::max_element(row, row + k);
    r.label.push_back(int(top - row));
    r.max_prob.push_back(*top);
  }
  return r;
}

nlohmann::json quality_json(const QualityReport& r) {
  return {{"is", r.is}, {"fid", r.fid}, {"class_hist", r.class_hist}, {"mean_max_prob", r.mean_max_prob}, {"n", r.n}};
}

}  // namespace ebm
