// A resumed run: the checkpoint read and checked against this run's settings, the settings it changes (allowed
// or refused), the resumed state with the changes that live in it applied, what the run says about them, and
// every rank's share of the state. Rank 0 reads; share_resumed hands each rank its part.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/communicator.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/config.hpp"
#include "host/train/advice.hpp"

namespace ebm {

// One setting a resumed run changes from its checkpoint's config.json: the dotted key, the checkpoint's
// value and the new one.
struct SettingChange {
  std::string key;
  nlohmann::json from, to;
};

// The settings `now` changes from `checkpoint`'s, in key order. A resumed run may change how it trains
// from here on: train.lr (applied from the next step; Adam's moments are kept), seed (fresh random streams
// from the next step), train.epochs and max_steps, the cadences (log_every, checkpoint_every,
// keep_checkpoints, validate, tensorboard), train.divergence.*, the sampler, alpha, real_noise, Adam's betas and eps,
// buffer.reinit_prob, generate.*, the backend, cuda.*, output_dir, comm_timeout_s and data.dir (the data
// itself is checked by fingerprint). It may not change what the state was built for: model.*, data.dataset,
// data.pad_to, data.limit, data.batch_size, buffer.capacity and buffer.initial — a UserError naming the key,
// the checkpoint's value and the new one, from `checkpoint_dir` (said as `advice` says a resume).
std::vector<SettingChange> resume_changes(const Config& checkpoint, const Config& now, const std::string& checkpoint_dir,
                                          const Advice& advice = {});

// A checkpoint read for a resume (rank 0: every rank's buffer shard and RNG state in state.rank_*).
struct Resume {
  std::string checkpoint;              // the folder given to --resume
  TrainState state;                    // with the changed learning rate or seed applied, and no rollbacks yet
  std::vector<SettingChange> changes;  // the settings this run changes
  std::string note;  // "note: ..." lines: the learning rate or seed rollbacks left, EMA started; "" for none
};

// Reads `checkpoint` for a run of `config` on `ranks` ranks and checks it, writing nothing: its config.json
// against its own weights and against `config` (resume_changes), the recipe's state (spectral norm, EMA).
// UserError naming the checkpoint and what is wrong.
Resume read_resume(const std::string& checkpoint, const Config& config, int ranks, const Advice& advice = {});

// The console line and metrics.jsonl record of a resume that starts after `step` (the line is "" when nothing
// changed): "resume: settings changed from the checkpoint's, applied from step N: key a -> b, ...".
std::string resume_line(const Resume& r, int64_t step);
nlohmann::json resume_record(const Resume& r, int64_t step);

// With several ranks (collective): rank 0 holds every rank's part of the checkpoint in `all`; each rank
// gets the common state plus its own replay-buffer shard and RNG state.
TrainState share_resumed(Communicator& comm, const TrainState& all);

}  // namespace ebm
