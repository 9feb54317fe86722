// The run folder alone (host/train/run_folder.hpp), with planted folders: which runs may write where, what a
// killed run left and is removed, the lock, pruning, and the size line.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "engine/error.hpp"
#include "host/train/run_folder.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;

namespace ebm {
namespace {

void plant_file(const fs::path& p, const std::string& bytes = "x") {
  fs::create_directories(p.parent_path());
  test::spit(p, bytes);
}

TEST(RunFolder, CheckpointNames) {
  EXPECT_TRUE(is_checkpoint_name("last"));
  EXPECT_TRUE(is_checkpoint_name("epoch_0"));
  EXPECT_TRUE(is_checkpoint_name("epoch_123456789012345678"));
  EXPECT_FALSE(is_checkpoint_name("epoch_1234567890123456789")) << "19 digits do not fit an int64";
  EXPECT_FALSE(is_checkpoint_name("epoch_"));
  EXPECT_FALSE(is_checkpoint_name("epoch_-1"));
  EXPECT_FALSE(is_checkpoint_name("epoch_2x"));
  EXPECT_FALSE(is_checkpoint_name("last2"));
}

TEST(RunFolder, WhatMayBeWrittenWhere) {
  test::TempDir tmp("ebm_run_folder");
  const fs::path run = tmp.path / "run";
  // A new folder, or one without a run's files, takes a fresh run; an empty metrics.jsonl is no history.
  EXPECT_NO_THROW(RunFolder(run).check_role(std::nullopt));
  plant_file(run / "metrics.jsonl", "");
  EXPECT_NO_THROW(RunFolder(run).check_role(std::nullopt));
  // A checkpoint is not a run folder.
  plant_file(tmp.path / "ck/model.safetensors");
  test::expect_user_error([&] { RunFolder(tmp.path / "ck").check_role(std::nullopt); }, {"is a checkpoint (it holds model.safetensors)"});
  // A folder holding a run takes only a resume of its own checkpoints.
  plant_file(run / "last/model.safetensors");
  plant_file(run / "epoch_2/model.safetensors");
  test::expect_user_error([&] { RunFolder(run).check_role(std::nullopt); },
                          {"already holds a run (last/, epoch_2/); continue it with --resume " + (run / "last").string()});
  EXPECT_NO_THROW(RunFolder(run).check_role((run / "epoch_2").string()));
  plant_file(tmp.path / "other/last/model.safetensors");
  test::expect_user_error([&] { RunFolder(run).check_role((tmp.path / "other/last").string()); }, {"already holds another run"});
  // The checkpoint resumed is never written into.
  test::expect_user_error([&] { RunFolder(run / "last/inner").check_role((run / "last").string()); }, {"is inside the checkpoint being resumed"});
  // Not over a file; not where it cannot be made.
  plant_file(tmp.path / "file");
  test::expect_user_error([&] { check_output_dir(tmp.path / "file"); }, {"exists and is not a directory"});
  test::expect_user_error([&] { check_output_dir(tmp.path / "file/sub"); }, {"is not a directory"});
}

TEST(RunFolder, SaveTargetsAreNewFoldersOfTheirOwn) {
  test::TempDir tmp("ebm_run_folder");
  const RunFolder f(tmp.path / "run");
  fs::create_directories(tmp.path / "run");
  test::expect_user_error([&] { f.check_save_target(""); }, {"path is empty"});
  test::expect_user_error([&] { f.check_save_target((tmp.path / "run").string()); }, {"is the run folder or holds it"});
  test::expect_user_error([&] { f.check_save_target(tmp.path.string()); }, {"is the run folder or holds it"});
  test::expect_user_error([&] { f.check_save_target((tmp.path / "run/epoch_3").string()); }, {"the run writes its own epoch_3/"});
  plant_file(tmp.path / "full/a");
  test::expect_user_error([&] { f.check_save_target((tmp.path / "full").string()); }, {"already holds files"});
  EXPECT_NO_THROW(f.check_save_target((tmp.path / "run/mine").string()));
}

TEST(RunFolder, PrepareRemovesWhatAKilledRunLeftHalfWritten) {
  test::TempDir tmp("ebm_run_folder");
  const fs::path run = tmp.path / "run";
  const std::string gone = "2147483646";  // above any pid_max
  for (const std::string& d : std::vector<std::string>{"last.tmp." + gone, "epoch_3.tmp." + gone, "last.tmp.1", "notes.tmp." + gone,
                               "last.tmp." + std::to_string(getpid()), "epoch_2.old", "epoch_4.old"})
    plant_file(run / d / "x");
  plant_file(run / "epoch_2/model.safetensors");  // epoch_2.old is a leftover beside it; epoch_4.old is the only copy
  RunFolder f(run);
  std::vector<std::string> removed = f.prepare();
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{"epoch_2.old", "epoch_3.tmp." + gone, "last.tmp." + gone}));
  EXPECT_TRUE(fs::exists(run / "last.tmp.1")) << "pid 1 runs: its writer may still be at work";
  EXPECT_TRUE(fs::exists(run / ("last.tmp." + std::to_string(getpid())))) << "this process's own";
  EXPECT_TRUE(fs::exists(run / ("notes.tmp." + gone))) << "not a checkpoint's staging folder";
  EXPECT_TRUE(fs::exists(run / "epoch_4.old")) << "the only copy left of epoch_4";
  EXPECT_TRUE(fs::exists(run / ".lock"));
}

TEST(RunFolder, OneRunWritesAFolderAtATime) {
  test::TempDir tmp("ebm_run_folder");
  RunFolder a(tmp.path / "run"), b(tmp.path / "run");
  a.prepare();
  test::expect_user_error([&] { b.prepare(); }, {"is in use by another training run"});
  a.unlock();
  EXPECT_NO_THROW(b.prepare();) << "the lock goes with the run";
}

TEST(RunFolder, PruningKeepsTheNewestEpochsOfThisHistoryAndTheSizeIsSaid) {
  test::TempDir tmp("ebm_run_folder");
  RunFolder f(tmp.path / "run");
  f.prepare();
  for (int e : {1, 2, 3, 4, 7}) plant_file(f.path() / ("epoch_" + std::to_string(e)) / "model.safetensors", std::string(1000, 'w'));
  f.prune(4, 2);  // this history is at epoch 4; epoch_7 is from one a resume abandoned
  std::vector<int64_t> left;
  for (const auto& [n, p] : epoch_checkpoints(f.path())) left.push_back(n);
  EXPECT_EQ(left, (std::vector<int64_t>{3, 4, 7}));
  f.prune(4, 0);  // 0: all kept
  EXPECT_EQ(epoch_checkpoints(f.path()).size(), 3u);
  EXPECT_EQ(f.size_report(2), "run folder " + f.path().string() + ": 3 kB (3 epoch checkpoints; train.keep_checkpoints = 2)");
  plant_file(f.path() / "last/model.safetensors", std::string(1000, 'w'));
  EXPECT_EQ(f.size_report(0), "run folder " + f.path().string() + ": 4 kB (last/ and 3 epoch checkpoints; "
                              "train.keep_checkpoints = 0, all kept)");
  EXPECT_EQ(run_contents(f.path()), "last/, epoch_3/, epoch_4/, epoch_7/");
}

}  // namespace
}  // namespace ebm
