#include "host/train/resume.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "engine/error.hpp"
#include "engine/cpu/replay_buffer.hpp"  // ClassReplayBuffer::check
#include "host/io/json_text.hpp"

using json = nlohmann::json;

namespace ebm {
namespace {

void flatten(const json& j, const std::string& prefix, std::map<std::string, json>& out) {
  for (const auto& [k, v] : j.items()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object()) flatten(v, key, out);
    else out[key] = v;
  }
}

// What a resumed run keeps from its checkpoint, and why (the resumed state was built for it).
const char* fixed_on_resume(const std::string& key) {
  if (key.starts_with("model.") || key == "data.pad_to") return "its network (model.*, data.pad_to)";
  if (key == "data.dataset" || key == "data.limit") return "its data set (data.dataset, data.limit)";
  if (key == "train.objective") return "its objective (train.objective: what its network's outputs mean)";
  if (key == "data.batch_size") return "its batch size (the checkpoint's place in the epoch counts batches)";
  if (key == "buffer.capacity" || key == "buffer.initial" || key == "buffer.per_class")
    return "its replay buffer (buffer.capacity, buffer.initial, buffer.per_class)";
  return nullptr;
}

// Keys added after checkpoints were first written, whose absence from an older config.json means what their
// default means (the feature did not exist, so it was off; before model.outputs every net had 1 output, and before
// train.objective every run was contrastive divergence):
// such a checkpoint resumes with their defaults.
bool off_when_absent(const std::string& key) {
  return key == "model.spectral_norm" || key == "model.outputs" || key == "train.objective" ||
         key == "train.cd_weight" || key == "train.ce_weight" || key == "buffer.per_class";
}

std::string fmt_g(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

// The resumed state with the changed settings that live in it: a new learning rate, or a new seed (fresh
// random streams: an empty RNG state makes restore() reseed).
void apply_changes(const std::vector<SettingChange>& changes, const Config& config, TrainState& s) {
  for (const SettingChange& c : changes) {
    if (c.key == "train.lr") s.lr = config.train.lr;
    // the drift guard's level is of the regulariser as train.alpha scales it, its normal epochs as
    // drift_factor and drift_window chose them: another setting starts it afresh
    if (c.key == "train.alpha" || c.key == "train.divergence.drift_factor" || c.key == "train.divergence.drift_window")
      s.epoch_reg.clear();
    if (c.key == "seed") {
      s.seed = config.seed;
      s.rng.clear();
      for (auto& r : s.rank_rngs) r.clear();
    }
  }
}

// The recipe's state of a resumed checkpoint for this run's settings (model.spectral_norm cannot change on
// resume: fixed_on_resume). EMA turned on where the checkpoint has none starts from its θ (set_params does
// that) and says so in one line; EMA turned off drops the checkpoint's θ_ema (the settings-change line says
// train.ema_decay changed). Returns the note, or "".
std::string recipe_on_resume(const std::string& checkpoint, const Config& config, TrainState& s, const Advice& advice) {
  if (config.model.spectral_norm && s.sn_u.empty())
    user_fail(advice.resume(checkpoint), ": model.spectral_norm is on but its train_state.safetensors holds no ",
              "'sn.u.*' tensors (damaged, or written by another program)");
  if (!config.model.spectral_norm) s.sn_u.clear();
  if (config.train.ema_decay == 0) {
    s.ema.clear();
    return "";
  }
  if (!s.ema.empty()) return "";
  return "note: train.ema_decay is on and " + checkpoint + " holds no EMA weights: the EMA starts from its "
         "parameters at step " + std::to_string(s.step);
}

// Said when the checkpoint trains at another learning rate or seed than its config.json's (rollbacks lower
// the one and change the other): an unchanged train.lr keeps the checkpoint's, a changed one replaces it.
std::string effective_settings_note(const Config& saved, const TrainState& s, const std::vector<SettingChange>& changes) {
  auto changed = [&](const char* key) {
    return std::any_of(changes.begin(), changes.end(), [&](const SettingChange& c) { return c.key == key; });
  };
  std::string note;
  if (s.lr != saved.train.lr)
    note += (changed("train.lr") ? "replaces its learning rate " : "keeps its learning rate ") + fmt_g(s.lr) +
            " (train.lr " + fmt_g(saved.train.lr) + " lowered by rollbacks)";
  if (s.seed != saved.seed)
    note += std::string(note.empty() ? "" : "; ") + (changed("seed") ? "replaces its seed " : "keeps its seed ") +
            std::to_string(s.seed) + " (seed " + std::to_string(saved.seed) + " changed by rollbacks)";
  return note.empty() ? note : "note: this run " + note;
}

}  // namespace

std::vector<SettingChange> resume_changes(const Config& checkpoint, const Config& now, const std::string& dir,
                                          const Advice& advice) {
  std::map<std::string, json> was, is;
  flatten(config_to_json(checkpoint), "", was);
  flatten(config_to_json(now), "", is);
  std::vector<SettingChange> changes;
  for (const auto& [key, value] : is) {
    const auto it = was.find(key);
    if (it == was.end() || it->second == value) continue;
    if (const char* keeps = fixed_on_resume(key))
      user_fail(advice.resume(dir), ": ", key, " is ", shown_json(it->second), " in the checkpoint but ", shown_json(value),
                " now; a resumed run keeps ", keeps, " — start a new run (another output_dir) to change it");
    changes.push_back({key, it->second, value});
  }
  return changes;
}

Resume read_resume(const std::string& checkpoint, const Config& config, int ranks, const Advice& advice) {
  Resume r;
  r.checkpoint = checkpoint;
  // The checkpoint read against its own network first (a wrong rank count is the clearer message), then what
  // this run changes of its settings.
  std::vector<std::string> absent;
  const Config saved = load_checkpoint_config(checkpoint, &absent);
  for (const std::string& key : absent)
    if (fixed_on_resume(key) && !off_when_absent(key))
      user_fail(advice.resume(checkpoint), ": its config.json lacks \"", key, "\", so this run cannot check ",
                "that it keeps ", fixed_on_resume(key), "; restore the key (or start a new run)");
  r.state = load_train_state(checkpoint, net_spec_for(saved), ranks);
  r.changes = resume_changes(saved, config, checkpoint, advice);
  // buffer.per_class (fixed on resume): the rings' classes are checked here, before the run writes anything
  const std::string state_file = (std::filesystem::path(checkpoint) / "train_state.safetensors").string();
  if (config.buffer.per_class)
    ClassReplayBuffer::check(r.state.buffer_classes, r.state.buffer.shape.empty() ? 0 : r.state.buffer.shape[0],
                             config.buffer.capacity, config.model.outputs, state_file);
  else if (!r.state.buffer_classes.empty())
    user_fail(state_file, " holds a replay buffer per class ('buffer.classes') but buffer.per_class is false");
  r.note = effective_settings_note(saved, r.state, r.changes);
  const std::string recipe_note = recipe_on_resume(checkpoint, config, r.state, advice);
  if (!recipe_note.empty()) r.note += (r.note.empty() ? "" : "\n") + recipe_note;
  const bool had_level = !r.state.epoch_reg.empty();
  apply_changes(r.changes, config, r.state);
  if (had_level && r.state.epoch_reg.empty() && config.train.divergence.drift_factor > 0)
    r.note += std::string(r.note.empty() ? "" : "\n") + "note: the divergence guard's drift level starts afresh " +
              "(train.alpha, drift_factor or drift_window changed): it checks the drift again from the fourth epoch " +
              "of this run";
  r.state.rollbacks = 0;  // train.divergence.max_rollbacks counts a run's own rollbacks
  return r;
}

std::string resume_line(const Resume& r, int64_t step) {
  std::string text;
  for (const SettingChange& c : r.changes)
    text += (text.empty() ? "" : ", ") + c.key + " " + shown_json(c.from) + " -> " + shown_json(c.to);
  if (r.changes.empty()) return "";
  return "resume: settings changed from the checkpoint's, applied from step " + std::to_string(step + 1) + ": " + text;
}

json resume_record(const Resume& r, int64_t step) {
  json changed = json::object();
  for (const SettingChange& c : r.changes) changed[c.key] = {c.from, c.to};
  return {{"event", "resume"}, {"step", step}, {"checkpoint", r.checkpoint}, {"changed", changed}};
}

TrainState share_resumed(Communicator& comm, const TrainState& all) {
  std::vector<std::string> parts;
  if (comm.rank() == 0) {
    for (int r = 0; r < comm.size(); ++r) {
      TrainState mine = all;
      mine.buffer = all.rank_buffers[size_t(r)];
      mine.rng = all.rank_rngs[size_t(r)];
      mine.rank_buffers.clear();
      mine.rank_rngs.clear();
      parts.push_back(pack_train_state(mine));
    }
  }
  return unpack_train_state(comm.scatter(parts, 0));
}

}  // namespace ebm
