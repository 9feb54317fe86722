// Learning-rate schedules (config train.lr_schedule and its keys). The rate a training step uses is
//   lr(t) = train.lr · warmup(t) · schedule(t)
// where t = optimizer steps taken before this one (0 for the first step) and
//   warmup(t)   = min(1, (t + 1) / W)                      W = train.lr_warmup_steps (1 when W = 0)
//   constant    = 1
//   step        = γ^⌊e / N⌋                                 e = the step's epoch (0-based), γ = lr_gamma,
//                                                           N = lr_step_epochs (torch.optim.lr_scheduler.StepLR)
//   cosine      = m + (1 − m)·½·(1 + cos(π·p))              p = clamp((t − W) / (T − W), 0, 1), m = lr_min_factor,
//                                                           T = train.epochs × batches per epoch (SGDR, Loshchilov &
//                                                           Hutter 2017, without restarts; CosineAnnealingLR)
// A rollback lowers train.lr (the checkpoint's `lr`); the schedule multiplies whatever it is now. T ignores
// train.max_steps, so a run stopped there and resumed follows the uninterrupted run's rates exactly.
#pragma once
#include <cstdint>

#include "host/io/config.hpp"

namespace ebm {

// The factor multiplying train.lr for the step after `steps_taken` steps, in epoch `epoch` (0-based), of a
// run planned for `total_steps` steps. In [0, 1] (0 only for cosine with lr_min_factor 0, past the plan).
double lr_factor(const TrainConfig& t, int64_t steps_taken, int64_t epoch, int64_t total_steps);

}  // namespace ebm
