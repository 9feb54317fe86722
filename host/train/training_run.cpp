#include "host/train/training_run.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "engine/communicator.hpp"
#include "engine/error.hpp"
#include "engine/loss.hpp"
#include "engine/profiling.hpp"
#include "engine/rng.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/eval/eval_quality.hpp"
#include "host/eval/sampling.hpp"
#include "host/eval/scoring.hpp"
#include "host/io/atomic_file.hpp"
#include "host/io/charts.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/dataset.hpp"
#include "host/io/json_text.hpp"
#include "host/io/png_image.hpp"
#include "host/io/tensorboard.hpp"
#include "host/train/distributed.hpp"
#include "host/train/lr_schedule.hpp"
#include "host/train/memory_plan.hpp"
#ifdef EBM_HAVE_CUDA
#include "engine/cuda/cuda_backend.hpp"
#endif

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

namespace ebm {
namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string duration_str(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = long(s + 0.5);
  char b[32];
  if (t >= 3600) std::snprintf(b, sizeof b, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(b, sizeof b, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(b, sizeof b, "%lds", t);
  return b;
}

// Each local rank takes its own GPU: cuda.device + local rank, wrapped over the devices this process sees
// (1 when the launcher hands every rank one device through CUDA_VISIBLE_DEVICES).
int device_for(int configured, int local_rank) {
#ifdef EBM_HAVE_CUDA
  const int count = cuda_device_count(nullptr);
  if (count > 0) return (configured + local_rank) % count;
#endif
  return configured + local_rank;
}

EngineOptions engine_options(const Config& c, Communicator& comm) {
  EngineOptions o = engine_options_for(c);
  if (comm.size() > 1) {
    o.comm = &comm;
    o.device = device_for(c.cuda.device, comm.local_rank());
  }
  return o;
}

// --- the run directory ---

// That `dir` is, or can be made, a writable directory — without writing anything: a run refused later
// (a bad resume, missing data) must leave no trace.
void check_output_dir(const fs::path& dir) {
  std::error_code ec;
  const std::string name = "output_dir \"" + dir.string() + "\"";
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) user_fail(name, ": exists and is not a directory");
    if (access(dir.c_str(), W_OK | X_OK) != 0) user_fail(name, ": not writable (", std::strerror(errno), ")");
    return;
  }
  fs::path up = fs::absolute(dir, ec).parent_path();
  while (!up.empty() && !fs::exists(up, ec) && up != up.root_path()) up = up.parent_path();
  if (!fs::is_directory(up, ec)) user_fail(name, ": cannot create it: ", up.string(), " is not a directory");
  if (access(up.c_str(), W_OK | X_OK) != 0)
    user_fail(name, ": cannot create it: ", up.string(), " is not writable (", std::strerror(errno), ")");
}

// A run of decimal digits (at most 18: it fits an int64) as a number; -1 for anything else.
int64_t decimal(std::string_view s) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(std::string(s));
}

// N for a folder named epoch_<N>; -1 for any other name.
int64_t epoch_number(std::string_view name) { return name.starts_with("epoch_") ? decimal(name.substr(6)) : -1; }

bool checkpoint_name(std::string_view name) { return name == "last" || epoch_number(name) >= 0; }

// Checkpoint folders a killed run left half-written: <name>.tmp.<pid> (save_checkpoint's staging folder)
// of a process that no longer runs, and <name>.old (the fallback swap's). Returns what it removed.
std::vector<std::string> remove_stale_temporaries(const fs::path& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory(ec)) continue;
    const size_t tmp = name.find(".tmp."), old = name.size() >= 4 ? name.size() - 4 : std::string::npos;
    if (tmp != std::string::npos && checkpoint_name(std::string_view(name).substr(0, tmp))) {
      const int64_t pid = decimal(std::string_view(name).substr(tmp + 5));
      if (pid < 0 || pid == int64_t(getpid()) || kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;  // still writing
    } else if (old != std::string::npos && name.compare(old, 4, ".old") == 0 &&
               checkpoint_name(std::string_view(name).substr(0, old))) {
      if (!fs::exists(dir / name.substr(0, old), ec)) continue;  // the only copy left of a checkpoint moved aside
    } else {
      continue;
    }
    fs::remove_all(e.path(), ec);
    if (!ec) removed.push_back(name);
  }
  return removed;
}

// metrics.jsonl without the records past `step` (a resume from an earlier checkpoint, or a rollback,
// rewrites history); with `keep_events`, only the step and epoch records go, and the events that say why
// (diverged, rollback) stay.
void truncate_metrics(const fs::path& file, int64_t step, bool keep_events = false) {
  std::ifstream in(file);
  if (!in) return;
  std::ostringstream kept;
  std::string line;
  while (std::getline(in, line)) {
    try {
      const auto j = json::parse(line);
      const std::string event = j.value("event", "");
      if (j.value("step", int64_t(0)) > step && (!keep_events || event == "step" || event == "epoch")) continue;
    } catch (const std::exception&) {
      continue;  // a torn last line from a killed run
    }
    kept << line << "\n";
  }
  in.close();
  write_file_atomic(file.string(), [&](std::ofstream& f) { f << kept.str(); });
}

// epoch_<N>/ checkpoints in `dir`, oldest first.
std::vector<std::pair<int64_t, fs::path>> epoch_checkpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const int64_t n = epoch_number(e.path().filename().string());
    if (n >= 0 && e.is_directory(ec)) found.emplace_back(n, e.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// What in `dir` makes it a run's folder ("last/, epoch_2/, metrics.jsonl"), or "" when nothing does.
std::string run_contents(const fs::path& dir) {
  std::error_code ec;
  std::vector<std::string> held;
  for (const char* name : {"last", "last.old"})
    if (fs::is_directory(dir / name, ec)) held.push_back(std::string(name) + "/");
  for (const auto& [n, path] : epoch_checkpoints(dir)) held.push_back(path.filename().string() + "/");
  // An empty metrics.jsonl is a run that never logged a step (made, then dropped or killed, before its first
  // record): no history to keep, so a fresh run may take the folder over.
  if (fs::exists(dir / "metrics.jsonl", ec) && fs::file_size(dir / "metrics.jsonl", ec) > 0) held.push_back("metrics.jsonl");
  std::string s;
  for (size_t i = 0; i < held.size() && i < 4; ++i) s += (i ? ", " : "") + held[i];
  if (held.size() > 4) s += " and " + std::to_string(held.size() - 4) + " more";
  return s;
}

double folder_bytes(const fs::path& dir) {
  double total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec)) total += double(it->file_size(ec));
  return total;
}

// --- resume ---

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
  if (key == "data.batch_size") return "its batch size (the checkpoint's place in the epoch counts batches)";
  if (key == "buffer.capacity" || key == "buffer.initial") return "its replay buffer (buffer.capacity, buffer.initial)";
  return nullptr;
}

// Keys added after checkpoints were first written, whose absence from an older config.json means what their
// default means (the feature did not exist, so it was off; before model.outputs every net had 1 output):
// such a checkpoint resumes with their defaults.
bool off_when_absent(const std::string& key) { return key == "model.spectral_norm" || key == "model.outputs"; }

// The settings a run's progress line and epoch summary show, from sums over the epoch: loss reg cdiv real fake.
std::string metrics_text(const std::array<double, 6>& sums) {
  auto mean = [&](int i) { return sums[5] > 0 ? sums[i] / sums[5] : 0.0; };
  return "loss " + fmt("%.4f", mean(0)) + " reg " + fmt("%.4f", mean(1)) + " cdiv " + fmt("%.4f", mean(2)) +
         " real " + fmt("%.4f", mean(3)) + " fake " + fmt("%.4f", mean(4));
}

// Time spent on what is not training (validation, pictures, checkpoints, the guard's probe), left out
// of ms/step and the ETA. Nested sections count once.
class OffTheClock {
 public:
  OffTheClock(double& total, int& depth) : total_(total), depth_(depth), start_(Clock::now()) { ++depth_; }
  ~OffTheClock() {
    if (--depth_ == 0) total_ += std::chrono::duration<double>(Clock::now() - start_).count();
  }

