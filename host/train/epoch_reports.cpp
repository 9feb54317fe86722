#include "host/train/epoch_reports.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "engine/error.hpp"
#include "engine/profiling.hpp"
#include "engine/rng.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/eval/sampling.hpp"
#include "host/eval/scoring.hpp"
#include "host/io/charts.hpp"
#include "host/io/tensorboard.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace ebm {

bool write_curves(const fs::path& metrics, const fs::path& png) {
  std::ifstream in(metrics);
  std::vector<PlotSeries> s = {{"loss", {}, {}}, {"cdiv", {}, {}}, {"real", {}, {}}, {"fake", {}, {}}};
  PlotSeries is{"IS", {}, {}}, fid{"FID", {}, {}};
  std::string line;
  while (std::getline(in, line)) {
    try {
      const auto j = json::parse(line);
      if (j.value("event", "") == "eval") {
        is.x.push_back(j.at("step").get<double>()), is.y.push_back(j.at("is").get<double>());
        fid.x.push_back(j.at("step").get<double>()), fid.y.push_back(j.at("fid").get<double>());
      }
      if (j.value("event", "") != "step") continue;
      for (auto& ser : s) {
        ser.x.push_back(j.at("step").get<double>());
        ser.y.push_back(j.at(ser.name).get<double>());
      }
    } catch (const std::exception&) {
    }
  }
  if (s[0].x.size() < 2) return false;
  Image plot = line_plot(s, "training (per logged step)", "step");
  if (!is.x.empty()) {  // train.eval: sample quality below, one chart each (their scales differ)
    plot = stack_vertically(plot, line_plot({is}, "IS (higher is better)", "step"));
    plot = stack_vertically(plot, line_plot({fid}, "FID (lower is better)", "step"));
  }
  write_png(png.string(), plot);
  return true;
}

void EpochReports::prepare_eval(const ClassifierRecipe& recipe) {
  quality_ = std::make_unique<QualityMeter>(config_.data, config_.backend, log_.out(), recipe, root());
  if (config_.train.objective == "jem" && !config_.train.eval.ood.empty()) {
    try {
      ood_ = load_ood_split(config_.data, config_.train.eval.ood);
    } catch (const UserError& e) {
      user_fail("train.eval.ood: ", e.what());
    }
  }
}

std::optional<JemReport> EpochReports::evaluate_classifier(Backend& backend, const Dataset& data) {
  if (!root() || config_.train.objective != "jem") return std::nullopt;
  const auto off = log_.clock().off();
  EBM_PROFILE_RANGE("eval_classifier");
  if (!scorer_) {
    // a tool's backend: sampling_params() is eff(θ_ema or θ, u) already, and it never trains
    scorer_ = make_backend(config_.backend, tool_engine_options(config_, net_));
  }
  scorer_->set_params(backend.sampling_params());
  try {
    return jem_report(*scorer_, data.test, data.test_labels, ood_.test.numel() > 0 ? &ood_.test : nullptr,
                      data_label(ood_.test_path));
  } catch (const UserError& e) {  // NaN scores: said, and training goes on
    log_.err() << "ebm_train: warning: no classifier measures: " << e.what() << "\n";
    return std::nullopt;
  }
}

void EpochReports::sample_grid(Backend& backend, int epoch, int64_t step) {
  if (!pictures_.enabled(log_.err())) return;
  const auto off = log_.clock().off();
  const GenerateConfig& g = config_.generate;
  Tensor x({g.n, net_.in_c, net_.in_h, net_.in_w});
  Rng init(config_.seed + uint64_t(epoch), RngStream::kInit);
  init.offset = uint64_t(1) << 48;  // far from the parameter initialisation's blocks
  init.uniform(x.ptr(), x.numel(), -1.0f, 1.0f);
  backend.sample(x, {g.steps, float(g.step_size), float(g.noise), float(config_.sampler.grad_clip)},
                 config_.seed + uint64_t(epoch));
  const std::vector<float> f = backend.energy(x);
  std::vector<std::string> labels;
  for (float v : f) labels.push_back("E=" + fmt("%.3f", -v));
  const int cols = int(std::ceil(std::sqrt(double(g.n))));
  fs::create_directories(dir_ / "samples");
  const std::string path = (dir_ / "samples" / ("epoch_" + std::to_string(epoch) + ".png")).string();
  const Image grid = image_grid(x.ptr(), g.n, net_.in_h, net_.in_w, cols, labels, 3);
  write_png(path, grid);
  if (TensorBoardWriter* tb = log_.tensorboard()) tb->add_image("samples", step, grid);
  log_.out() << "  samples: " << path << "\n";
}

