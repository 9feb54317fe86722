// The training run around the engine: data, backend, progress line and ETA, metrics.jsonl, epoch
// summaries, checkpoints (every epoch, on stop, on SIGINT/SIGTERM), sample grids, divergence guard.
#pragma once
#include <atomic>
#include <string>

#include "host/config.hpp"

namespace ebm {

class Communicator;

struct TrainRunOptions {
  Config config;
  std::string resume;                       // checkpoint dir to continue from ("" = fresh run)
  const std::atomic<int>* stop = nullptr;   // set by a signal handler: finish the step, checkpoint, return
  int profile_begin = -1, profile_end = -1; // steps [begin, end) inside cudaProfilerStart/Stop (-1 = off)
  // Data-parallel runs: this process's place among the ranks (not owned; null = one process). Every rank
  // calls run_training with the same config; rank 0 writes the logs and checkpoints (holding every rank's
  // buffer shard and RNG state), a stop requested on any rank stops all of them after the same step.
  Communicator* comm = nullptr;
};

// Exit codes of ebm_train.
enum RunResult : int { kRunOk = 0, kRunDiverged = 3 };

// Throws UserError on bad input (data, checkpoint, output dir) — SharedUserError (host/distributed.hpp),
// thrown on every rank alike, when the run has several — and CommError when another rank fails; returns
// a RunResult.
int run_training(const TrainRunOptions& o);

}  // namespace ebm