 private:
  double& total_;
  int& depth_;
  Clock::time_point start_;
};

}  // namespace

// With several ranks every rank runs this same loop in lockstep: the same steps, the same collectives in
// the same order (inside train_step and validate, the stop flag each step, the checkpoint gather, the
// guard's probe), and the same decisions, taken from all-reduced metrics. Rank 0 alone owns the run
// directory and the console.
//
// The divergence guard. A step's forward pass runs on the weights of the step before, so the weights a
// step produces are checked only by the next forward pass on them. A state is "good" once such a pass
// has passed the guard (finite f, |f| <= train.divergence.max_abs_f): the next training step's, the
// epoch-end validation's, or — for the last checkpoint of a run, which no step follows — the probe, which
// makes the next step's forward pass without the update (real rows, and the newest replay-buffer rows
// refined by the training sampler) and validation's. Checkpoints are written only of good states: a
// checkpoint wanted at step N is validated, then waits (in memory) for step N+1's metrics. Rollbacks go to
// the newest good state.
class TrainingRun {
 public:
  explicit TrainingRun(const TrainRunOptions& o)
      : options_(o), config_(o.config), run_dir_(config_.output_dir), comm_(o.comm ? *o.comm : single_) {}
  ~TrainingRun() { unlock_run_dir(); }
  TrainingRun(const TrainingRun&) = delete;
  TrainingRun& operator=(const TrainingRun&) = delete;

  // Every check, then the run folder (nothing is written before every check has passed). The run's result
  // when there is nothing to do (a resume of a complete run), else nullopt: advance() trains.
  std::optional<int> start() {
    comm_.set_timeout(config_.train.comm_timeout_s);
    net_ = net_spec_for(config_);
    require_energy_net(net_, "ebm_train");  // before any work: a classifier head is trained by ebm_eval
    const bool resuming = options_.resume.has_value();
    TrainState resumed;
    std::vector<SettingChange> changes;
    // Checks that write nothing come first, on rank 0: the checkpoint to resume and what changes, then the
    // output folder. An error there is every rank's error, and leaves no trace.
    agree(comm_, [&] {
      if (resuming) {
        if (options_.resume->empty())
          user_fail("--resume: the checkpoint path is empty; give a checkpoint directory (e.g. ",
                    (run_dir_ / "last").string(), "), or leave --resume out to start a fresh run");
        // The checkpoint read against its own network first (a wrong rank count is the clearer message),
        // then what this run changes of its settings.
        std::vector<std::string> absent;
        const Config saved = load_checkpoint_config(*options_.resume, &absent);
        for (const std::string& key : absent)
          if (fixed_on_resume(key) && !off_when_absent(key))
            user_fail("--resume ", *options_.resume, ": its config.json lacks \"", key, "\", so this run cannot check ",
                      "that it keeps ", fixed_on_resume(key), "; restore the key (or start a new run)");
        resumed = load_train_state(*options_.resume, net_spec_for(saved), comm_.size());
        changes = resume_changes(saved, config_, *options_.resume);
        resume_note_ = effective_settings_note(saved, resumed, changes);
        const std::string recipe_note = recipe_on_resume(resumed);
        if (!recipe_note.empty()) resume_note_ += (resume_note_.empty() ? "" : "\n") + recipe_note;
        apply_changes(changes, resumed);
        resumed.rollbacks = 0;  // train.divergence.max_rollbacks counts a run's own rollbacks
      }
      check_output_dir(run_dir_);
      check_run_dir_role();
    }, /*root_only=*/true);
    if (distributed() && resuming) resumed = share_resumed(resumed);
    if (resuming) {
      state_.step = resumed.step, state_.epoch = resumed.epoch;  // for complete()
      if (complete()) {  // nothing written: the folder and the checkpoint stay as they are
        out() << "nothing to do: the run is complete (step " << state_.step << ", epoch " << state_.epoch << "/"
              << config_.train.epochs << (config_.train.max_steps > 0 ? ", train.max_steps " +
                                                                            std::to_string(config_.train.max_steps)
                                                                      : std::string())
              << "); raise train.epochs or train.max_steps to train on\n";
        return kRunOk;
      }
    }

    Dataset& data = data_storage_;
    agree(comm_, [&] {  // every rank reads the whole set: each needs N and the epoch's permutation
      EBM_PROFILE_RANGE("load_data");
      data = load_dataset(config_.data);
      if (data.train.dim(0) == 0) user_fail(data.train_path, ": no training images");
      data_images_ = data.train.dim(0);
      data_fingerprint_ = dataset_fingerprint(data.train);
      if (resuming && resumed.data_images >= 0 &&
          (resumed.data_images != data_images_ || resumed.data_fingerprint != data_fingerprint_))
        user_fail("--resume ", *options_.resume, ": the checkpoint was trained on another data set (",
                  resumed.data_images, " training images, fingerprint ", resumed.data_fingerprint, ") than ",
                  data.train_path, " holds now (", data_images_, " images, fingerprint ", data_fingerprint_,
                  "); a resumed run keeps its data set");
      check_host_memory(host_memory_plan(config_, net_, comm_.size(), int(std::thread::hardware_concurrency())),
                        host_memory_available());
    });
    data_ = &data;
    out() << "data: train " << shape_str(data.train.shape) << " from " << data.train_path << ", test "
          << shape_str(data.test.shape) << "\n";

    agree(comm_, [&] {
      backend_ = make_backend(config_.backend, engine_options(config_, comm_));
      kind_ = backend_name(backend_->facts().kind);
      if (distributed() && !backend_->data_parallel())
        user_fail("backend ", kind_, ": this build's ", kind_, " backend does not train data-parallel; run the ",
                  comm_.size(), " ranks with --backend cpu, or run one process");
    });
    out() << "backend: " << backend_->describe() << "\n";
    if (distributed())
      out() << "data-parallel: " << comm_.size() << " ranks, global batch "
            << int64_t(config_.data.batch_size) * comm_.size() << " (" << config_.data.batch_size
            << " per rank), replay buffer " << config_.buffer.capacity / comm_.size() << " images per rank\n";
    out() << net_.summary() << std::endl;  // a log being tailed shows the run has started
    backend_->set_train_data(data.train);
    batches_per_epoch_ = backend_->batches_per_epoch();
    total_steps_ = config_.train.epochs * batches_per_epoch_;
    if (config_.train.max_steps > 0) total_steps_ = std::min(total_steps_, config_.train.max_steps);
    agree(comm_, [&] {
      if (resuming && resumed.batch > batches_per_epoch_)
        user_fail("--resume ", *options_.resume, ": its train_state puts the run at batch ", resumed.batch,
                  " of an epoch of ", batches_per_epoch_, " batches (corrupt, or written for other data)");
    });

    // Every rank: each draws its share of the chains, and rank 0 scores them. A classifier not cached yet is
    // trained by every rank at once (the same one: no rank waits on another in a collective), saved by rank 0.
    if (config_.train.eval.every > 0)
      agree(comm_, [&] { quality_ = std::make_unique<QualityMeter>(config_.data, config_.backend, out(), options_.classifier, root());
      });
    if (quality_)
      out() << "eval: every " << config_.train.eval.every << " epoch" << (config_.train.eval.every == 1 ? "" : "s") << ", "
            << config_.train.eval.n << " samples; classifier " << quality_->classifier().dir << " (test accuracy "
            << fmt("%.2f", 100 * quality_->classifier().test_accuracy) << "%)\n";

    // Every check has passed: from here on the run writes.
    if (root()) {
      prepare_run_dir();
      write_file_atomic((run_dir_ / "config.json").string(),
                        [&](std::ofstream& f) { f << config_to_json(config_).dump(2) << "\n"; });
    }
    if (resuming) {
      resumed.rank_buffers.clear();  // this rank's own shard is in resumed.buffer
      resumed.rank_rngs.clear();
      restore(resumed);
      adopt(std::move(resumed));
      if (root()) truncate_metrics(run_dir_ / "metrics.jsonl", state_.step);
      out() << "resumed from " << *options_.resume << " at step " << state_.step << " (epoch " << state_.epoch + 1
            << ", batch " << state_.batch << ")\n";
    } else {
      state_.lr = config_.train.lr;
      state_.seed = config_.seed;
      if (root()) write_file_atomic((run_dir_ / "metrics.jsonl").string(), [](std::ofstream&) {});
    }
    if (root()) metrics_.open(run_dir_ / "metrics.jsonl", std::ios::app);
    agree(comm_, [&] { open_tensorboard(); }, /*root_only=*/true);
    if (resuming) log_resume(changes);
    if (!resume_note_.empty()) out() << resume_note_ << "\n";
    start_step_ = state_.step;
    pending_ = Pending{snapshot(), {}};  // the starting state: good once its first step's forward pass passes
    tty_ = root() && !distributed() && isatty(fileno(stdout));  // mpirun gives ranks a pty, but its output is a log
    if (root()) pictures_.enabled(err());  // a build without libpng says so now, not at the first epoch end
    t_start_ = t_print_ = Clock::now();
    return std::nullopt;
  }