void EpochReports::energy_histograms(Backend& backend, const Tensor& test, int64_t step) {
  TensorBoardWriter* tb = log_.tensorboard();
  if (!tb) return;
  const auto off = log_.clock().off();
  constexpr int64_t kHistogramImages = 1000;
  auto energies = [&](const Tensor& t, bool newest) {  // E of t's first or newest rows
    const Tensor rows = image_rows(t, net_, kHistogramImages, newest);
    return rows.dim(0) == 0 ? std::vector<float>() : energies_from_f(backend.energy(rows));
  };
  if (test.numel() > 0) tb->add_histogram("energy/real", step, energies(test, false));
  std::vector<int32_t> classes;
  const std::vector<int32_t> ring_classes = backend.buffer_classes();
  if (ring_classes.empty()) {
    tb->add_histogram("energy/samples", step, energies(backend.buffer(), true));  // oldest row first
  } else {  // buffer.per_class: every ring's newest, not only the last rings'
    const Tensor rows = newest_buffer_rows({backend.buffer(), ring_classes}, kHistogramImages, net_.outputs, classes);
    tb->add_histogram("energy/samples", step, energies_from_f(backend.energy(rows)));
  }
  tb->flush();
}

std::optional<QualityReport> EpochReports::evaluate(Backend& backend, int64_t step) {
  const auto off = log_.clock().off();
  EBM_PROFILE_RANGE("eval");
  const int n = config_.train.eval.n, w = comm_.size(), r = comm_.rank();
  const int64_t img = net_.image_size();
  const Tensor start = uniform_start(n, net_, config_.seed);
  std::string mine;  // this rank's chunks, in order, as raw floats
  for (int first = 0, c = 0; first < n; first += kEvalChunk, ++c) {
    if (c % w != r) continue;
    const int m = std::min(kEvalChunk, n - first);
    Tensor chunk({m, net_.in_c, net_.in_h, net_.in_w});
    std::copy_n(start.ptr() + first * img, m * img, chunk.ptr());
    backend.sample(chunk, generate_params(config_), config_.seed + uint64_t(c));
    mine.append(reinterpret_cast<const char*>(chunk.ptr()), size_t(m * img) * sizeof(float));
  }
  std::vector<std::string> parts = w > 1 ? comm_.gather(mine, 0) : std::vector<std::string>{mine};
  if (!root()) return std::nullopt;
  Tensor x({n, net_.in_c, net_.in_h, net_.in_w});
  std::vector<size_t> used(parts.size(), 0);
  for (int first = 0, c = 0; first < n; first += kEvalChunk, ++c) {
    const size_t bytes = size_t(std::min(kEvalChunk, n - first) * img) * sizeof(float);
    std::string& part = parts[size_t(c % w)];
    EBM_CHECK(used[size_t(c % w)] + bytes <= part.size(), "eval: a rank sent fewer samples than its chunks hold");
    std::memcpy(x.ptr() + first * img, part.data() + used[size_t(c % w)], bytes);
    used[size_t(c % w)] += bytes;
  }
  try {
    return quality_->score(x);
  } catch (const UserError& e) {  // samples the classifier cannot score (NaN): said, and training goes on
    log_.err() << "ebm_train: warning: no sample quality at step " << step << ": " << e.what() << "\n";
    return std::nullopt;
  }
}

void EpochReports::curves() {
  if (!root() || !pictures_.enabled(log_.err())) return;
  const auto off = log_.clock().off();
  write_curves(dir_ / "metrics.jsonl", dir_ / "curves.png");
}

}  // namespace ebm
