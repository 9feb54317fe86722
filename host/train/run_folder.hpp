// The run folder (a run's output_dir): whether this run may write there (checks that write nothing), its
// lock, the half-written checkpoints a killed run left, which epoch_<N>/ checkpoints stay
// (train.keep_checkpoints), and its size at the end. One folder, one run: TrainingRun (host/train/
// training_run.hpp) holds one RunFolder on every rank, and rank 0 alone checks, locks and writes it.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "host/train/advice.hpp"

namespace ebm {

// A checkpoint folder's name in a run folder: "last" or "epoch_<N>" (N decimal, at most 18 digits).
bool is_checkpoint_name(std::string_view name);
// The epoch_<N>/ checkpoints in `dir`, oldest first.
std::vector<std::pair<int64_t, std::filesystem::path>> epoch_checkpoints(const std::filesystem::path& dir);
// What in `dir` makes it a run's folder ("last/, epoch_2/, metrics.jsonl"), or "" when nothing does. An empty
// metrics.jsonl does not count (a run dropped before its first record).
std::string run_contents(const std::filesystem::path& dir);
// That `dir` is, or can be made, a writable directory — without writing anything: a run refused later (a bad
// resume, missing data) must leave no trace. UserError naming output_dir otherwise.
void check_output_dir(const std::filesystem::path& dir);

class RunFolder {
 public:
  // `advice`: how refusals say what to do (ebm_train's flags, or a Trainer's arguments).
  explicit RunFolder(std::filesystem::path dir, Advice advice = {}) : dir_(std::move(dir)), advice_(advice) {}
  ~RunFolder() { unlock(); }
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

  const std::filesystem::path& path() const { return dir_; }
  std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }

  // Before anything is written: what the folder holds fits what this run does (`resume`: the checkpoint
  // resumed, if any). A checkpoint is not a run folder; the checkpoint resumed is not written into; a folder
  // holding a run takes only a resume of its own checkpoints (a fresh run, or another run's checkpoint, would
  // mix two runs in it). A folder another run holds the lock of is "in use" before anything else is said of it
  // (its metrics.jsonl would otherwise read as a run that wrote no checkpoint). UserError saying what to do otherwise.
  void check_role(const std::optional<std::string>& resume) const;
  // Where Training::save may write: a new (or empty) folder of its own, not over a file or a folder holding
  // anything, not the run folder or a folder above it, not one of the run's own checkpoint names.
  void check_save_target(const std::string& dir) const;

  // The first write: creates the folder, takes its lock, and removes what a killed run left half-written
  // (<name>.tmp.<pid> of a process gone; <name>.old beside its <name>). Returns the names removed.
  std::vector<std::string> prepare();
  // An exclusive flock on <dir>/.lock from the first write until the run ends: a second run writing the same
  // folder would interleave two histories. The file stays; the lock goes with unlock() (or the process).
  void lock();
  void unlock();

  // Drops the oldest epoch_<N>/ beyond the newest `keep` (0: all kept) up to epoch `newest`. Later-numbered
  // folders are from a history a resume abandoned: not counted, and replaced when the run gets there.
  void prune(int64_t newest, int keep) const;
  // "run folder DIR: 22.2 MB (last/ and 2 epoch checkpoints; train.keep_checkpoints = 2)".
  std::string size_report(int keep) const;

 private:
  [[noreturn]] void fail_in_use() const;  // "output_dir ... is in use by another training run ..."

  std::filesystem::path dir_;
  Advice advice_;
  int lock_fd_ = -1;
};

}  // namespace ebm