  // One training step and what falls due around it (module comment of Training in the header); the result
  // once the run has ended. The run's end is said (report_folder) once.
  std::optional<int> advance() {
    if (result_) return result_;
    result_ = next_step();
    if (result_ && root()) report_folder();
    if (result_) unlock_run_dir();  // the run writes no more
    return result_;
  }

  // save(dir) writes only into a new (or empty) folder of its own: not over a file or a folder holding anything,
  // not over the run folder or a folder above it, not as one of the run's own checkpoint names.
  void check_save_target(const std::string& dir) const {
    if (dir.empty()) user_fail("save: the checkpoint path is empty; give a new folder");
    std::error_code ec;
    const std::string name = "save: \"" + dir + "\"";
    const fs::path target = fs::weakly_canonical(fs::absolute(dir, ec), ec), run = fs::weakly_canonical(run_dir_, ec);
    if (std::mismatch(target.begin(), target.end(), run.begin(), run.end()).first == target.end())
      user_fail(name, " is the run folder or holds it (", run_dir_.string(), "); give a folder of its own");
    if (target.parent_path() == run && checkpoint_name(target.filename().string()))
      user_fail(name, ": the run writes its own ", target.filename().string(), "/ there; give another name");
    if (fs::exists(dir, ec)) {
      if (!fs::is_directory(dir, ec)) user_fail(name, " exists and is not a folder; give a new folder (nothing is overwritten)");
      if (!fs::is_empty(dir, ec))
        user_fail(name, " already holds files; give a new or empty folder (nothing is overwritten)");
    }
    check_output_dir(dir);
  }

  std::optional<int> result() const { return result_; }
  void finished(int result) { result_ = result; }  // start() found nothing to do
  int64_t step() const { return state_.step; }
  int64_t total_steps() const { return total_steps_; }
  const Config& config() const { return config_; }
  const NetSpec& net() const { return net_; }
  // Why the run diverged and what to fall back on, once it has ended so ("" otherwise).
  std::string divergence() const { return result_ == kRunDiverged ? why_ + "; " + fallback_ : std::string(); }
  std::vector<float> sampling_params() { return backend_->sampling_params(); }

  // A checkpoint of the state now in `dir`, once the guard's probe has passed it (the probe's sampler has its
  // own stream: the training streams do not move). Steps run since the last read-back are read first.
  void save(const std::string& dir) {
    if (distributed()) user_fail("save: a data-parallel run writes its checkpoints itself (last/, epoch_N/)");
    check_save_target(dir);
    if (!drain()) user_fail("save: ", why_, "; nothing written");
    TrainState s = snapshot();
    const double worst = probe(s.buffer);
    if (!within_guard(worst)) {
      set_divergence(state_.step, "its weights, probed before saving", worst);
      const std::string why = why_;
      why_.clear();
      user_fail("save: ", why, "; nothing written");
    }
    OffTheClock off(off_clock_s_, off_clock_depth_);
    save_checkpoint(dir, net_, s, config_);
  }

 private:
  struct Pending {
    TrainState state;                // a state no forward pass has checked yet
    std::vector<std::string> names;  // the checkpoints to write once one has (none for the starting state)
  };

  bool root() const { return comm_.rank() == 0; }
  bool distributed() const { return comm_.size() > 1; }
  // The console: rank 0's; the other ranks' lines go nowhere. err(): what ends a run badly (a divergence).
  std::ostream& out() { return root() ? (options_.out ? *options_.out : std::cout) : quiet_; }
  std::ostream& err() { return root() ? (options_.err ? *options_.err : std::cerr) : quiet_; }

  // Rank 0, before anything is written: what the output folder holds fits what this run does. A checkpoint
  // is not a run folder; the checkpoint resumed is not written into; a folder holding a run takes only a
  // resume of its own checkpoints (a fresh run, or another run's checkpoint, would mix two runs in it).
  void check_run_dir_role() const {
    std::error_code ec;
    const std::string name = "output_dir \"" + run_dir_.string() + "\"";
    for (const char* file : {"model.safetensors", "train_state.safetensors"})
      if (fs::exists(run_dir_ / file, ec))
        user_fail(name, " is a checkpoint (it holds ", file, "), not a run folder; give its run folder (",
                  fs::weakly_canonical(run_dir_, ec).parent_path().string(), ") or a new one");
    const fs::path out = fs::weakly_canonical(run_dir_, ec);
    if (options_.resume) {
      const fs::path ckpt = fs::weakly_canonical(*options_.resume, ec);
      const auto [c, o] = std::mismatch(ckpt.begin(), ckpt.end(), out.begin(), out.end());
      if (c == ckpt.end())
        user_fail(name, " is inside the checkpoint being resumed (", *options_.resume,
                  "); write the run to its run folder (", ckpt.parent_path().string(), ") or a new one");
    }
    const std::string held = run_contents(run_dir_);
    if (held.empty()) return;
    if (!options_.resume) {
      if (!fs::exists(run_dir_ / "last", ec) && fs::exists(run_dir_ / "last.old", ec))
        user_fail(name, " already holds a run whose last checkpoint a run killed while saving moved aside: rename ",
                  (run_dir_ / "last.old").string(), " to ", (run_dir_ / "last").string(), " and continue it with --resume ",
                  (run_dir_ / "last").string(), ", or start a new run elsewhere with --set output_dir=DIR");
      const auto epochs = epoch_checkpoints(run_dir_);
      if (!fs::exists(run_dir_ / "last", ec) && !epochs.empty())
        user_fail(name, " already holds a run (", held, "); continue it with --resume ", epochs.back().second.string(),
                  ", or start a new one elsewhere with --set output_dir=DIR");
      if (!fs::exists(run_dir_ / "last", ec))
        user_fail(name, " already holds a run that wrote no checkpoint (", held, "); remove the folder to start again, ",
                  "or start a new run elsewhere with --set output_dir=DIR");
      user_fail(name, " already holds a run (", held, "); continue it with --resume ", (run_dir_ / "last").string(),
                ", or start a new one elsewhere with --set output_dir=DIR");
    }
    if (fs::weakly_canonical(*options_.resume, ec).parent_path() != out)
      user_fail(name, " already holds another run (", held, "); resume ", *options_.resume,
                " into its own run folder or a new one (--set output_dir=DIR)");
  }

  // Rank 0, before the first write: a folder left by a killed run is cleared of its half-written checkpoints.
  void prepare_run_dir() {
    std::error_code ec;
    fs::create_directories(run_dir_, ec);
    if (ec) user_fail("output_dir \"", run_dir_.string(), "\": cannot create it (", ec.message(), ")");
    lock_run_dir();
    for (const std::string& name : remove_stale_temporaries(run_dir_))
      out() << "removed " << (run_dir_ / name).string() << " (a half-written checkpoint a killed run left)\n";
  }

