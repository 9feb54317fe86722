// The divergence guard alone (host/train/divergence_guard.hpp), driven by scripted step metrics: what passes,
// what it says of a divergence, where rollbacks go (learning rate and seed by hand), when it gives up, and what
// it tells the user to fall back on.
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

}  // namespace
}  // namespace ebm
