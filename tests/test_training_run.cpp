// ebm_train's run end to end on a tiny net and data set: exact resume, the divergence guard, and the
// bad inputs that must fail with one clear message and leave existing checkpoints untouched.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "host/checkpoint.hpp"
#include "host/idx.hpp"
#include "host/training_run.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;
using namespace ebm;

namespace {

using test::slurp;

class TrainingRunTest : public ::testing::Test {
 protected:

  Config config(const std::string& out) const {
    Config c;
    c.output_dir = (root_ / out).string();
    c.data.dir = (root_ / "data").string();
    c.data.batch_size = 16;  // 40 images: batches of 16, 16 and a partial 8
    c.model.channels = {4, 8};
    c.sampler.steps = 3;
    c.buffer.capacity = 64;
    c.buffer.initial = 16;
    c.train.epochs = 3;
    c.train.log_every = 1;
    c.generate.n = 4;
    c.generate.steps = 3;
    c.backend = "cpu";
    return c;
  }

  int run(const Config& c, const std::string& resume = "") {
    TrainRunOptions o;
    o.config = c;
    o.resume = resume;
    return run_training(o);
  }

  test::TinyDataRoot tmp_;
  const fs::path& root_ = tmp_.path;
};

}  // namespace

TEST_F(TrainingRunTest, ResumeIsBitExactAcrossAnEpochBoundary) {
  Config straight = config("straight");
  straight.train.max_steps = 5;
  ASSERT_EQ(run(straight), 0);
  Config part = config("parts");
  part.train.max_steps = 2;
  ASSERT_EQ(run(part), 0);
  part.train.max_steps = 5;  // 3 steps per epoch: the resumed part crosses into epoch 2
  ASSERT_EQ(run(part, (root_ / "parts/last").string()), 0);
  EXPECT_EQ(slurp(root_ / "straight/last/model.safetensors"), slurp(root_ / "parts/last/model.safetensors"));
  EXPECT_EQ(slurp(root_ / "straight/last/train_state.safetensors"), slurp(root_ / "parts/last/train_state.safetensors"));
  EXPECT_EQ(slurp(root_ / "straight/epoch_1/model.safetensors"), slurp(root_ / "parts/epoch_1/model.safetensors"));
  EXPECT_TRUE(fs::exists(root_ / "parts/samples/epoch_1.png"));
  EXPECT_TRUE(fs::exists(root_ / "parts/config.json"));
}

TEST_F(TrainingRunTest, CheckpointLoadsBackWithPyTorchNames) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  const Model m = load_model((root_ / "run/last").string());
  EXPECT_EQ(m.config.model.channels, (std::vector<int>{4, 8}));
  EXPECT_EQ(int64_t(m.params.size()), m.net.num_params);
  const TrainState s = load_train_state((root_ / "run/last").string(), m.net);
  EXPECT_EQ(s.step, 1);
  EXPECT_EQ(s.adam.t, 1);
  EXPECT_EQ(s.buffer.dim(0), 16 + 16) << "initial images plus one written-back batch";
}

TEST_F(TrainingRunTest, DivergenceStopsAndKeepsTheLastGoodCheckpoint) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  c.train.max_steps = 4;
  c.train.divergence.max_abs_f = 1e-12;  // any energy "diverges"
  EXPECT_EQ(run(c, (root_ / "run/last").string()), kRunDiverged);
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
  EXPECT_NE(slurp(root_ / "run/metrics.jsonl").find("\"event\":\"diverged\""), std::string::npos);
}

TEST_F(TrainingRunTest, RollbackLowersTheLearningRateThenGivesUp) {
  Config c = config("run");
  c.train.max_steps = 3;
  c.train.divergence.max_abs_f = 1e-12;
  c.train.divergence.action = "rollback";
  c.train.divergence.max_rollbacks = 2;
  EXPECT_EQ(run(c), kRunDiverged);
  const std::string log = slurp(root_ / "run/metrics.jsonl");
  size_t n = 0;
  for (size_t p = log.find("\"event\":\"rollback\""); p != std::string::npos; p = log.find("\"event\":\"rollback\"", p + 1)) ++n;
  EXPECT_EQ(n, 2u);
  EXPECT_NE(log.find("\"lr\":2.5e-05"), std::string::npos) << "1e-4 halved twice";
}

TEST_F(TrainingRunTest, MissingDataNamesTheFetchCommand) {
  Config c = config("run");
  c.data.dir = (root_ / "nowhere").string();
  try {
    run(c);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("scripts/get_data.sh"), std::string::npos) << e.what();
  }
}

TEST_F(TrainingRunTest, ExistingRunIsNotOverwrittenWithoutResume) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  try {
    run(c);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
}

TEST_F(TrainingRunTest, ResumeWithAnotherNetworkNamesTheTensor) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  c.model.channels = {4, 16};
  c.train.max_steps = 2;
  try {
    run(c, (root_ / "run/last").string());
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("convs.1.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("[8,4,3,3]"), std::string::npos) << m;
  }
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
}

TEST_F(TrainingRunTest, CorruptOrMissingCheckpointFailsClearly) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  fs::resize_file(root_ / "run/last/train_state.safetensors", 100);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  c.train.max_steps = 2;
  EXPECT_THROW(run(c, (root_ / "run/last").string()), UserError);
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
  try {
    run(c, (root_ / "no_such_checkpoint").string());
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_checkpoint"), std::string::npos);
  }
}

TEST_F(TrainingRunTest, UnwritableOutputDirFailsClearly) {
  std::ofstream(root_ / "a_file") << "x";
  Config c = config("a_file/run");  // a directory below a regular file cannot be created
  try {
    run(c);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("output_dir"), std::string::npos) << e.what();
  }
}