  // Rank 0 holds an exclusive flock on <output_dir>/.lock from before its first write until the run ends: a second
  // run writing the same folder (another ebm_train, or a second ebm_engine.Trainer, resuming the same checkpoint)
  // would interleave two histories in metrics.jsonl, tb/ and the checkpoints. The file stays; the lock goes with
  // the run (or the process).
  void lock_run_dir() {
    const fs::path file = run_dir_ / ".lock";
    lock_fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) user_fail("output_dir \"", run_dir_.string(), "\": cannot create ", file.string(), " (", std::strerror(errno), ")");
    if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      unlock_run_dir();
      user_fail("output_dir \"", run_dir_.string(), "\" is in use by another training run (one holds ", file.string(),
                "); let it end, or write this run elsewhere with --set output_dir=DIR");
    }
  }
  void unlock_run_dir() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    lock_fd_ = -1;
  }

  // The resumed state with the changed settings that live in it: a new learning rate, or a new seed (fresh
  // random streams: an empty RNG state makes restore() reseed). Rank 0, before sharing the state.
  void apply_changes(const std::vector<SettingChange>& changes, TrainState& s) const {
    for (const SettingChange& c : changes) {
      if (c.key == "train.lr") s.lr = config_.train.lr;
      if (c.key == "seed") {
        s.seed = config_.seed;
        s.rng.clear();
        for (auto& r : s.rank_rngs) r.clear();
      }
    }
  }

  // The recipe's state of a resumed checkpoint for this run's settings (model.spectral_norm cannot change on
  // resume: fixed_on_resume). EMA turned on where the checkpoint has none starts from its θ (set_params does
  // that) and says so in one line; EMA turned off drops the checkpoint's θ_ema (the settings-change line says
  // train.ema_decay changed). Returns the note, or "".
  std::string recipe_on_resume(TrainState& s) const {
    if (config_.model.spectral_norm && s.sn_u.empty())
      user_fail("--resume ", *options_.resume, ": model.spectral_norm is on but its train_state.safetensors holds no ",
                "'sn.u.*' tensors (damaged, or written by another program)");
    if (!config_.model.spectral_norm) s.sn_u.clear();
    if (config_.train.ema_decay == 0) {
      s.ema.clear();
      return "";
    }
    if (!s.ema.empty()) return "";
    return "note: train.ema_decay is on and " + *options_.resume + " holds no EMA weights: the EMA starts from its "
           "parameters at step " + std::to_string(s.step);
  }

  // Said when the checkpoint trains at another learning rate or seed than its config.json's (rollbacks lower
  // the one and change the other): an unchanged train.lr keeps the checkpoint's, a changed one replaces it.
  static std::string effective_settings_note(const Config& saved, const TrainState& s,
                                             const std::vector<SettingChange>& changes) {
    auto changed = [&](const char* key) {
      return std::any_of(changes.begin(), changes.end(), [&](const SettingChange& c) { return c.key == key; });
    };
    std::string note;
    if (s.lr != saved.train.lr)
      note += (changed("train.lr") ? "replaces its learning rate " : "keeps its learning rate ") + fmt("%.4g", s.lr) +
              " (train.lr " + fmt("%.4g", saved.train.lr) + " lowered by rollbacks)";
    if (s.seed != saved.seed)
      note += std::string(note.empty() ? "" : "; ") + (changed("seed") ? "replaces its seed " : "keeps its seed ") +
              std::to_string(s.seed) + " (seed " + std::to_string(saved.seed) + " changed by rollbacks)";
    return note.empty() ? note : "note: this run " + note;
  }

  void log_resume(const std::vector<SettingChange>& changes) {
    json changed = json::object();
    std::string text;
    for (const SettingChange& c : changes) {
      changed[c.key] = {c.from, c.to};
      text += (text.empty() ? "" : ", ") + c.key + " " + shown_json(c.from) + " -> " + shown_json(c.to);
    }
    if (!changes.empty())
      out() << "resume: settings changed from the checkpoint's, applied from step " << state_.step + 1 << ": " << text
            << "\n";
    log({{"event", "resume"}, {"step", state_.step}, {"checkpoint", *options_.resume}, {"changed", changed}});
  }

  // Rank 0 loaded every rank's part of the checkpoint; each rank gets the common state plus its own
  // replay-buffer shard and RNG state.
  TrainState share_resumed(const TrainState& all) {
    std::vector<std::string> parts;
    if (root()) {
      for (int r = 0; r < comm_.size(); ++r) {
        TrainState mine = all;
        mine.buffer = all.rank_buffers[size_t(r)];
        mine.rng = all.rank_rngs[size_t(r)];
        mine.rank_buffers.clear();
        mine.rank_rngs.clear();
        parts.push_back(pack_train_state(mine));
      }
    }
    return unpack_train_state(comm_.scatter(parts, 0));
  }

  // A stop requested on any rank (SIGINT/SIGTERM may reach one process, or all) stops every rank after the
  // same step.
  bool stop_requested() {
    const bool mine = options_.stop && options_.stop->load();
    return distributed() ? any_rank(comm_, mine) : mine;
  }

  TrainState snapshot() {
    TrainState s = state_;
    s.params = backend_->params();
    if (config_.train.ema_decay > 0) s.ema = backend_->ema();
    if (config_.model.spectral_norm) s.sn_u = backend_->sn_state();
    if (!s.ema.empty() || !s.sn_u.empty()) s.sampling = backend_->sampling_params();  // model.safetensors
    s.adam = backend_->adam();
    s.buffer = backend_->buffer();
    s.rng = backend_->rng_state();
    s.rng_backend = kind_;
    s.data_images = data_images_;
    s.data_fingerprint = data_fingerprint_;
    return s;
  }

  // The counters of `s` (restored into the backend already) as the run's; the tensors live in the backend.
  void adopt(TrainState s) {
    state_ = std::move(s);
    state_.params.clear(), state_.adam = {}, state_.buffer = Tensor(), state_.rng.clear();
    state_.ema.clear(), state_.sn_u.clear(), state_.sampling.clear();
    state_.rank_buffers.clear(), state_.rank_rngs.clear();
  }

  void restore(const TrainState& s) {
    backend_->set_params(s.params);  // θ_ema = θ too, where EMA is on: what a checkpoint without θ_ema resumes with
    if (!s.ema.empty()) backend_->set_ema(s.ema);
    if (!s.sn_u.empty()) backend_->set_sn_state(s.sn_u);
    backend_->set_adam(s.adam);
    backend_->set_buffer(s.buffer);
    backend_->set_lr(s.lr);
    lr_now_ = s.lr;
    if (s.rng.empty()) {  // a new seed on resume
      backend_->reseed(s.seed);
    } else if (s.rng_backend == kind_) {
      backend_->set_rng_state(s.rng);
    } else {  // another backend's streams cannot be continued here: same seed, fresh streams
      out() << "note: checkpoint RNG state is from the " << s.rng_backend << " backend; the " << kind_
            << " backend continues with fresh streams from seed " << s.seed << "\n";
      backend_->reseed(s.seed);
    }
  }

  // --- the guard ---

  bool within_guard(double max_abs_f) const {
    return std::isfinite(max_abs_f) && max_abs_f <= config_.train.divergence.max_abs_f;
  }

  // Records why the run diverged: at `step` (the weights of that step, or its forward pass), found by
  // `where` ("" for the step's own metrics), with max |f| (NaN: some f was NaN/inf).
  void set_divergence(int64_t step, const std::string& where, double max_abs_f) {
    diverged_step_ = step;
    why_ = "diverged at step " + std::to_string(step) + (where.empty() ? "" : " (" + where + ")") + ": " +
           (std::isfinite(max_abs_f) ? "|f| reached " + fmt("%.4g", max_abs_f) + " > train.divergence.max_abs_f = " +
                                           fmt("%.4g", config_.train.divergence.max_abs_f)
                                     : std::string("the energy is NaN/inf"));
  }

  // max |f| (NaN when any f is) of validation's forward pass: the test set (what ebm_score reports of a
  // checkpoint) and as many uniform-noise images. Every checkpoint is checked on it; at an epoch end with
  // train.validate on, validation itself does it.
  double validation_max_abs_f() {
    OffTheClock off(off_clock_s_, off_clock_depth_);
    EBM_PROFILE_RANGE("validate");
    return data_->test.numel() > 0 ? backend_->validate(data_->test, state_.epoch).max_abs_f : 0.0;
  }

  // At most `max_rows` rows of t [n, image] as network inputs: its first rows, or its newest (the replay buffer
  // writes its newest last). The guard's probe and the TensorBoard histograms take theirs so.
  Tensor rows_of(const Tensor& t, int64_t max_rows, bool newest) const {
    const int64_t n = t.shape.empty() ? 0 : std::min(max_rows, t.dim(0)), img = net_.image_size();
    Tensor rows({n, net_.in_c, net_.in_h, net_.in_w});
    const float* src = t.ptr() + (newest ? t.dim(0) - n : 0) * img;
    std::copy(src, src + n * img, rows.ptr());
    return rows;
  }

  // The next training step's forward pass on the current weights, without the update: the first rows of
  // the training set, and this rank's newest rows of `buffer` (its replay buffer now) refined by the
  // training sampler (its own random stream: the training streams do not move); and validation's pass.
  // max |f| over all ranks; NaN when any f is.
  double probe(const Tensor& buffer) {
    OffTheClock off(off_clock_s_, off_clock_depth_);
    EBM_PROFILE_RANGE("guard_probe");
    const int64_t b = config_.data.batch_size;
    const std::vector<float> real = backend_->energy(rows_of(data_->train, b, false));
    Tensor fake = rows_of(buffer, b, true);  // the newest rows are written last
    backend_->sample(fake, engine_options_for(config_).sampler, state_.seed ^ 0x5bd1e995u ^ uint64_t(state_.step));
    const std::vector<float> refined = backend_->energy(fake);
    const double mine = guard_max(max_abs_f(real.data(), int64_t(real.size())),
                                  max_abs_f(refined.data(), int64_t(refined.size())));
    return guard_max(validation_max_abs_f(), max_abs_f_all_ranks(comm_, mine));
  }

  // --- checkpoints ---

  // Writes `s` as each of `names` (collective with several ranks: each sends rank 0 its state; rank 0
  // checks that they agree on all but their shards — the same steps on all-reduced gradients: a difference
  // is a bug — and writes every rank's replay-buffer shard and RNG state), then drops the oldest epoch_N/
  // beyond train.keep_checkpoints. `s` has passed the guard.
  void write_checkpoints(const TrainState& s, const std::vector<std::string>& names) {
    OffTheClock off(off_clock_s_, off_clock_depth_);
    EBM_PROFILE_RANGE("checkpoint");
    TrainState all = s;
    if (distributed()) {
      const std::vector<std::string> parts = comm_.gather(pack_train_state(s), 0);
      if (!root()) return;
      for (int r = 0; r < comm_.size(); ++r) {
        TrainState p = unpack_train_state(parts[size_t(r)]);
        if (p.params != s.params || p.ema != s.ema || p.sn_u != s.sn_u || p.adam.m != s.adam.m || p.adam.v != s.adam.v || p.adam.t != s.adam.t ||
            p.step != s.step || p.epoch != s.epoch || p.batch != s.batch)
          fail_at("every rank's state equals rank 0's", __FILE__, __LINE__,
                  "at step " + std::to_string(s.step) + ", rank " + std::to_string(r) +
                      "'s parameters, Adam state or counters differ from rank 0's: the ranks drifted apart");
        all.rank_buffers.push_back(std::move(p.buffer));
        all.rank_rngs.push_back(std::move(p.rng));
      }
    }
    int64_t newest_epoch = 0;
    for (const std::string& name : names) {
      save_checkpoint((run_dir_ / name).string(), net_, all, config_);
      if (name.starts_with("epoch_")) newest_epoch = std::max<int64_t>(newest_epoch, std::stoll(name.substr(6)));
    }
    saved_step_ = s.step;
    // The newest `keep` of this history's epochs (up to the one just written) stay. Later-numbered folders
    // are from a history a resume abandoned: not counted, and replaced when the run gets there.
    const int keep = config_.train.keep_checkpoints;
    if (newest_epoch > 0 && keep > 0) {
      auto epochs = epoch_checkpoints(run_dir_);
      std::erase_if(epochs, [&](const auto& e) { return e.first > newest_epoch; });
      for (size_t i = 0; i + size_t(keep) < epochs.size(); ++i) {
        std::error_code ec;
        fs::remove_all(epochs[i].second, ec);
      }
    }
  }

  // The pending state has passed the guard: write what was wanted of it; it is the rollback target now.
  void pending_passed() {
    Pending p = std::move(*pending_);
    pending_.reset();
    if (!p.names.empty()) write_checkpoints(p.state, p.names);
    good_ = std::move(p.state);
  }

  // Checkpoints `names` of the state now, once the next step's forward pass has checked it.
  void checkpoint_after_next_step(std::vector<std::string> names) {
    OffTheClock off(off_clock_s_, off_clock_depth_);
    if (pending_ && pending_->state.step == state_.step) {
      for (auto& n : names)
        if (std::find(pending_->names.begin(), pending_->names.end(), n) == pending_->names.end())
          pending_->names.push_back(n);
      return;
    }
    pending_ = Pending{snapshot(), std::move(names)};
  }

  // --- logs and the console ---

  void log(const json& j) {
    if (!root()) return;
    metrics_ << j.dump() << "\n";
    metrics_.flush();
    if (tb_) tb_->add_metrics(j);
    if (options_.on_record) options_.on_record(j);
  }

  // Reads back the steps run since the last call; false (and `why_`) when one of them diverged. Step k's
  // forward pass ran on the weights of step k−1: when it passes, a state pending at k−1 is good.
  bool drain() {
    EBM_PROFILE_RANGE("metrics");
    const auto ms = backend_->drain_metrics();
    int64_t step = state_.step - int64_t(ms.size());
    for (const StepMetrics& m : ms) {
      ++step;
      if (!std::isfinite(m.loss) || !within_guard(m.max_abs_f)) {
        set_divergence(step, "", std::isfinite(m.loss) ? m.max_abs_f : NAN);
        return false;
      }
      if (pending_ && pending_->state.step == step - 1) pending_passed();
      const double v[5] = {m.loss, m.reg, m.cdiv, m.real, m.fake};
      for (int i = 0; i < 5; ++i) state_.epoch_sums[i] += v[i];
      state_.epoch_sums[5] += 1;
      if (step % config_.train.log_every == 0)
        log({{"event", "step"}, {"step", step}, {"epoch", state_.epoch + 1}, {"loss", m.loss}, {"reg", m.reg},
             {"cdiv", m.cdiv}, {"real", m.real}, {"fake", m.fake}, {"lr", lr_at(step - 1)}, {"ms_per_step", ms_per_step()}});
    }
    return true;
  }

  // The learning rate of the step after `steps_taken` steps in the current epoch: train.lr as rollbacks
  // left it (state_.lr) times the schedule's factor (host/train/lr_schedule.hpp), planned over train.epochs —
  // train.max_steps stops a run without reshaping it, so a run stopped there and resumed is the whole run.
  double lr_at(int64_t steps_taken) const {
    return state_.lr * lr_factor(config_.train, steps_taken, state_.epoch, config_.train.epochs * batches_per_epoch_);
  }

  // Gives the backend the next step's learning rate where the schedule changed it.
  void apply_lr_schedule() {
    const double lr = lr_at(state_.step);
    if (lr == lr_now_) return;
    backend_->set_lr(lr);
    lr_now_ = lr;
  }

  double training_seconds() const {
    return std::chrono::duration<double>(Clock::now() - t_start_).count() - off_clock_s_;
  }
  double ms_per_step() const { return steps_here_ > 0 ? 1000 * training_seconds() / double(steps_here_) : 0.0; }

  // The epoch in progress, or — between an epoch's end and the next one's first step — the one just ended,
  // so that a run stopped on an epoch boundary shows that epoch's numbers, not zeros.
  bool between_epochs() const { return state_.epoch_sums[5] == 0 && state_.epoch > 0; }

  void progress(bool force) {
    if (!root()) return;
    const double since = std::chrono::duration<double>(Clock::now() - t_print_).count();
    if (!force && !(tty_ ? since > 0.2 : since > 15.0)) return;
    t_print_ = Clock::now();
    const double eta = ms_per_step() * double(total_steps_ - state_.step) / 1000.0;
    const bool ended = between_epochs();
    out() << (tty_ ? "\r\033[K" : "") << "step " << state_.step << "/" << total_steps_ << "  epoch "
              << (ended ? state_.epoch : state_.epoch + 1) << "/" << config_.train.epochs << "  "
              << fmt("%.1f", ms_per_step()) << " ms/step  ETA " << duration_str(eta) << "  "
              << metrics_text(ended ? last_epoch_sums_ : state_.epoch_sums) << (tty_ ? "" : "\n") << std::flush;
  }

  void sample_grid(int epoch) {
    if (!pictures_.enabled(err())) return;
    OffTheClock off(off_clock_s_, off_clock_depth_);
    const GenerateConfig& g = config_.generate;
    Tensor x({g.n, net_.in_c, net_.in_h, net_.in_w});
    Rng init(config_.seed + uint64_t(epoch), RngStream::kInit);
    init.offset = uint64_t(1) << 48;  // far from the parameter initialisation's blocks
    init.uniform(x.ptr(), x.numel(), -1.0f, 1.0f);
    backend_->sample(x, {g.steps, float(g.step_size), float(g.noise), float(config_.sampler.grad_clip)},
                     config_.seed + uint64_t(epoch));
    const std::vector<float> f = backend_->energy(x);
    std::vector<std::string> labels;
    for (float v : f) labels.push_back("E=" + fmt("%.3f", -v));
    const int cols = int(std::ceil(std::sqrt(double(g.n))));
    fs::create_directories(run_dir_ / "samples");
    const std::string path = (run_dir_ / "samples" / ("epoch_" + std::to_string(epoch) + ".png")).string();
    const Image grid = image_grid(x.ptr(), g.n, net_.in_h, net_.in_w, cols, labels, 3);
    write_png(path, grid);
    if (tb_) tb_->add_image("samples", state_.step, grid);
    out() << "  samples: " << path << "\n";
  }

  // Rank 0: the event files in tb/ cut back to the step this run starts from, as metrics.jsonl is (also with
  // train.tensorboard off: no step of an abandoned history stays there), and with it on, appended to from here.
  // A build without protobuf says so once and trains on.
  void open_tensorboard() {
    const std::string dir = (run_dir_ / "tb").string();
    if (tensorboard_available() && fs::is_directory(dir)) truncate_tensorboard_events(dir, state_.step);
    if (!config_.train.tensorboard) return;
    if (!tensorboard_available()) {
      out() << std::flush;
      err() << "ebm_train: warning: this build writes no TensorBoard files (train.tensorboard is on): "
            << tensorboard_missing_reason() << "; training goes on (train.tensorboard=false silences this)" << std::endl;
      return;
    }
    tb_ = std::make_unique<TensorBoardWriter>(dir, err());
  }

  // train.tensorboard, rank 0, at an epoch end: histograms of E = −f (sampling weights, as ebm_score) of real
  // images — the test set's first kHistogramImages — and of samples — this rank's newest kHistogramImages
  // replay-buffer rows. Forward passes only: no random stream moves and nothing training holds changes.
  void energy_histograms() {
    if (!tb_) return;
    OffTheClock off(off_clock_s_, off_clock_depth_);
    constexpr int64_t kHistogramImages = 1000;
    auto energies = [&](const Tensor& t, bool newest) {  // E of t's first or newest rows
      const Tensor rows = rows_of(t, kHistogramImages, newest);
      return rows.dim(0) == 0 ? std::vector<float>() : energies_from_f(backend_->energy(rows));
    };
    if (data_->test.numel() > 0) tb_->add_histogram("energy/real", state_.step, energies(data_->test, false));
    tb_->add_histogram("energy/samples", state_.step, energies(backend_->buffer(), true));  // oldest row first
    tb_->flush();
  }

  // train.eval: eval.n chains by the evaluation protocol (host/eval/eval_quality.hpp, seed = the run's seed, so every
  // evaluation starts from the same noise), drawn with the backend's sampling weights; with several ranks each
  // draws every W-th chunk and rank 0 scores them all. Rank 0's report (the others' is empty).
  std::optional<QualityReport> evaluate_quality() {
    OffTheClock off(off_clock_s_, off_clock_depth_);
    EBM_PROFILE_RANGE("eval");
    const int n = config_.train.eval.n, w = comm_.size(), r = comm_.rank();
    const int64_t img = net_.image_size();
    const Tensor start = uniform_start(n, net_, config_.seed);
    std::string mine;  // this rank's chunks, in order, as raw floats
    for (int first = 0, c = 0; first < n; first += kEvalChunk, ++c) {
      if (c % w != r) continue;
      const int m = std::min(kEvalChunk, n - first);
      Tensor chunk({m, net_.in_c, net_.in_h, net_.in_w});
      std::copy_n(start.ptr() + first * img, m * img, chunk.ptr());
      backend_->sample(chunk, generate_params(config_), config_.seed + uint64_t(c));
      mine.append(reinterpret_cast<const char*>(chunk.ptr()), size_t(m * img) * sizeof(float));
    }
    std::vector<std::string> parts = distributed() ? comm_.gather(mine, 0) : std::vector<std::string>{mine};
    if (!root()) return std::nullopt;
    Tensor x({n, net_.in_c, net_.in_h, net_.in_w});
    std::vector<size_t> used(parts.size(), 0);
    for (int first = 0, c = 0; first < n; first += kEvalChunk, ++c) {
      const size_t bytes = size_t(std::min(kEvalChunk, n - first) * img) * sizeof(float);
      std::string& part = parts[size_t(c % w)];
      EBM_CHECK(used[size_t(c % w)] + bytes <= part.size(), "eval: a rank sent fewer samples than its chunks hold");
      std::memcpy(x.ptr() + first * img, part.data() + used[size_t(c % w)], bytes);
      used[size_t(c % w)] += bytes;
    }
    try {
      return quality_->score(x);
    } catch (const UserError& e) {  // samples the classifier cannot score (NaN): said, and training goes on
      err() << "ebm_train: warning: no sample quality at step " << state_.step << ": " << e.what() << "\n";
      return std::nullopt;
    }
  }

  // Training curves from metrics.jsonl (so they survive resumes): step values and epoch means.
  void curves() {
    if (!root() || !pictures_.enabled(err())) return;
    OffTheClock off(off_clock_s_, off_clock_depth_);
    std::ifstream in(run_dir_ / "metrics.jsonl");
    std::vector<PlotSeries> s = {{"loss", {}, {}}, {"cdiv", {}, {}}, {"real", {}, {}}, {"fake", {}, {}}};
    PlotSeries is{"IS", {}, {}}, fid{"FID", {}, {}};
    std::string line;
    while (std::getline(in, line)) {
      try {
        const auto j = json::parse(line);
        if (j.value("event", "") == "eval") {
          is.x.push_back(j.at("step").get<double>()), is.y.push_back(j.at("is").get<double>());
          fid.x.push_back(j.at("step").get<double>()), fid.y.push_back(j.at("fid").get<double>());
        }
        if (j.value("event", "") != "step") continue;
        for (auto& ser : s) {
          ser.x.push_back(j.at("step").get<double>());
          ser.y.push_back(j.at(ser.name).get<double>());
        }
      } catch (const std::exception&) {
      }
    }
    if (s[0].x.size() < 2) return;
    Image plot = line_plot(s, "training (per logged step)", "step");
    if (!is.x.empty()) {  // train.eval: sample quality below, one chart each (their scales differ)
      plot = stack_vertically(plot, line_plot({is}, "IS (higher is better)", "step"));
      plot = stack_vertically(plot, line_plot({fid}, "FID (lower is better)", "step"));
    }
    write_png((run_dir_ / "curves.png").string(), plot);
  }

  // The run folder's size at the end, so that disk use is never a surprise.
  void report_folder() {
    const auto epochs = epoch_checkpoints(run_dir_);
    const int keep = config_.train.keep_checkpoints;
    out() << "run folder " << run_dir_.string() << ": " << human_bytes(folder_bytes(run_dir_)) << " ("
          << (fs::exists(run_dir_ / "last") ? "last/ and " : "") << epochs.size() << " epoch checkpoint"
          << (epochs.size() == 1 ? "" : "s") << "; train.keep_checkpoints = " << keep
          << (keep == 0 ? ", all kept" : "") << ")\n";
  }

  // What the user can fall back on, said plainly.
  std::string fallback() const {
    const std::string lr = "train.lr (now " + fmt("%.3g", state_.lr) + ")";
    const std::string hint = config_.train.divergence.action == "stop"
                                 ? "; try a lower " + lr + " or train.divergence.action=rollback"
                                 : "; try a lower " + lr + " or another seed";
    if (saved_step_ >= 0)
      return "the last good checkpoint is " + (run_dir_ / "last").string() + " (step " + std::to_string(saved_step_) +
             "): resume it with a lower learning rate, e.g. --resume " + (run_dir_ / "last").string() +
             " --set train.lr=" + fmt("%.3g", state_.lr * 0.5) +
             (config_.train.divergence.action == "stop" ? " (or set train.divergence.action=rollback)" : "");
    if (options_.resume)
      return "this run wrote no checkpoint; the one it resumed from, " + *options_.resume + " (step " +
             std::to_string(start_step_) + "), is unchanged" +
             (good_ ? "" : ", but its own weights already fail the guard with these settings (the first step after "
                           "resuming diverged): raise train.divergence.max_abs_f or resume an earlier checkpoint") +
             (good_ ? hint : "");
    if (!good_)
      return "no good checkpoint exists: the starting weights already fail the guard (step " +
             std::to_string(start_step_ + 1) + "'s forward pass); raise train.divergence.max_abs_f or change model.*";
    return "no good checkpoint exists yet: the run diverged before its first checkpoint was written" + hint;
  }

  // After `why_`: roll back to the newest good state with a lower learning rate and a new seed (returns −1:
  // go on), or stop (returns kRunDiverged). `may_roll_back` is false when a signal asked the run to stop.
  int diverged(bool may_roll_back = true) {
    pending_.reset();  // what no forward pass has checked is not kept
    if (tty_) out() << "\n" << std::flush;
    err() << "ebm_train: " << why_ << std::endl;
    log({{"event", "diverged"}, {"step", diverged_step_}, {"message", why_}});
    const auto& d = config_.train.divergence;
    if (may_roll_back && d.action == "rollback" && state_.rollbacks < d.max_rollbacks && good_) {
      const int64_t n = state_.rollbacks + 1;
      TrainState back = *good_;
      back.rollbacks = n;
      back.lr = good_->lr * d.lr_factor;
      back.seed = good_->seed + 1000003ull * uint64_t(n);
      restore(back);
      backend_->reseed(back.seed);
      backend_->drain_metrics();
      good_ = back;
      adopt(std::move(back));
      if (root()) {  // the records of the abandoned steps go; the events that say why stay
        metrics_.close();
        truncate_metrics(run_dir_ / "metrics.jsonl", state_.step, /*keep_events=*/true);
        metrics_.open(run_dir_ / "metrics.jsonl", std::ios::app);
        if (tb_) tb_->rewind(state_.step);
      }
      out() << "rolled back to step " << state_.step << " (rollback " << n << "/" << d.max_rollbacks << "), lr "
            << fmt("%.3g", state_.lr) << ", seed " << state_.seed << "\n";
      log({{"event", "rollback"}, {"step", state_.step}, {"lr", state_.lr}, {"seed", state_.seed}, {"rollbacks", n}});
      return -1;
    }
    if (may_roll_back && d.action == "rollback" && good_)
      err() << "gave up after " << state_.rollbacks << " rollbacks (train.divergence.max_rollbacks)\n";
    fallback_ = fallback();
    err() << fallback_ << std::endl;
    curves();
    return kRunDiverged;
  }

  // The run's end (max_steps, a signal, or the last epoch done): the last checkpoint, once the probe has
  // checked its weights. Returns the exit code.
  int finish(const std::string& reason) {
    const bool signal = reason == "signal" || reason == "stop";  // asked for: never rolled back
    if (!drain()) return diverged(!signal);
    std::vector<std::string> names{"last"};
    if (pending_) {  // wanted of this very state (an epoch end, a checkpoint_every step): written with it
      EBM_CHECK(pending_->state.step == state_.step, "a pending checkpoint outlived the step that checks it");
      for (auto& n : pending_->names)
        if (n != "last") names.push_back(n);
      pending_.reset();
    }
    // A resumed run stopped before its first step leaves the checkpoint it started from as it is.
    const bool ran = state_.step > start_step_ || !options_.resume;
    if (ran) {
      TrainState s = snapshot();
      const double worst = probe(s.buffer);
      if (!within_guard(worst)) {
        set_divergence(state_.step, "its weights, probed before the last checkpoint", worst);
        return diverged(!signal);
      }
      write_checkpoints(s, names);
      good_ = std::move(s);
    }
    log({{"event", "stopped"}, {"step", state_.step}, {"reason", reason}});
    progress(true);
    out() << (tty_ ? "\n" : "") << (reason == "done" ? "done: " + std::to_string(state_.step) + " steps"
                                                      : "stopped (" + reason + ") at step " + std::to_string(state_.step))
          << (ran ? "; checkpoint " + (run_dir_ / "last").string()
                  : "; no step ran since " + *options_.resume + ", which is unchanged")
          << "\n";
    curves();
    return kRunOk;
  }

  // The run complete (the config's epochs or max_steps reached): a resume of it has nothing to do.
  bool complete() const {
    return state_.epoch >= config_.train.epochs || (config_.train.max_steps > 0 && state_.step >= config_.train.max_steps);
  }

  // One training step, and what falls due before it (an epoch's start or end, the run's end) and after it
  // (the read-back of metrics at log_every, checkpoints, the guard); the RunResult once the run has ended.
  // A divergence rolled back (diverged() returning −1) goes on from the good state, also when it was found
  // at the very end.
  std::optional<int> next_step() {
    for (;;) {
      if (!in_epoch_) {
        if (state_.epoch >= config_.train.epochs) {
          const int r = finish("done");
          if (r >= 0) return r;
          continue;
        }
        backend_->begin_epoch(state_.epoch);
        epoch_clock_start_ = training_seconds();
        epoch_steps_start_ = steps_here_;
        in_epoch_ = true;
      }
      if (state_.batch >= batches_per_epoch_) {  // the epoch's steps are done
        in_epoch_ = false;
        if (!end_epoch()) {
          const int r = diverged();
          if (r >= 0) return r;
        }
        continue;
      }
      if (config_.train.max_steps > 0 && state_.step >= config_.train.max_steps) {
        const int r = finish("train.max_steps");
        if (r >= 0) return r;
        in_epoch_ = false;  // rolled back: the epoch starts again from the good state
        continue;
      }
      if (stop_requested())  // a stop asked for is never rolled back
        return finish(options_.stop && options_.stop->load() == kStopByCall ? "stop" : "signal");
      if (state_.step == options_.profile_begin) backend_->set_profiling(true);
      apply_lr_schedule();
      {
        EBM_PROFILE_RANGE("step");
        backend_->train_step(state_.batch);
      }
      ++state_.step;
      ++state_.batch;
      ++steps_here_;
      if (state_.step == options_.profile_end) backend_->set_profiling(false);
      const bool ckpt = config_.train.checkpoint_every > 0 && state_.step % config_.train.checkpoint_every == 0;
      const bool check_pending = pending_ && pending_->state.step == state_.step - 1;
      if (!(ckpt || check_pending || state_.step % config_.train.log_every == 0 || state_.batch == batches_per_epoch_))
        return std::nullopt;
      bool ok = drain();
      if (ok) progress(false);
      if (ok && ckpt && state_.batch < batches_per_epoch_) {  // an epoch end validates and checkpoints below
        const double worst = validation_max_abs_f();
        ok = within_guard(worst);
        if (!ok) set_divergence(state_.step, "validation of its checkpoint", worst);
        else checkpoint_after_next_step({"last"});
      }
      if (!ok) {
        const int r = diverged();
        if (r >= 0) return r;
        in_epoch_ = false;  // rolled back
      }
      return std::nullopt;
    }
  }

  // Validation (checked by the guard), the summary line, the epoch's checkpoints (written once the next
  // step has checked them), its sample grid. False (and `why_`) when validation diverged.
  bool end_epoch() {
    const int epoch = int(state_.epoch) + 1;
    const double seconds = training_seconds() - epoch_clock_start_;
    const int64_t steps = steps_here_ - epoch_steps_start_;
    ValidationMetrics v;
    {
      OffTheClock off(off_clock_s_, off_clock_depth_);
      if (config_.train.validate && data_->test.numel() > 0) {
        EBM_PROFILE_RANGE("validate");
        v = backend_->validate(data_->test, state_.epoch);
      }
    }
    if (!config_.train.validate) v.max_abs_f = validation_max_abs_f();  // the guard checks every checkpoint on it
    std::optional<QualityReport> quality;  // weights the guard is about to refuse are not worth sampling
    if (quality_ && epoch % config_.train.eval.every == 0 && within_guard(v.max_abs_f)) quality = evaluate_quality();
    if (tty_) progress(true);  // finish the live line; in a log the summary below says it all
    auto mean = [&](int i) { return state_.epoch_sums[5] > 0 ? state_.epoch_sums[i] / state_.epoch_sums[5] : 0.0; };
    out() << (tty_ ? "\n" : "") << "Epoch " << epoch << "/" << config_.train.epochs << " - " << fmt("%.1f", seconds)
          << "s " << fmt("%.0f", steps > 0 ? 1000 * seconds / double(steps) : 0.0) << "ms/step - cdiv: "
          << fmt("%.4f", mean(2)) << " - fake: " << fmt("%.4f", mean(4)) << " - loss: " << fmt("%.4f", mean(0))
          << " - real: " << fmt("%.4f", mean(3)) << " - reg: " << fmt("%.4f", mean(1));
    json rec = {{"event", "epoch"}, {"epoch", epoch}, {"step", state_.step}, {"loss", mean(0)}, {"reg", mean(1)},
                {"cdiv", mean(2)}, {"real", mean(3)}, {"fake", mean(4)}, {"seconds", seconds}};
    if (config_.train.validate) {
      out() << " - val_cdiv: " << fmt("%.4f", v.cdiv) << " - val_fake: " << fmt("%.4f", v.fake)
            << " - val_real: " << fmt("%.4f", v.real);
      rec["val_cdiv"] = v.cdiv;
      rec["val_real"] = v.real;
      rec["val_fake"] = v.fake;
      rec["val_max_abs_f"] = std::isfinite(v.max_abs_f) ? json(v.max_abs_f) : json(nullptr);
    }
    if (quality) out() << " - IS: " << fmt("%.3f", quality->is) << " - FID: " << fmt("%.2f", quality->fid);
    out() << "\n";
    log(rec);
    if (quality) {
      json q = quality_json(*quality);
      q["event"] = "eval";
      q["epoch"] = epoch;
      q["step"] = state_.step;
      log(q);
    }
    if (!within_guard(v.max_abs_f)) {
      set_divergence(state_.step, "validation at the end of epoch " + std::to_string(epoch), v.max_abs_f);
      return false;
    }
    last_epoch_sums_ = state_.epoch_sums;
    state_.epoch += 1;
    state_.batch = 0;
    state_.epoch_sums.fill(0.0);
    checkpoint_after_next_step({"epoch_" + std::to_string(epoch), "last"});
    if (root()) sample_grid(epoch);  // the other ranks go on to the next epoch's first collective and wait
    if (root()) energy_histograms();
    curves();
    return true;
  }

  const TrainRunOptions& options_;
  Config config_;
  fs::path run_dir_;
  SingleProcessCommunicator single_;
  Communicator& comm_;
  std::ostream quiet_{nullptr};  // no buffer: discards what it is given
  NetSpec net_;
  std::unique_ptr<Backend> backend_;
  std::string kind_;                // "cpu" or "cuda": whose RNG layout the backend's state is in
  std::string why_;                 // why the run diverged
  std::string fallback_;            // what to fall back on, said when the run ended diverged
  int64_t diverged_step_ = 0;       // and at which step
  std::string resume_note_;         // the resumed checkpoint's learning rate or seed, where rollbacks changed them
  Dataset data_storage_;             // the data set, loaded by start()
  const Dataset* data_ = nullptr;
  bool in_epoch_ = false;           // begin_epoch has run for state_.epoch
  std::optional<int> result_;       // the RunResult, once the run has ended
  int lock_fd_ = -1;                // rank 0: the flock on output_dir/.lock while the run may write
  int64_t data_images_ = 0;
  uint64_t data_fingerprint_ = 0;
  TrainState state_;                // the counters and running sums; the tensors live in the backend
  std::optional<TrainState> good_;  // the newest state that passed the guard: where a rollback goes
  std::optional<Pending> pending_;  // the newest state awaiting its check
  std::array<double, 6> last_epoch_sums_{};
  int64_t start_step_ = 0, saved_step_ = -1;
  double lr_now_ = 0;               // the learning rate the backend holds now
  int64_t batches_per_epoch_ = 0, total_steps_ = 0, steps_here_ = 0, epoch_steps_start_ = 0;
  std::ofstream metrics_;
  std::unique_ptr<TensorBoardWriter> tb_;  // train.tensorboard: rank 0's event files in tb/
  bool tty_ = false;
  std::unique_ptr<QualityMeter> quality_;  // train.eval: the data set's classifier and reference statistics
  OptionalPictures pictures_{"ebm_train", "samples/epoch_N.png and curves.png"};  // skipped without libpng
  Clock::time_point t_start_, t_print_;
  double off_clock_s_ = 0, epoch_clock_start_ = 0;
  int off_clock_depth_ = 0;
};

