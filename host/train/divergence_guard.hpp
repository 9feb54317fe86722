// The divergence guard (train.divergence): which states of a run are good, what a divergence is, and what
// happens then — a rollback to the newest good state with a lower learning rate and a new seed, or a stop
// with one line saying what to fall back on.
//
// A step's forward pass runs on the weights of the step before, so the weights a step produces are checked
// only by the next forward pass on them. A state is "good" once such a pass has passed the guard (finite f,
// |f| <= max_abs_f): the next training step's, the epoch-end validation's, or — for the last checkpoint of a
// run, which no step follows — the probe (probe_max_abs_f), which makes the next step's forward pass without
// the update. Rollbacks go to the newest good state; checkpoints are written only of good states
// (host/train/checkpoint_keeper.hpp).
//
// The slow drift (train.divergence.drift_factor > 0): a run can fail with every |f| far below max_abs_f. In
// JEM with a heavy cross-entropy weight, the real and sampled energies part over some ten epochs (cdiv goes
// strongly negative), the regulariser grows 50× and the samples collapse (README, JEM). The guard then
// watches each epoch's mean regulariser against its own running level (drift_ratio) and counts an epoch
// above drift_factor × that level as divergence. The level is taken over normal epochs only (at most
// √drift_factor × the level of their time), so that a drift slower than the window cannot raise it and pass.
// By then the last few states are already drifting, so a rollback for a drift goes drift_lookback epoch ends
// back (states the guard keeps in memory: after a resume, no further back than the resumed state).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/backend.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/config.hpp"

namespace ebm {

// What the run can fall back on when it stops diverged (DivergenceGuard::fallback).
struct FallbackFacts {
  double lr = 0;                        // the learning rate now (rollbacks may have lowered it)
  int64_t saved_step = -1;              // the step of the newest checkpoint written (-1: none)
  std::string last;                     // that checkpoint's folder (<output_dir>/last)
  std::optional<std::string> resumed;   // the checkpoint this run resumed from
  int64_t start_step = 0;               // the step the run started from
  bool python_api = false;              // say it as Trainer(...)'s arguments, not ebm_train's flags
  bool before_drift = false;            // `last` is an epoch checkpoint from before a drift, not the newest:
  bool within_lookback = false;         // one of the drift_lookback epochs before the trip (older ones pruned)
};

// The regulariser's running level: the median of the last `window` values of `history` (the previous normal
// epochs' means, oldest first: TrainState::epoch_reg); 0 when fewer than 3 are there (the first epochs fall from
// the random start's level).
double drift_level(const std::vector<double>& history, int window);
// The drift measure: `reg` (an epoch's mean regulariser) over drift_level; 0 where the level is not > 0.
double drift_ratio(const std::vector<double>& history, double reg, int window);

class DivergenceGuard {
 public:
  explicit DivergenceGuard(DivergenceConfig c) : c_(std::move(c)) {}

  // Whether a measure of max |f| (NaN: some f was NaN/inf) passes: finite and <= max_abs_f.
  bool within(double max_abs_f) const;
  // A training step's metrics: false, and why(), when its loss is not finite or its |f| does not pass.
  bool check_step(int64_t step, double loss, double max_abs_f);
  // Records a divergence at `step` (the weights of that step, or its forward pass), found by `where` ("" for the
  // step's own metrics), with max |f| (NaN: some f was NaN/inf).
  void found(int64_t step, const std::string& where, double max_abs_f);
  // The end of epoch `epoch` (1-based) at `step`, whose steps' mean regulariser is `reg`, with `history` the
  // previous epochs' (TrainState::epoch_reg): false, and why(), when drift_factor is on and drift_ratio
  // exceeds it. The rollback after it goes drift_lookback epoch ends back.
  bool check_drift(int64_t step, int64_t epoch, double reg, const std::vector<double>& history);
  // Whether an epoch that passed check_drift is normal, so that its mean joins the level's history: there is
  // no level yet, or its drift_ratio is at most √drift_factor.
  bool normal_epoch(double reg, const std::vector<double>& history) const;
  // An epoch's drift_ratio against `history` where drift_factor is on and there is a level; nullopt otherwise.
  std::optional<double> epoch_drift(double reg, const std::vector<double>& history) const;
  bool drift_on() const { return c_.drift_factor > 0; }
  const std::string& why() const { return why_; }
  int64_t step() const { return step_; }
  void forget() { why_.clear(), drifted_ = false; }  // a divergence that ended nothing (a refused save)

  // `s` passed a forward pass: the newest good state, where a rollback goes. With drift_factor on, the
  // newest drift_lookback epoch-end states (batch 0) are kept too, the first good state (the start, or the
  // resumed state, wherever in its epoch) among them until newer ones push it out.
  void passed(TrainState s);
  const std::optional<TrainState>& good() const { return good_; }

  // After a divergence, with `rollbacks` taken so far: the state to go on from (the newest good one — after a
  // drift, the oldest epoch-end state kept — with rollbacks + 1, and the newest good state's lr × lr_factor and
  // seed + 1000003·(rollbacks + 1)), which becomes the good state; nullopt when
  // the run stops instead (action stop, max_rollbacks reached, no good state, or `may_roll_back` false: a stop
  // asked for is never rolled back).
  std::optional<TrainState> roll_back(int64_t rollbacks, bool may_roll_back);
  // After a drift: the state a rollback goes to (the oldest kept), nullptr otherwise.
  const TrainState* drift_target() const { return drifted_ && !epoch_ends_.empty() ? &epoch_ends_.front() : nullptr; }
  // Whether a run that stops now stops because it used up its rollbacks ("gave up after N rollbacks").
  bool gave_up(bool may_roll_back) const { return may_roll_back && c_.action == "rollback" && good_.has_value(); }
  // What the user can fall back on, said plainly (one line).
  std::string fallback(const FallbackFacts& f) const;

 private:
  DivergenceConfig c_;
  std::string why_;
  int64_t step_ = 0;
  bool drifted_ = false;               // why_ is a drift
  std::optional<TrainState> good_;
  std::vector<TrainState> epoch_ends_;  // drift: the newest drift_lookback good epoch-end states, oldest first
};

// The probe: the next training step's forward pass on the weights `backend` holds now, without the update —
// energies of the first batch_size rows of `train` and of this rank's newest batch_size rows of `buffer` (the
// replay buffer) refined by the training sampler on its own stream (the training streams do not move). This
// rank's max |f| (NaN when any f is); the run adds validation's and takes the maximum over ranks.
// With buffer.per_class (`buffer_classes` not empty), the buffer rows are the classes in turn, each ring's newest,
// refined on their class's energy as training refines them.
double probe_max_abs_f(Backend& backend, const NetSpec& net, const Config& config, const Tensor& train,
                       const Tensor& buffer, const std::vector<int32_t>& buffer_classes, uint64_t seed, int64_t step);

}  // namespace ebm
