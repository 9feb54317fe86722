// Learning-rate schedules (host/train/lr_schedule.hpp) on hand-computed values, and their config keys.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "engine/error.hpp"
#include "host/io/config.hpp"
#include "host/train/lr_schedule.hpp"

namespace ebm {
namespace {

TrainConfig schedule(const std::string& kind, int64_t warmup = 0) {
  TrainConfig t;
  t.lr_schedule = kind;
  t.lr_warmup_steps = warmup;
  return t;
}

TEST(LrSchedule, ConstantIsOneEverywhere) {
  const TrainConfig t = schedule("constant");
  for (int64_t s : {0, 1, 99, 100000}) EXPECT_EQ(lr_factor(t, s, s / 71, 1000), 1.0);
}

TEST(LrSchedule, WarmupRampsLinearlyFromOneOverW) {
  const TrainConfig t = schedule("constant", 4);
  EXPECT_DOUBLE_EQ(lr_factor(t, 0, 0, 100), 0.25);  // (0+1)/4
  EXPECT_DOUBLE_EQ(lr_factor(t, 1, 0, 100), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor(t, 2, 0, 100), 0.75);
  EXPECT_DOUBLE_EQ(lr_factor(t, 3, 0, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor(t, 50, 0, 100), 1.0);
}

TEST(LrSchedule, StepMultipliesByGammaEveryNEpochs) {
  TrainConfig t = schedule("step");
  t.lr_gamma = 0.5;
  t.lr_step_epochs = 3;
  EXPECT_DOUBLE_EQ(lr_factor(t, 10, 0, 1000), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor(t, 10, 2, 1000), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor(t, 10, 3, 1000), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor(t, 10, 5, 1000), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor(t, 10, 6, 1000), 0.25);
  EXPECT_DOUBLE_EQ(lr_factor(t, 10, 9, 1000), 0.125);
}

TEST(LrSchedule, CosineFromOneToTheFloorAfterWarmup) {
  TrainConfig t = schedule("cosine", 10);
  t.lr_min_factor = 0.1;
  // T = 110, W = 10: p = (t − 10)/100.
  EXPECT_DOUBLE_EQ(lr_factor(t, 4, 0, 110), 0.5);  // warm-up (4+1)/10, cosine still at 1
  EXPECT_DOUBLE_EQ(lr_factor(t, 10, 0, 110), 1.0);
  EXPECT_NEAR(lr_factor(t, 60, 0, 110), 0.1 + 0.9 * 0.5, 1e-12);  // p = ½: cos(π/2) = 0
  EXPECT_NEAR(lr_factor(t, 35, 0, 110), 0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi / 4)), 1e-12);
  EXPECT_NEAR(lr_factor(t, 110, 0, 110), 0.1, 1e-12);
  EXPECT_NEAR(lr_factor(t, 500, 0, 110), 0.1, 1e-12);  // past the plan (a resume with fewer epochs): the floor
}

TEST(LrSchedule, ConfigKeysAreCheckedWithTheirPath) {
  auto error_of = [](const std::string& text) {
    try {
      (void)config_from_text(text, "c.json");
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of(R"({"train": {"lr_schedule": "linear"}})").find("\"train.lr_schedule\" must be one of constant, step, cosine"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"train": {"lr_gamma": 0}})").find("train.lr_gamma"), std::string::npos);
  EXPECT_NE(error_of(R"({"train": {"lr_gamma": 1.5}})").find("train.lr_gamma"), std::string::npos);
  EXPECT_NE(error_of(R"({"train": {"lr_step_epochs": 0}})").find("train.lr_step_epochs"), std::string::npos);
  EXPECT_NE(error_of(R"({"train": {"lr_warmup_steps": -1}})").find("train.lr_warmup_steps"), std::string::npos);
  EXPECT_NE(error_of(R"({"train": {"lr_min_factor": 2}})").find("train.lr_min_factor"), std::string::npos);
  EXPECT_NE(error_of(R"({"train": {"eval": {"every": -1}}})").find("train.eval.every"), std::string::npos);
  EXPECT_NE(error_of(R"({"train": {"eval": {"n": 1}}})").find("train.eval.n"), std::string::npos);
  const Config c = config_from_text(R"({"train": {"lr_schedule": "cosine", "lr_warmup_steps": 50, "eval": {"every": 2}}})", "c.json");
  EXPECT_EQ(c.train.lr_schedule, "cosine");
  EXPECT_EQ(c.train.lr_warmup_steps, 50);
  EXPECT_EQ(c.train.eval.every, 2);
  EXPECT_EQ(c.train.eval.n, 1000);
}

}  // namespace
}  // namespace ebm
