// The training run around the engine: data, backend, progress line and ETA, metrics.jsonl, epoch
// summaries, checkpoints (every epoch, on stop, on SIGINT/SIGTERM), sample grids, divergence guard.
#pragma once
#include <atomic>
#include <string>

#include "host/config.hpp"

namespace ebm {

struct TrainRunOptions {
  Config config;
  std::string resume;                       // checkpoint dir to continue from ("" = fresh run)
  const std::atomic<int>* stop = nullptr;   // set by a signal handler: finish the step, checkpoint, return
  int profile_begin = -1, profile_end = -1; // steps [begin, end) inside cudaProfilerStart/Stop (-1 = off)
};

// Exit codes of ebm_train.
enum RunResult : int { kRunOk = 0, kRunDiverged = 3 };

// Throws UserError on bad input (data, checkpoint, output dir); returns a RunResult.
int run_training(const TrainRunOptions& o);

}  // namespace ebm
