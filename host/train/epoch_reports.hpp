// What a run shows of itself at an epoch's end, besides its numbers: the sample grid (samples/epoch_N.png and
// TensorBoard's "samples" image), the energy histograms (TensorBoard), sample quality (train.eval: IS/FID from
// the data set's classifier) and the training curves (curves.png, redrawn from metrics.jsonl so that they
// survive resumes). Forward passes and sampling on streams of their own: nothing training holds changes, and
// their time is left off the run's clock.
#pragma once
#include <filesystem>
#include <memory>
#include <optional>

#include "engine/backend.hpp"
#include "engine/communicator.hpp"
#include "host/eval/classifier.hpp"
#include "host/eval/eval_quality.hpp"
#include "host/eval/jem_eval.hpp"
#include "host/io/dataset.hpp"
#include "host/io/config.hpp"
#include "host/io/png_image.hpp"
#include "host/train/run_log.hpp"

namespace ebm {

// curves.png from a metrics.jsonl: loss, cdiv, real and fake per logged step, and with "eval" records IS and
// FID below, one chart each. False (nothing written) with fewer than two step records.
bool write_curves(const std::filesystem::path& metrics, const std::filesystem::path& png);

class EpochReports {
 public:
  EpochReports(const Config& config, const NetSpec& net, std::filesystem::path dir, Communicator& comm, RunLog& log)
      : config_(config), net_(net), dir_(std::move(dir)), comm_(comm), log_(log) {}

  // train.eval: loads (or trains, on every rank alike; rank 0 caches it) the data set's classifier and says so.
  void prepare_eval(const ClassifierRecipe& recipe);
  const QualityMeter* quality() const { return quality_.get(); }  // train.eval's, once prepared
  // Whether train.eval is due at the end of epoch `epoch` (1-based).
  bool eval_due(int epoch) const { return quality_ && epoch % config_.train.eval.every == 0; }
  // Says now, once, that a build without libpng draws no pictures (not at the first epoch end).
  void check_pictures() { pictures_.enabled(log_.err()); }

  // Rank 0: generate.n chains from uniform noise (seed + epoch) by the generate settings, with their energies.
  void sample_grid(Backend& backend, int epoch, int64_t step);
  // Rank 0, train.tensorboard: histograms of E = −f (sampling weights, as ebm_score) of the test set's first
  // 1000 images and of this rank's newest 1000 replay-buffer rows.
  void energy_histograms(Backend& backend, const Tensor& test, int64_t step);
  // train.eval: eval.n chains by the evaluation protocol (host/eval/eval_quality.hpp, seed = the run's seed, so
  // every evaluation starts from the same noise); with several ranks each draws every W-th chunk and rank 0
  // scores them all (collective). Rank 0's report (the others' is empty; so is one the classifier cannot score:
  // a warning, and training goes on).
  std::optional<QualityReport> evaluate(Backend& backend, int64_t step);
  // train.eval with train.objective "jem", rank 0: the model (its sampling weights, as a checkpoint holds them) as
  // a classifier on the test split, and against train.eval.ood's test images (host/eval/jem_eval.hpp).
  std::optional<JemReport> evaluate_classifier(Backend& backend, const Dataset& data);
  // Rank 0: curves.png from the run's metrics.jsonl.
  void curves();

 private:
  bool root() const { return comm_.rank() == 0; }
  const Config& config_;
  const NetSpec& net_;
  std::filesystem::path dir_;
  Communicator& comm_;
  RunLog& log_;
  std::unique_ptr<QualityMeter> quality_;  // train.eval: the data set's classifier and reference statistics
  Dataset ood_;                        // train.eval.ood's test split (jem)
  std::unique_ptr<Backend> scorer_;    // jem: the sampling weights, for the classifier's measures
  OptionalPictures pictures_{"ebm_train", "samples/epoch_N.png and curves.png"};  // skipped without libpng
};

}  // namespace ebm
