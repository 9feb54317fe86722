// The divergence guard alone (host/train/divergence_guard.hpp), driven by scripted step metrics: what passes,
// what it says of a divergence, where rollbacks go (learning rate and seed by hand), when it gives up, and what
// it tells the user to fall back on; the slow drift (drift_ratio) on the epoch means of real JEM runs.
#include <gtest/gtest.h>

#include <cmath>

#include "host/train/divergence_guard.hpp"

namespace ebm {
namespace {

DivergenceConfig rollback_config(int max_rollbacks = 3) {
  DivergenceConfig c;
  c.max_abs_f = 10;
  c.action = "rollback";
  c.lr_factor = 0.5;
  c.max_rollbacks = max_rollbacks;
  return c;
}

TrainState state_at(int64_t step, double lr, uint64_t seed) {
  TrainState s;
  s.step = step;
  s.lr = lr;
  s.seed = seed;
  return s;
}

TEST(DivergenceGuard, BoundsAreFiniteAndAtMostMaxAbsF) {
  const DivergenceGuard g(rollback_config());
  EXPECT_TRUE(g.within(0));
  EXPECT_TRUE(g.within(10));  // the bound itself passes
  EXPECT_FALSE(g.within(10.0001));
  EXPECT_FALSE(g.within(NAN));
  EXPECT_FALSE(g.within(INFINITY));
}

TEST(DivergenceGuard, AScriptedRunOfStepMetrics) {
  DivergenceGuard g(rollback_config());
  // step, loss, max |f|: the first three pass; step 4's |f| is over the bound.
  const double script[][3] = {{1, -0.1, 0.5}, {2, -0.2, 3.0}, {3, -0.3, 9.99}, {4, -0.4, 12.5}};
  int passed = 0;
  for (const auto& m : script) {
    if (!g.check_step(int64_t(m[0]), m[1], m[2])) break;
    ++passed;
  }
  EXPECT_EQ(passed, 3);
  EXPECT_EQ(g.step(), 4);
  EXPECT_EQ(g.why(), "diverged at step 4: |f| reached 12.5 > train.divergence.max_abs_f = 10");
  // A non-finite loss is a divergence whatever |f| says; it is reported as NaN/inf.
  EXPECT_FALSE(g.check_step(7, NAN, 1.0));
  EXPECT_EQ(g.why(), "diverged at step 7: the energy is NaN/inf");
  g.found(9, "validation at the end of epoch 2", 1e5);
  EXPECT_EQ(g.why(), "diverged at step 9 (validation at the end of epoch 2): |f| reached 1e+05 > train.divergence.max_abs_f = 10");
  g.forget();
  EXPECT_EQ(g.why(), "");
}

TEST(DivergenceGuard, RollbacksGoToTheNewestGoodStateWithHalfTheRateAndANewSeed) {
  DivergenceGuard g(rollback_config(3));
  EXPECT_FALSE(g.roll_back(0, true)) << "no good state yet: nothing to go back to";
  g.passed(state_at(0, 0.1, 42));
  g.passed(state_at(4, 0.1, 42));  // the newest good state wins
  // Seeds by hand: 42 + 1000003·1 = 1000045; then 1000045 + 1000003·2 = 3000051; then + 1000003·3 = 6000060
  // (the seeds an ebm_train run with these settings logs).
  const double lr[] = {0.05, 0.025, 0.0125};
  const uint64_t seed[] = {1000045, 3000051, 6000060};
  for (int64_t n = 0; n < 3; ++n) {
    const std::optional<TrainState> back = g.roll_back(n, true);
    ASSERT_TRUE(back) << "rollback " << n + 1;
    EXPECT_EQ(back->step, 4);
    EXPECT_EQ(back->rollbacks, n + 1);
    EXPECT_DOUBLE_EQ(back->lr, lr[n]);
    EXPECT_EQ(back->seed, seed[n]);
    EXPECT_EQ(g.good()->seed, seed[n]) << "the state rolled back to is the good state now";
  }
  EXPECT_FALSE(g.roll_back(3, true)) << "max_rollbacks reached";
  EXPECT_TRUE(g.gave_up(true));
  EXPECT_FALSE(g.gave_up(false));
}

TEST(DivergenceGuard, AStopAskedForOrActionStopNeverRollsBack) {
  DivergenceGuard g(rollback_config());
  g.passed(state_at(2, 0.1, 1));
  EXPECT_FALSE(g.roll_back(0, /*may_roll_back=*/false));
  DivergenceConfig stop = rollback_config();
  stop.action = "stop";
  DivergenceGuard s(stop);
  s.passed(state_at(2, 0.1, 1));
  EXPECT_FALSE(s.roll_back(0, true));
  EXPECT_FALSE(s.gave_up(true)) << "action stop does not give up: it stops";
}

TEST(DivergenceGuard, TheFallbackSaysWhatIsLeft) {
  DivergenceConfig stop = rollback_config();
  stop.action = "stop";
  DivergenceGuard g(stop);
  FallbackFacts f{0.001, 120, "runs/x/last", std::nullopt, 0};
  EXPECT_EQ(g.fallback(f), "the last good checkpoint is runs/x/last (step 120): resume it with a lower learning rate, "
                           "e.g. --resume runs/x/last --set train.lr=0.0005 (or set train.divergence.action=rollback)");
  f.python_api = true;  // a Trainer's DivergedError: the same advice as Trainer's arguments
  EXPECT_EQ(g.fallback(f), "the last good checkpoint is runs/x/last (step 120): resume it with a lower learning rate, "
                           "e.g. Trainer(config, resume=\"runs/x/last\", overrides={\"train.lr\": 0.0005}) (or add "
                           "\"train.divergence.action\": \"rollback\" to the overrides)");
  f.python_api = false;
  f.saved_step = -1;
  EXPECT_EQ(g.fallback(f), "no good checkpoint exists: the starting weights already fail the guard (step 1's forward "
                           "pass); raise train.divergence.max_abs_f or change model.*");
  g.passed(state_at(0, 0.001, 1));
  EXPECT_EQ(g.fallback(f), "no good checkpoint exists yet: the run diverged before its first checkpoint was written; "
                           "try a lower train.lr (now 0.001) or train.divergence.action=rollback");
  f.resumed = "runs/old/epoch_3";
  f.start_step = 300;
  EXPECT_EQ(g.fallback(f), "this run wrote no checkpoint; the one it resumed from, runs/old/epoch_3 (step 300), is "
                           "unchanged; try a lower train.lr (now 0.001) or train.divergence.action=rollback");
  DivergenceGuard fresh(rollback_config());
  EXPECT_EQ(fresh.fallback(f), "this run wrote no checkpoint; the one it resumed from, runs/old/epoch_3 (step 300), is "
                               "unchanged, but its own weights already fail the guard with these settings (the first step "
                               "after resuming diverged): raise train.divergence.max_abs_f or resume an earlier checkpoint");
}

// --- the slow drift (train.divergence.drift_factor) ---

TEST(DivergenceGuard, DriftIsTheEpochRegulariserOverTheMedianOfTheLastWindow) {
  EXPECT_EQ(drift_level({}, 10), 0.0);
  EXPECT_EQ(drift_level({1.0, 0.5}, 10), 0.0) << "fewer than 3 epochs: no level yet";
  EXPECT_EQ(drift_ratio({1.0, 0.5}, 100.0, 10), 0.0);
  EXPECT_DOUBLE_EQ(drift_level({1.04, 0.043, 0.05}, 10), 0.05);  // the random start's epoch 1 does not count
  EXPECT_DOUBLE_EQ(drift_ratio({1.04, 0.043, 0.05}, 0.2, 10), 4.0);
  EXPECT_DOUBLE_EQ(drift_level({9, 9, 1, 2, 3, 4}, 4), 2.5) << "the last 4 only; an even count's middle two";
  EXPECT_DOUBLE_EQ(drift_level({9, 9, 1, 2, 3, 4}, 3), 3.0);
  EXPECT_EQ(drift_ratio({0, 0, 0}, 1.0, 10), 0.0) << "no level (train.alpha 0): never a drift";
}

// The epoch means of the regulariser (rounded to 3 places) of four 70-epoch runs of configs/mnist-jem.json
// (README, JEM): ce_weight 2 seeds 42 (stable to the end) and 43 (drifted from epoch ~52), ce_weight 3
// (drifted from ~33) and 4 (from ~28; stopped at 40).
const std::vector<double> kCe2Seed42 = {
    1.041, 0.043, 0.05,  0.056, 0.055, 0.048, 0.056, 0.057, 0.046, 0.055, 0.052, 0.049, 0.049, 0.05,
    0.046, 0.045, 0.046, 0.039, 0.043, 0.043, 0.044, 0.045, 0.041, 0.04,  0.04,  0.044, 0.046, 0.042,
    0.039, 0.033, 0.031, 0.037, 0.046, 0.036, 0.039, 0.042, 0.049, 0.054, 0.04,  0.048, 0.042, 0.05,
    0.044, 0.046, 0.038, 0.04,  0.035, 0.036, 0.054, 0.051, 0.055, 0.047, 0.05,  0.045, 0.049, 0.047,
    0.049, 0.036, 0.047, 0.046, 0.038, 0.053, 0.041, 0.038, 0.037, 0.059, 0.076, 0.074, 0.07,  0.068};
const std::vector<double> kCe2Seed43 = {
    0.939, 0.038, 0.058, 0.05,  0.056, 0.054, 0.052, 0.057, 0.055, 0.062, 0.053, 0.055, 0.043, 0.045,
    0.044, 0.039, 0.043, 0.039, 0.035, 0.034, 0.038, 0.04,  0.036, 0.043, 0.047, 0.044, 0.041, 0.035,
    0.034, 0.037, 0.03,  0.048, 0.049, 0.045, 0.038, 0.051, 0.041, 0.038, 0.054, 0.047, 0.038, 0.053,
    0.047, 0.044, 0.041, 0.044, 0.058, 0.053, 0.058, 0.062, 0.066, 0.1,   0.094, 0.137, 0.217, 0.31,
    0.384, 0.518, 0.607, 0.711, 0.874, 0.886, 1.035};
const std::vector<double> kCe3 = {
    1.208, 0.096, 0.101, 0.097, 0.081, 0.077, 0.092, 0.081, 0.068, 0.067, 0.071, 0.077, 0.062, 0.06,
    0.056, 0.051, 0.057, 0.057, 0.061, 0.06,  0.051, 0.049, 0.05,  0.046, 0.05,  0.064, 0.069, 0.054,
    0.064, 0.069, 0.073, 0.077, 0.094, 0.102, 0.267, 0.423, 0.67,  0.997, 1.314, 1.604};
const std::vector<double> kCe4 = {
    1.34,  0.162, 0.139, 0.138, 0.108, 0.101, 0.104, 0.098, 0.096, 0.098, 0.09,  0.095, 0.078, 0.07,
    0.086, 0.071, 0.079, 0.074, 0.075, 0.077, 0.075, 0.081, 0.078, 0.068, 0.069, 0.097, 0.093, 0.111,
    0.113, 0.271, 0.539, 0.803, 1.079, 1.452};

// The first epoch (1-based) whose mean the guard calls a drift, or 0 for none, feeding it epoch by epoch.
int64_t first_drift(const std::vector<double>& regs, double factor) {
  DivergenceConfig c = rollback_config();
  c.drift_factor = factor;
  DivergenceGuard g(c);
  std::vector<double> history;
  for (size_t i = 0; i < regs.size(); ++i) {
    if (!g.check_drift(int64_t(i + 1) * 71, int64_t(i + 1), regs[i], history)) return int64_t(i + 1);
    if (g.normal_epoch(regs[i], history)) history.push_back(regs[i]);
  }
  return 0;
}

TEST(DivergenceGuard, TheDriftFactorOfTheJemRecipeCatchesEveryMeasuredDriftAndNoStableRun) {
  // drift_factor 2.5, window 10: the stable run's highest ratio is 1.75 (epoch 67: 0.076 over 0.0435).
  EXPECT_EQ(first_drift(kCe2Seed42, 2.5), 0);
  // Seed 43's epochs 52 and 53 (0.1 and 0.094, 1.9x and 1.8x) are above √2.5 = 1.58x: not normal, they stay out
  // of the level, and epoch 54 trips (0.137 over 0.0531: 2.58x). Counted in, they would raise the level and put
  // the trip off to epoch 55.
  EXPECT_EQ(first_drift(kCe2Seed43, 2.5), 54);
  EXPECT_EQ(first_drift(kCe3, 2.5), 35);  // 0.267 over 0.069:  3.87x
  EXPECT_EQ(first_drift(kCe4, 2.5), 30);  // 0.271 over 0.0792: 3.43x
  EXPECT_EQ(first_drift(kCe2Seed42, 1.7), 67) << "a factor below the stable run's 1.75 trips it";
  DivergenceConfig off = rollback_config();  // drift_factor 0: never
  DivergenceGuard g(off);
  EXPECT_TRUE(g.check_drift(2485, 35, 0.267, {0.05, 0.05, 0.05}));
}

TEST(DivergenceGuard, ADriftSaysWhatRoseAndRollsBackDriftLookbackEpochEnds) {
  DivergenceConfig c = rollback_config();
  c.drift_factor = 2.5;
  c.drift_lookback = 3;
  DivergenceGuard g(c);
  // Epoch ends 30..34 (71 steps each) with states between them: the last 3 epoch ends are kept.
  for (int64_t e = 30; e <= 34; ++e) {
    TrainState end = state_at(e * 71, 0.1, 42);
    end.epoch = e;
    end.batch = 0;
    g.passed(end);
    TrainState mid = state_at(e * 71 + 50, 0.1, 42);
    mid.epoch = e;
    mid.batch = 50;
    g.passed(mid);
  }
  const std::vector<double> history(kCe3.begin(), kCe3.begin() + 34);
  EXPECT_FALSE(g.check_drift(35 * 71, 35, kCe3[34], history));
  EXPECT_EQ(g.why(), "drifted at step 2485 (the end of epoch 35): the regulariser's epoch mean 0.267 is 3.87x its "
                     "level 0.069 (the median of the last 10 normal epochs) > train.divergence.drift_factor = 2.5: the "
                     "real and sampled energies are parting");
  ASSERT_NE(g.drift_target(), nullptr);
  EXPECT_EQ(g.drift_target()->epoch, 32);
  const std::optional<TrainState> back = g.roll_back(0, true);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->step, 32 * 71) << "the end of epoch 32, three epoch ends back, not the newest good state (34·71+50)";
  EXPECT_EQ(back->rollbacks, 1);
  EXPECT_DOUBLE_EQ(back->lr, 0.05);
  EXPECT_EQ(back->seed, 1000045u);
  EXPECT_EQ(g.good()->step, 32 * 71);
  EXPECT_EQ(g.drift_target(), nullptr) << "the drift is handled";
  // An ordinary divergence after it goes to the newest good state again.
  TrainState later = state_at(32 * 71 + 10, 0.05, 1000045);
  later.batch = 10;
  g.passed(later);
  g.found(32 * 71 + 11, "", NAN);
  EXPECT_EQ(g.roll_back(1, true)->step, 32 * 71 + 10);
  // A drift found now goes back no further than what is kept: epoch ends after the rollback target are gone.
  EXPECT_FALSE(g.check_drift(33 * 71, 33, 1.0, history));
  EXPECT_EQ(g.roll_back(2, true)->step, 32 * 71);
}

TEST(DivergenceGuard, TheFirstGoodStateIsKeptForADriftSoonAfterIt) {
  // A resumed state in the middle of epoch 40: a drift at the end of epoch 42 goes back to it (the epoch
  // ends 40 and 41 are newer), not to the newest good state.
  DivergenceConfig c = rollback_config();
  c.drift_factor = 2.5;
  DivergenceGuard g(c);
  TrainState resumed = state_at(40 * 71 + 30, 0.1, 42);
  resumed.epoch = 40, resumed.batch = 30;
  g.passed(resumed);
  for (int64_t e = 41; e <= 42; ++e) {
    TrainState end = state_at(e * 71, 0.1, 42);
    end.epoch = e, end.batch = 0;
    g.passed(end);
    TrainState mid = state_at(e * 71 + 5, 0.1, 42);
    mid.epoch = e, mid.batch = 5;
    g.passed(mid);
  }
  EXPECT_FALSE(g.check_drift(43 * 71, 43, 1.0, {0.1, 0.1, 0.1}));
  ASSERT_NE(g.drift_target(), nullptr);
  EXPECT_EQ(g.drift_target()->step, 40 * 71 + 30);
  EXPECT_EQ(g.roll_back(0, true)->step, 40 * 71 + 30);
}

TEST(DivergenceGuard, OnlyNormalEpochsJoinTheLevel) {
  DivergenceConfig c = rollback_config();
  c.drift_factor = 4;  // normal: at most √4 = 2x the level
  DivergenceGuard g(c);
  EXPECT_TRUE(g.normal_epoch(9.0, {1.0, 1.0})) << "no level yet: every epoch is normal";
  EXPECT_TRUE(g.normal_epoch(2.0, {1.0, 1.0, 1.0}));
  EXPECT_FALSE(g.normal_epoch(2.01, {1.0, 1.0, 1.0}));
  EXPECT_TRUE(g.check_drift(1, 4, 3.99, {1.0, 1.0, 1.0})) << "not normal, but no drift either";
  EXPECT_FALSE(g.check_drift(1, 4, 4.01, {1.0, 1.0, 1.0}));
}

TEST(DivergenceGuard, AfterADriftTheFallbackNamesTheCheckpointFromBeforeIt) {
  DivergenceConfig stop = rollback_config();
  stop.action = "stop";
  DivergenceGuard g(stop);
  FallbackFacts f{0.001, 2272, "runs/x/epoch_32", std::nullopt, 0};
  f.before_drift = true;
  EXPECT_EQ(g.fallback(f), "the newest checkpoint from before the drift is runs/x/epoch_32 (step 2272): resume it with "
                           "a lower learning rate, e.g. --resume runs/x/epoch_32 --set train.lr=0.0005 (or set "
                           "train.divergence.action=rollback)");
  f.within_lookback = true;
  EXPECT_EQ(g.fallback(f), "the earliest checkpoint kept from before the drift (within train.divergence.drift_lookback "
                           "epochs of it: train.keep_checkpoints pruned older ones) is runs/x/epoch_32 (step 2272): "
                           "resume it with a lower learning rate, e.g. --resume runs/x/epoch_32 --set train.lr=0.0005 "
                           "(or set train.divergence.action=rollback)");
}

}  // namespace
}  // namespace ebm
