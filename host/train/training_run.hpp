// The training run around the engine: data, backend, the step loop, and what falls due around it — progress
// line and ETA, metrics.jsonl, epoch summaries, checkpoints (every epoch, on stop, on SIGINT/SIGTERM), sample
// grids, the divergence guard. The loop is host/train/training_run.cpp; each of those jobs is a collaborator
// of its own beside it (run_folder, resume, run_log, divergence_guard, checkpoint_keeper, epoch_reports).
#pragma once
#include <atomic>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/eval/classifier.hpp"
#include "host/io/config.hpp"

namespace ebm {

class Communicator;

// TrainRunOptions::stop's values: 0 train on; kStopBySignal, SIGINT/SIGTERM (ebm_train's handler, or Ctrl-C seen by
// the Python module); kStopByCall, the caller (ebm_engine's Trainer.stop()). The run's "stopped" record says
// "signal" or "stop".
constexpr int kStopBySignal = 1, kStopByCall = 2;

struct TrainRunOptions {
  Config config;
  // The JSON file `config` was read from ("" for a dict or text): the run refuses to replace it when it is the
  // run folder's own config.json and the resolved config differs from its text (defaults filled in, --set values).
  std::string config_file;
  std::optional<std::string> resume;        // checkpoint dir to continue from (none = a fresh run; "" is an error)
  const std::atomic<int>* stop = nullptr;   // set by a signal handler: finish the step, checkpoint, return
  int profile_begin = -1, profile_end = -1; // steps [begin, end) inside cudaProfilerStart/Stop (-1 = off)
  // Data-parallel runs: this process's place among the ranks (not owned; null = one process). Every rank
  // calls run_training with the same config; rank 0 writes the logs and checkpoints (holding every rank's
  // buffer shard and RNG state), a stop requested on any rank stops all of them after the same step.
  Communicator* comm = nullptr;
  // train.eval's classifier, when it must be trained (tests and smoke runs shrink it).
  ClassifierRecipe classifier;
  // Where rank 0's console lines go (null: std::cout and std::cerr). The Python module hands buffers and
  // forwards them to sys.stdout/sys.stderr between steps.
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  // Called with each record as it is appended to metrics.jsonl (rank 0), on the training thread.
  std::function<void(const nlohmann::json&)> on_record;
  // The run is driven from Python (ebm_engine.Trainer): what to do next is said in its arguments
  // (Trainer(..., resume=..., overrides={...})) rather than ebm_train's flags (--resume, --set).
  bool python_api = false;
};

// Exit codes of ebm_train.
enum RunResult : int { kRunOk = 0, kRunDiverged = 3 };

// Throws UserError on bad input (data, checkpoint, output dir) — SharedUserError (host/train/distributed.hpp),
// thrown on every rank alike, when the run has several — and CommError when another rank fails; returns
// a RunResult.
int run_training(const TrainRunOptions& o);

class TrainingRun;  // host/train/training_run.cpp

// run_training one step at a time (the Python module's Trainer): the constructor makes every check and
// prepares the run folder (UserError as run_training throws them, before anything is written); advance()
// runs one training step with what falls due before and after it (an epoch's end, its checkpoints, the
// run's end). Calling advance() until it returns a result is run_training, bit for bit.
class Training {
 public:
  explicit Training(TrainRunOptions o);
  ~Training();
  Training(const Training&) = delete;
  Training& operator=(const Training&) = delete;

  // nullopt while the run goes on; the RunResult once it has ended (then every later call returns it).
  std::optional<int> advance();
  std::optional<int> result() const;
  int64_t step() const;               // optimizer steps taken
  int64_t total_steps() const;        // where the run ends (train.epochs, or train.max_steps)
  const Config& config() const;
  const NetSpec& net() const;
  std::string divergence() const;  // why the run diverged, and what to fall back on ("" unless it ended so)
  // The weights sample() and energy() use now (Backend::sampling_params), for a model of the run as it is.
  std::vector<float> sampling_params();
  // Writes the state now as a checkpoint in `dir` (a folder ebm_train --resume continues from), once the
  // divergence guard's probe has passed it (UserError otherwise); the run's random streams do not move.
  void save(const std::string& dir);

 private:
  TrainRunOptions options_;  // TrainingRun keeps a reference
  std::unique_ptr<TrainingRun> run_;
};

}  // namespace ebm
