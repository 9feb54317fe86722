// The checkpoint keeper: checkpoints of a run's states, written only once the guard has passed them. A
// checkpoint wanted at step N (an epoch end, train.checkpoint_every, the run's end) waits in memory for the
// next step's forward pass (step N+1's metrics); when it passes, the state is written under each name wanted
// of it (save_checkpoint: staged, then renamed into place) and is the guard's newest good state; when it
// diverges, it is dropped. Writing gathers every rank's replay-buffer shard and RNG state to rank 0, and the
// epoch_<N>/ folders beyond train.keep_checkpoints go.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/communicator.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/config.hpp"
#include "host/train/run_folder.hpp"

namespace ebm {

class CheckpointKeeper {
 public:
  // `folder`: the run folder (rank 0 writes into it; the other ranks only send rank 0 their state);
  // `config`: the run's (saved as config.json).
  CheckpointKeeper(RunFolder* folder, const NetSpec& net, const Config& config, Communicator& comm)
      : folder_(folder), net_(net), config_(config), comm_(comm) {}

  // The starting state: good once its first step's forward pass passes; nothing is written of it.
  void await(TrainState s);
  // Checkpoints `names` of the state at `step` once the next step's forward pass has checked it. A state
  // already waiting at `step` takes the names too (snapshot() is not called again).
  void want(int64_t step, std::vector<std::string> names, const std::function<TrainState()>& snapshot);
  // Whether a state waits for step `step`'s forward pass (it is the state of step − 1).
  bool awaiting(int64_t step) const { return waiting_ && pending_.state.step == step - 1; }
  // Step `step`'s forward pass passed the guard: the state waiting for it is written under the names wanted
  // and returned (it is good now); nullopt when none waited.
  std::optional<TrainState> passed(int64_t step);
  // What waits is not kept (its step diverged, or the run rolled back).
  void drop();
  // The run's end at `step`: the names wanted of this very state besides "last" (an epoch end or a
  // checkpoint_every step just before), which the end writes with it.
  std::vector<std::string> take(int64_t step);

  // Writes `s` (a good state) as each of `names` (collective with several ranks: each sends rank 0 its state;
  // rank 0 checks that they agree on all but their shards — the same steps on all-reduced gradients: a
  // difference is a bug — and writes every rank's shard), then prunes epoch_<N>/ folders.
  void write(const TrainState& s, const std::vector<std::string>& names);
  int64_t saved_step() const { return saved_step_; }  // the step of the newest checkpoint written, −1 for none

 private:
  struct Pending {
    TrainState state;                // a state no forward pass has checked yet
    std::vector<std::string> names;  // the checkpoints to write once one has (none for the starting state)
  };
  RunFolder* folder_;
  const NetSpec& net_;
  const Config& config_;
  Communicator& comm_;
  Pending pending_;
  bool waiting_ = false;  // pending_ holds a state
  int64_t saved_step_ = -1;
};

}  // namespace ebm