std::vector<SettingChange> resume_changes(const Config& checkpoint, const Config& now, const std::string& dir) {
  std::map<std::string, json> was, is;
  flatten(config_to_json(checkpoint), "", was);
  flatten(config_to_json(now), "", is);
  std::vector<SettingChange> changes;
  for (const auto& [key, value] : is) {
    const auto it = was.find(key);
    if (it == was.end() || it->second == value) continue;
    if (const char* keeps = fixed_on_resume(key))
      user_fail("--resume ", dir, ": ", key, " is ", shown_json(it->second), " in the checkpoint but ", shown_json(value),
                " now; a resumed run keeps ", keeps, " — start a new run (another output_dir) to change it");
    changes.push_back({key, it->second, value});
  }
  return changes;
}

int run_training(const TrainRunOptions& o) {
  TrainingRun run(o);
  if (const std::optional<int> r = run.start()) return *r;
  for (;;)
    if (const std::optional<int> r = run.advance()) return *r;
}

Training::Training(TrainRunOptions o) : options_(std::move(o)), run_(std::make_unique<TrainingRun>(options_)) {
  if (const std::optional<int> r = run_->start()) run_->finished(*r);
}
Training::~Training() = default;
std::optional<int> Training::advance() { return run_->advance(); }
std::optional<int> Training::result() const { return run_->result(); }
int64_t Training::step() const { return run_->step(); }
int64_t Training::total_steps() const { return run_->total_steps(); }
const Config& Training::config() const { return run_->config(); }
const NetSpec& Training::net() const { return run_->net(); }
std::string Training::divergence() const { return run_->divergence(); }
std::vector<float> Training::sampling_params() { return run_->sampling_params(); }
void Training::save(const std::string& dir) { run_->save(dir); }

}  // namespace ebm
