// The checkpoint keeper alone (host/train/checkpoint_keeper.hpp), driven by a scripted sequence of steps:
// checkpoints wait for the next step's verdict, are written under every name wanted of them once it passes,
// are dropped when it does not, and epoch folders beyond train.keep_checkpoints go.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/communicator.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "host/train/checkpoint_keeper.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;

namespace ebm {
namespace {

class CheckpointKeeperTest : public ::testing::Test {
 protected:
  CheckpointKeeperTest() : folder_(tmp_.path / "run") {
    config_.model.channels = {4, 8};
    config_.buffer.capacity = 16;
    config_.buffer.initial = 4;
    config_.train.keep_checkpoints = 2;
    net_ = net_spec_for(config_);
    backend_ = std::make_unique<CpuBackend>(engine_options_for(config_));
    folder_.prepare();
  }

  // The state at `step` (the backend's tensors; the counters say which step it is).
  TrainState state_at(int64_t step) {
    ++snapshots_;
    TrainState s = test::state_of(*backend_, config_);
    s.step = step;
    return s;
  }
  bool written(const std::string& name) const { return fs::exists(folder_.path() / name / "train_state.safetensors"); }

  test::TempDir tmp_{"ebm_keeper"};
  Config config_;
  NetSpec net_;
  std::unique_ptr<CpuBackend> backend_;
  SingleProcessCommunicator comm_;
  RunFolder folder_;
  int snapshots_ = 0;
};

TEST_F(CheckpointKeeperTest, ACheckpointWaitsForTheNextStepsVerdict) {
  CheckpointKeeper k(&folder_, net_, config_, comm_);
  k.await(state_at(0));  // the starting state: good once step 1 passes, written nowhere
  EXPECT_TRUE(k.awaiting(1));
  std::optional<TrainState> good = k.passed(1);
  ASSERT_TRUE(good);
  EXPECT_EQ(good->step, 0);
  EXPECT_FALSE(written("last"));
  EXPECT_EQ(k.saved_step(), -1);

  // An epoch ends at step 2: epoch_1/ and last/ are wanted; a checkpoint_every at the same step adds a name
  // without a second snapshot.
  const int before = snapshots_;
  k.want(2, {"epoch_1", "last"}, [&] { return state_at(2); });
  k.want(2, {"last", "extra"}, [&] { return state_at(2); });
  EXPECT_EQ(snapshots_, before + 1);
  EXPECT_FALSE(k.awaiting(2));
  EXPECT_TRUE(k.awaiting(3));
  EXPECT_FALSE(k.passed(2)) << "step 2's own forward pass checked step 1's weights, not these";
  EXPECT_FALSE(written("last"));
  good = k.passed(3);
  ASSERT_TRUE(good);
  EXPECT_EQ(good->step, 2);
  for (const char* name : {"epoch_1", "last", "extra"}) EXPECT_TRUE(written(name)) << name;
  EXPECT_EQ(load_train_state((folder_.path() / "last").string(), net_).step, 2);
  EXPECT_EQ(k.saved_step(), 2);
  EXPECT_FALSE(k.passed(4)) << "nothing waits any more";
}

TEST_F(CheckpointKeeperTest, WhatADivergedStepWouldHaveCheckedIsNeverWritten) {
  CheckpointKeeper k(&folder_, net_, config_, comm_);
  k.want(5, {"epoch_2", "last"}, [&] { return state_at(5); });
  k.drop();  // step 6 diverged
  EXPECT_FALSE(k.awaiting(6));
  EXPECT_FALSE(k.passed(6));
  EXPECT_FALSE(written("epoch_2"));
  EXPECT_FALSE(written("last"));
  EXPECT_EQ(k.saved_step(), -1);
}

TEST_F(CheckpointKeeperTest, TheRunsEndWritesWhatWasWantedOfItsLastState) {
  CheckpointKeeper k(&folder_, net_, config_, comm_);
  k.want(8, {"epoch_4", "last"}, [&] { return state_at(8); });
  EXPECT_EQ(k.take(8), std::vector<std::string>{"epoch_4"}) << "last is the end's own name";
  EXPECT_TRUE(k.take(8).empty());
  k.want(8, {"last"}, [&] { return state_at(8); });
  EXPECT_THROW(k.take(9), Error) << "a checkpoint wanted of another step than the end's is a bug";
}

TEST_F(CheckpointKeeperTest, EpochFoldersBeyondKeepCheckpointsGo) {
  CheckpointKeeper k(&folder_, net_, config_, comm_);
  fs::create_directories(folder_.path() / "epoch_9");  // a later epoch of a history a resume abandoned
  for (int e = 1; e <= 4; ++e) k.write(state_at(e * 10), {"epoch_" + std::to_string(e), "last"});
  EXPECT_FALSE(fs::exists(folder_.path() / "epoch_1"));
  EXPECT_FALSE(fs::exists(folder_.path() / "epoch_2"));
  EXPECT_TRUE(written("epoch_3"));
  EXPECT_TRUE(written("epoch_4"));
  EXPECT_TRUE(fs::exists(folder_.path() / "epoch_9")) << "not of this history: not counted, not removed";
  EXPECT_EQ(k.saved_step(), 40);
}

}  // namespace
}  // namespace ebm
