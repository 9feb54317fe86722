#include "host/train/checkpoint_keeper.hpp"

#include <algorithm>

#include "engine/error.hpp"
#include "engine/profiling.hpp"

namespace ebm {

void CheckpointKeeper::await(TrainState s) {
  pending_ = Pending{std::move(s), {}};
  waiting_ = true;
}

void CheckpointKeeper::want(int64_t step, std::vector<std::string> names, const std::function<TrainState()>& snapshot) {
  if (waiting_ && pending_.state.step == step) {
    for (auto& n : names)
      if (std::find(pending_.names.begin(), pending_.names.end(), n) == pending_.names.end()) pending_.names.push_back(n);
    return;
  }
  pending_ = Pending{snapshot(), std::move(names)};
  waiting_ = true;
}

void CheckpointKeeper::drop() {
  pending_ = Pending{};
  waiting_ = false;
}

std::optional<TrainState> CheckpointKeeper::passed(int64_t step) {
  if (!awaiting(step)) return std::nullopt;
  Pending p = std::move(pending_);
  drop();
  if (!p.names.empty()) write(p.state, p.names);
  return std::move(p.state);
}

std::vector<std::string> CheckpointKeeper::take(int64_t step) {
  std::vector<std::string> names;
  if (!waiting_) return names;
  EBM_CHECK(pending_.state.step == step, "a pending checkpoint outlived the step that checks it");
  for (auto& n : pending_.names)
    if (n != "last") names.push_back(n);
  drop();
  return names;
}

void CheckpointKeeper::write(const TrainState& s, const std::vector<std::string>& names) {
  EBM_PROFILE_RANGE("checkpoint");
  TrainState all = s;
  if (comm_.size() > 1) {
    const std::vector<std::string> parts = comm_.gather(pack_train_state(s), 0);
    if (comm_.rank() != 0) return;
    for (int r = 0; r < comm_.size(); ++r) {
      TrainState p = unpack_train_state(parts[size_t(r)]);
      if (p.params != s.params || p.ema != s.ema || p.sn_u != s.sn_u || p.adam.m != s.adam.m || p.adam.v != s.adam.v ||
          p.adam.t != s.adam.t || p.step != s.step || p.epoch != s.epoch || p.batch != s.batch)
        fail_at("every rank's state equals rank 0's", __FILE__, __LINE__,
                "at step " + std::to_string(s.step) + ", rank " + std::to_string(r) +
                    "'s parameters, Adam state or counters differ from rank 0's: the ranks drifted apart");
      all.rank_buffers.push_back(std::move(p.buffer));
      all.rank_rngs.push_back(std::move(p.rng));
    }
  }
  int64_t newest_epoch = 0;
  for (const std::string& name : names) {
    save_checkpoint((*folder_ / name).string(), net_, all, config_);
    if (name.starts_with("epoch_")) newest_epoch = std::max<int64_t>(newest_epoch, std::stoll(name.substr(6)));
  }
  saved_step_ = s.step;
  folder_->prune(newest_epoch, config_.train.keep_checkpoints);
}

}  // namespace ebm
