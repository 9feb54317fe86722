#include "host/train/training_run.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "engine/communicator.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/error.hpp"
#include "engine/loss.hpp"
#include "engine/profiling.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/io/atomic_file.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/dataset.hpp"
#include "host/io/input_file.hpp"
#include "host/io/json_text.hpp"
#include "host/train/checkpoint_keeper.hpp"
#include "host/train/distributed.hpp"
#include "host/train/divergence_guard.hpp"
#include "host/train/epoch_reports.hpp"
#include "host/train/lr_schedule.hpp"
#include "host/train/memory_plan.hpp"
#include "host/train/resume.hpp"
#include "host/train/run_folder.hpp"
#include "host/train/run_log.hpp"
#ifdef EBM_HAVE_CUDA
#include "engine/cuda/cuda_backend.hpp"
#endif

namespace fs = std::filesystem;

namespace ebm {
namespace {

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

}  // namespace

// The training loop: start() makes every check and prepares the run, advance() runs one step and what falls
// due around it. It drives the run's collaborators, each with one job (host/train/): the run folder, the
// resume, the run log (metrics.jsonl, TensorBoard, the console and the clock), the divergence guard (good
// states, rollbacks), the checkpoint keeper (checkpoints wait for the guard's verdict) and the epoch reports
// (sample grids, histograms, train.eval, curves). The engine computes; the backend holds the tensors.
//
// With several ranks every rank runs this same loop in lockstep: the same steps, the same collectives in
// the same order (inside train_step and validate, the stop flag each step, the checkpoint gather, the
// guard's probe, train.eval's gather), and the same decisions, taken from all-reduced metrics. Rank 0 alone
// owns the run directory and the console.
class TrainingRun {
 public:
  explicit TrainingRun(const TrainRunOptions& o)
      : options_(o),
        config_(o.config),
        comm_(o.comm ? *o.comm : single_),
        advice_{o.python_api},
        folder_(config_.output_dir, advice_),
        log_(config_.output_dir, comm_.rank() == 0, o.out ? *o.out : std::cout, o.err ? *o.err : std::cerr,
             o.on_record),
        guard_(config_.train.divergence),
        keeper_(&folder_, net_, config_, comm_),
        reports_(config_, net_, config_.output_dir, comm_, log_) {}
  TrainingRun(const TrainingRun&) = delete;
  TrainingRun& operator=(const TrainingRun&) = delete;

  // The run writes its resolved config to output_dir/config.json. When that is the file the config was read
  // from, writing it would replace the user's text (its layout, the keys left to defaults, the values before
  // --set): refused, unless the text is what a run wrote there (resuming a run with its own config.json and
  // --set train.epochs=20 replaces one run-written file with another, and the checkpoint and metrics.jsonl's resume
  // event keep the old values).
  void check_config_file_kept() const {
    if (options_.config_file.empty()) return;
    const std::filesystem::path written = folder_ / "config.json";
    std::error_code ec;
    if (!std::filesystem::exists(written, ec) || !std::filesystem::equivalent(options_.config_file, written, ec) || ec)
      return;
    // A run writes its config as nlohmann's dump(2): keys sorted, two-space indent. Text in exactly that form is a
    // run's (this build's resolved config, or an older build's without the keys added since, which a resume fills
    // in) and loses nothing when replaced.
    const std::string text = read_text_file(written.string(), "a JSON config file", size_t{16} << 20);
    if (const JsonText j = read_json_text(text);
        j.problem == JsonText::Problem::kNone && j.value.is_object() && text == j.value.dump(2) + "\n")
      return;
    user_fail("config ", options_.config_file, " is this run's own ", written.string(),
              ", which the run replaces with its resolved config (defaults filled in",
              advice_.python ? ", overrides applied" : ", --set values applied",
              "); copy it out of the folder and give the copy, or choose another output_dir");
  }

  // Every check, then the run folder (nothing is written before every check has passed). The run's result
  // when there is nothing to do (a resume of a complete run), else nullopt: advance() trains.
  std::optional<int> start() {
    comm_.set_timeout(config_.train.comm_timeout_s);
    net_ = net_spec_for(config_);
    require_objective_net(engine_options_for(config_));  // before any work: the objective and the head agree
    std::optional<Resume> resume;
    // Checks that write nothing come first, on rank 0: the checkpoint to resume and what changes, then the
    // output folder. An error there is every rank's error, and leaves no trace.
    agree(comm_, [&] {
      if (options_.resume) {
        if (options_.resume->empty())
          user_fail(advice_.python ? "resume" : "--resume", ": the checkpoint path is empty; give a checkpoint directory (e.g. ",
                    (folder_ / "last").string(), "), or leave ", advice_.python ? "resume" : "--resume",
                    " out to start a fresh run");
        resume = read_resume(*options_.resume, config_, comm_.size(), advice_);
      }
      check_output_dir(folder_.path());
      folder_.check_role(options_.resume);
      check_config_file_kept();
    }, /*root_only=*/true);
    if (options_.resume && !resume) resume.emplace();  // the other ranks: their share comes below
    if (distributed() && resume) resume->state = share_resumed(comm_, resume->state);
    if (resume) {
      state_.step = resume->state.step, state_.epoch = resume->state.epoch;  // for complete()
      if (complete()) {  // nothing written: the folder and the checkpoint stay as they are
        out() << "nothing to do: the run is complete (step " << state_.step << ", epoch " << state_.epoch << "/"
              << config_.train.epochs << (config_.train.max_steps > 0 ? ", train.max_steps " +
                                                                            std::to_string(config_.train.max_steps)
                                                                      : std::string())
              << "); raise train.epochs or train.max_steps to train on\n";
        return kRunOk;
      }
    }
    load_data(resume ? &resume->state : nullptr);
    make_backend_for_run(resume ? &resume->state : nullptr);
    // Every rank: each draws its share of the chains, and rank 0 scores them. A classifier not cached yet is
    // trained by every rank at once (the same one: no rank waits on another in a collective), saved by rank 0.
    // Not for a run that ends before its first eval (train.max_steps or train.epochs below train.eval.every): the
    // classifier would be trained (1-2 minutes on 2 cores, a fresh data folder) and never used. A rollback only
    // repeats epochs at or below the last, so none of them is an eval epoch either.
    const int64_t every = config_.train.eval.every;
    const int64_t last_epoch = batches_per_epoch_ > 0 ? total_steps_ / batches_per_epoch_ : 0;
    if (every > 0 && last_epoch >= every) agree(comm_, [&] { reports_.prepare_eval(options_.classifier); });
    const std::string eval_every = "eval: every " + std::to_string(every) + " epoch" + (every == 1 ? "" : "s");
    if (const QualityMeter* q = reports_.quality())
      out() << eval_every << ", " << config_.train.eval.n << " samples; classifier " << q->classifier().dir
            << " (test accuracy " << fmt("%.2f", 100 * q->classifier().test_accuracy) << "%)\n";
    else if (every > 0)
      out() << eval_every << ", the first at the end of epoch " << every << "; this run ends before it"
            << (config_.train.max_steps > 0 && total_steps_ == config_.train.max_steps
                    ? " (train.max_steps " + std::to_string(config_.train.max_steps) + ")"
                    : std::string(" (train.epochs ") + std::to_string(config_.train.epochs) + ")")
            << ": no eval, no classifier\n";

    // Every check has passed: from here on the run writes.
    if (root()) {
      for (const std::string& name : folder_.prepare())
        out() << "removed " << (folder_ / name).string() << " (a half-written checkpoint a killed run left)\n";
      write_file_atomic((folder_ / "config.json").string(),
                        [&](std::ofstream& f) { f << config_to_json(config_).dump(2) << "\n"; });
    }
    if (resume) {
      TrainState s = std::move(resume->state);
      s.rank_buffers.clear();  // this rank's own shard is in s.buffer
      s.rank_rngs.clear();
      restore(s);
      adopt(std::move(s));
      log_.open_metrics(state_.step);
      out() << "resumed from " << *options_.resume << " at step " << state_.step << " (epoch " << state_.epoch + 1
            << ", batch " << state_.batch << ")\n";
    } else {
      state_.lr = config_.train.lr;
      state_.seed = config_.seed;
      log_.open_metrics(std::nullopt);
    }
    agree(comm_, [&] { log_.open_tensorboard(state_.step, config_.train.tensorboard); }, /*root_only=*/true);
    if (resume) {
      if (const std::string line = resume_line(*resume, state_.step); !line.empty()) out() << line << "\n";
      log_.record(resume_record(*resume, state_.step));
      if (!resume->note.empty()) out() << resume->note << "\n";
    }
    start_step_ = state_.step;
    keeper_.await(snapshot());  // the starting state: good once its first step's forward pass passes
    log_.set_tty(root() && !distributed() && isatty(fileno(stdout)));  // mpirun gives ranks a pty, but its output is a log
    if (root()) reports_.check_pictures();  // a build without libpng says so now, not at the first epoch end
    log_.start_clock();
    return std::nullopt;
  }

  // One training step and what falls due around it (module comment of Training in the header); the result
  // once the run has ended. The run's end is said (its folder's size) once.
  std::optional<int> advance() {
    if (result_) return result_;
    result_ = next_step();
    if (result_ && root()) out() << folder_.size_report(config_.train.keep_checkpoints) << "\n";
    if (result_) folder_.unlock();  // the run writes no more
    return result_;
  }

  std::optional<int> result() const { return result_; }
  void finished(int result) { result_ = result; }  // start() found nothing to do
  int64_t step() const { return state_.step; }
  int64_t total_steps() const { return total_steps_; }
  const Config& config() const { return config_; }
  const NetSpec& net() const { return net_; }
  // Why the run diverged and what to fall back on, once it has ended so ("" otherwise).
  std::string divergence() const { return result_ == kRunDiverged ? guard_.why() + "; " + fallback_ : std::string(); }
  std::vector<float> sampling_params() { return backend_->sampling_params(); }

  // A checkpoint of the state now in `dir`, once the guard's probe has passed it (the probe's sampler has its
  // own stream: the training streams do not move). Steps run since the last read-back are read first.
  void save(const std::string& dir) {
    if (distributed()) user_fail("save: a data-parallel run writes its checkpoints itself (last/, epoch_N/)");
    folder_.check_save_target(dir);
    if (result_ == kRunDiverged)  // the weights now are the ones the guard refused
      user_fail("save: the run stopped diverged (", guard_.why(), "), and its weights now are the ones the guard ",
                "refused; nothing written: ", fallback_);
    if (!drain()) user_fail("save: ", guard_.why(), "; nothing written");
    TrainState s = snapshot();
    const double worst = probe(s.buffer, s.buffer_classes);
    if (!guard_.within(worst)) {
      guard_.found(state_.step, "its weights, probed before saving", worst);
      const std::string why = guard_.why();
      guard_.forget();
      user_fail("save: ", why, "; nothing written");
    }
    const auto off = log_.clock().off();
    save_checkpoint(dir, net_, s, config_);
  }

 private:
  bool root() const { return comm_.rank() == 0; }
  bool distributed() const { return comm_.size() > 1; }
  // The console: rank 0's; the other ranks' lines go nowhere. err(): what ends a run badly (a divergence).
  std::ostream& out() { return log_.out(); }
  std::ostream& err() { return log_.err(); }

  // Every rank reads the whole set (each needs N and the epoch's permutation) and checks that a resumed
  // checkpoint was trained on it, and that the run fits in memory.
  void load_data(const TrainState* resumed) {
    agree(comm_, [&] {
      EBM_PROFILE_RANGE("load_data");
      data_ = load_dataset(config_.data);
      if (data_.train.dim(0) == 0) user_fail(data_.train_path, ": no training images");
      if (jem() && data_.train_labels.empty())
        user_fail(config_.data.dir, ": train.objective \"jem\" trains on labelled images, but there is no ",
                  "train-labels-idx1-ubyte[.gz] beside ", data_.train_path, "; scripts/get_data.sh fetches the labels");
      data_images_ = data_.train.dim(0);
      data_fingerprint_ = dataset_fingerprint(data_.train);
      if (resumed && resumed->data_images >= 0 &&
          (resumed->data_images != data_images_ || resumed->data_fingerprint != data_fingerprint_))
        user_fail(advice_.resume(*options_.resume), ": the checkpoint was trained on another data set (",
                  resumed->data_images, " training images, fingerprint ", resumed->data_fingerprint, ") than ",
                  data_.train_path, " holds now (", data_images_, " images, fingerprint ", data_fingerprint_,
                  "); a resumed run keeps its data set");
      const int threads = cpu_backend_threads();
      const std::vector<MemoryItem> plan = host_memory_plan(config_, net_, comm_.size(), threads);
      check_host_memory(plan, host_memory_available());
      check_address_space_for_run(plan, config_.backend == "cpu" || (config_.backend == "auto" && !cuda_usable(nullptr)),
                                  threads);
    });
    out() << "data: train " << shape_str(data_.train.shape) << " from " << data_.train_path << ", test "
          << shape_str(data_.test.shape) << "\n";
  }

  // The backend, holding the training set; the run's length in steps.
  void make_backend_for_run(const TrainState* resumed) {
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
    backend_->set_train_data(data_.train);
    if (config_.train.objective == "jem")
      backend_->set_train_labels(std::vector<int32_t>(data_.train_labels.begin(), data_.train_labels.end()));
    batches_per_epoch_ = backend_->batches_per_epoch();
    total_steps_ = config_.train.epochs * batches_per_epoch_;
    if (config_.train.max_steps > 0) total_steps_ = std::min(total_steps_, config_.train.max_steps);
    agree(comm_, [&] {
      if (resumed && resumed->batch > batches_per_epoch_)
        user_fail(advice_.resume(*options_.resume), ": its train_state puts the run at batch ", resumed->batch,
                  " of an epoch of ", batches_per_epoch_, " batches (corrupt, or written for other data)");
    });
  }

  // A stop requested on any rank (SIGINT/SIGTERM may reach one process, or all) stops every rank after the
  // same step.
  bool stop_requested() {
    const bool mine = options_.stop && options_.stop->load();
    return distributed() ? any_rank(comm_, mine) : mine;
  }

  // --- the state: the counters here, the tensors in the backend ---

  TrainState snapshot() {
    TrainState s = state_;
    s.params = backend_->params();
    if (config_.train.ema_decay > 0) s.ema = backend_->ema();
    if (config_.model.spectral_norm) s.sn_u = backend_->sn_state();
    if (!s.ema.empty() || !s.sn_u.empty()) s.sampling = backend_->sampling_params();  // model.safetensors
    s.adam = backend_->adam();
    s.buffer = backend_->buffer();
    s.buffer_classes = backend_->buffer_classes();
    s.rng = backend_->rng_state();
    s.rng_backend = kind_;
    s.data_images = data_images_;
    s.data_fingerprint = data_fingerprint_;
    if (!guard_.drift_on()) s.epoch_reg.clear();  // a resumed history that nothing adds to is not kept
    return s;
  }

  // The counters of `s` (restored into the backend already) as the run's; the tensors live in the backend.
  void adopt(TrainState s) {
    state_ = std::move(s);
    state_.params.clear(), state_.adam = {}, state_.buffer = Tensor(), state_.buffer_classes.clear(), state_.rng.clear();
    state_.ema.clear(), state_.sn_u.clear(), state_.sampling.clear();
    state_.rank_buffers.clear(), state_.rank_rngs.clear();
  }

  void restore(const TrainState& s) {
    backend_->set_params(s.params);  // θ_ema = θ too, where EMA is on: what a checkpoint without θ_ema resumes with
    if (!s.ema.empty()) backend_->set_ema(s.ema);
    if (!s.sn_u.empty()) backend_->set_sn_state(s.sn_u);
    backend_->set_adam(s.adam);
    if (config_.buffer.per_class) backend_->set_class_buffer(s.buffer, s.buffer_classes);
    else backend_->set_buffer(s.buffer);
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

  // --- the guard's measures ---

  // max |f| (NaN when any f is) of validation's forward pass: the test set (what ebm_score reports of a
  // checkpoint) and as many uniform-noise images. Every checkpoint is checked on it; at an epoch end with
  // train.validate on, validation itself does it.
  double validation_max_abs_f() {
    const auto off = log_.clock().off();
    EBM_PROFILE_RANGE("validate");
    return data_.test.numel() > 0 ? backend_->validate(data_.test, state_.epoch).max_abs_f : 0.0;
  }

  // The probe (host/train/divergence_guard.hpp) and validation's pass, over all ranks.
  double probe(const Tensor& buffer, const std::vector<int32_t>& buffer_classes) {
    const auto off = log_.clock().off();
    EBM_PROFILE_RANGE("guard_probe");
    const double mine =
        probe_max_abs_f(*backend_, net_, config_, data_.train, buffer, buffer_classes, state_.seed, state_.step);
    return guard_max(validation_max_abs_f(), max_abs_f_all_ranks(comm_, mine));
  }

  // Reads back the steps run since the last call; false (and the guard's why()) when one of them diverged.
  // Step k's forward pass ran on the weights of step k−1: when it passes, a state waiting at k−1 is good.
  bool drain() {
    EBM_PROFILE_RANGE("metrics");
    const auto ms = backend_->drain_metrics();
    int64_t step = state_.step - int64_t(ms.size());
    for (const StepMetrics& m : ms) {
      ++step;
      if (!guard_.check_step(step, m.loss, m.max_abs_f)) return false;
      if (keeper_.awaiting(step)) {
        const auto off = log_.clock().off();
        if (std::optional<TrainState> good = keeper_.passed(step)) guard_.passed(std::move(*good));
      }
      const double v[8] = {m.loss, m.reg, m.cdiv, m.real, m.fake, 1.0, m.ce, m.accuracy};
      for (int i = 0; i < 8; ++i) state_.epoch_sums[size_t(i)] += v[i];
      if (step % config_.train.log_every == 0) {
        nlohmann::json rec = {{"event", "step"}, {"step", step}, {"epoch", state_.epoch + 1}, {"loss", m.loss},
                              {"reg", m.reg}, {"cdiv", m.cdiv}, {"real", m.real}, {"fake", m.fake},
                              {"lr", lr_at(step - 1)}, {"ms_per_step", log_.clock().ms_per_step(steps_here_)}};
        if (jem()) rec["ce"] = m.ce, rec["accuracy"] = m.accuracy;
        log_.record(rec);
      }
    }
    return true;
  }

  bool jem() const { return config_.train.objective == "jem"; }

  // Checkpoints `names` of the state now, once the next step's forward pass has checked it.
  void checkpoint_after_next_step(std::vector<std::string> names) {
    const auto off = log_.clock().off();
    keeper_.want(state_.step, std::move(names), [&] { return snapshot(); });
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

  // The progress line: the epoch in progress, or — between an epoch's end and the next one's first step — the
  // one just ended, so that a run stopped on an epoch boundary shows that epoch's numbers, not zeros.
  void progress(bool force) {
    const bool ended = state_.epoch_sums[5] == 0 && state_.epoch > 0;
    log_.progress({state_.step, total_steps_, ended ? state_.epoch : state_.epoch + 1, config_.train.epochs,
                   log_.clock().ms_per_step(steps_here_), ended ? last_epoch_sums_ : state_.epoch_sums},
                  force);
  }

  // After the guard's why(): roll back to the newest good state with a lower learning rate and a new seed
  // (returns −1: go on), or stop (returns kRunDiverged). `may_roll_back` is false when a stop was asked for.
  int diverged(bool may_roll_back = true) {
    keeper_.drop();  // what no forward pass has checked is not kept
    if (log_.tty()) out() << "\n" << std::flush;
    err() << "ebm_train: " << guard_.why() << std::endl;
    log_.record({{"event", "diverged"}, {"step", guard_.step()}, {"message", guard_.why()}});
    const auto& d = config_.train.divergence;
    const bool drift = guard_.drift_target() != nullptr;
    if (std::optional<TrainState> back = guard_.roll_back(state_.rollbacks, may_roll_back)) {
      restore(*back);
      backend_->reseed(back->seed);
      backend_->drain_metrics();
      adopt(std::move(*back));
      if (drift) {  // last/ holds a drifting state now: the state gone back to replaces it (a resume starts there)
        const auto off = log_.clock().off();
        keeper_.write(snapshot(), {"last"});
      }
      log_.rewind(state_.step);  // the records of the abandoned steps go; the events that say why stay
      out() << "rolled back to step " << state_.step << " (rollback " << state_.rollbacks << "/" << d.max_rollbacks
            << "), lr " << fmt("%.3g", state_.lr) << ", seed " << state_.seed << "\n";
      log_.record({{"event", "rollback"}, {"step", state_.step}, {"lr", state_.lr}, {"seed", state_.seed},
                   {"rollbacks", state_.rollbacks}});
      return -1;
    }
    if (guard_.gave_up(may_roll_back))
      err() << "gave up after " << state_.rollbacks << " rollback" << (state_.rollbacks == 1 ? "" : "s")
            << " (train.divergence.max_rollbacks)\n";
    FallbackFacts facts{state_.lr, keeper_.saved_step(), (folder_ / "last").string(), options_.resume, start_step_,
                        options_.python_api};
    if (guard_.drift_target()) {  // last/ is drifting: name an epoch checkpoint from before the drift
      // The newest at least drift_lookback epoch ends before the trip (on disk, so also one from before a
      // resume), else the earliest kept after it (train.keep_checkpoints pruned the older ones). Folders past
      // this epoch are an abandoned path's.
      const int64_t before = state_.epoch + 1 - config_.train.divergence.drift_lookback;
      int64_t pick = -1;
      std::filesystem::path pick_dir;
      for (const auto& [epoch, dir] : epoch_checkpoints(folder_.path())) {
        if (epoch > state_.epoch || !std::filesystem::exists(dir / "train_state.safetensors")) continue;
        if (epoch > before && pick >= 0) break;
        pick = epoch, pick_dir = dir;
        if (epoch > before) break;
      }
      if (pick >= 0)
        facts.last = pick_dir.string(), facts.saved_step = pick * batches_per_epoch_, facts.before_drift = true,
        facts.within_lookback = pick > before;
    }
    fallback_ = guard_.fallback(facts);
    err() << fallback_ << std::endl;
    reports_.curves();
    return kRunDiverged;
  }

  // The run's end (max_steps, a signal, or the last epoch done): the last checkpoint, once the probe has
  // checked its weights. Returns the exit code.
  int finish(const std::string& reason) {
    const bool signal = reason == "signal" || reason == "stop";  // asked for: never rolled back
    if (!drain()) return diverged(!signal);
    std::vector<std::string> names{"last"};
    for (std::string& n : keeper_.take(state_.step)) names.push_back(std::move(n));  // wanted of this very state
    // A resumed run stopped before its first step leaves the checkpoint it started from as it is.
    const bool ran = state_.step > start_step_ || !options_.resume;
    if (ran) {
      TrainState s = snapshot();
      const double worst = probe(s.buffer, s.buffer_classes);
      if (!guard_.within(worst)) {
        guard_.found(state_.step, "its weights, probed before the last checkpoint", worst);
        return diverged(!signal);
      }
      {
        const auto off = log_.clock().off();
        keeper_.write(s, names);
      }
      guard_.passed(std::move(s));
    }
    log_.record({{"event", "stopped"}, {"step", state_.step}, {"reason", reason}});
    progress(true);
    out() << (log_.tty() ? "\n" : "")
          << (reason == "done" ? "done: " + std::to_string(state_.step) + " steps"
                               : "stopped (" + reason + ") at step " + std::to_string(state_.step))
          << (ran ? "; checkpoint " + (folder_ / "last").string()
                  : "; no step ran since " + *options_.resume + ", which is unchanged")
          << "\n";
    reports_.curves();
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
        epoch_clock_start_ = log_.clock().training_seconds();
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
      if (!(ckpt || keeper_.awaiting(state_.step) || state_.step % config_.train.log_every == 0 ||
            state_.batch == batches_per_epoch_))
        return std::nullopt;
      bool ok = drain();
      if (ok) progress(false);
      if (ok && ckpt && state_.batch < batches_per_epoch_) {  // an epoch end validates and checkpoints below
        const double worst = validation_max_abs_f();
        ok = guard_.within(worst);
        if (!ok) guard_.found(state_.step, "validation of its checkpoint", worst);
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
  // step has checked them), its reports. False (and the guard's why()) when validation diverged.
  bool end_epoch() {
    EpochSummary e;
    e.epoch = int(state_.epoch) + 1;
    e.epochs = config_.train.epochs;
    e.step = state_.step;
    e.seconds = log_.clock().training_seconds() - epoch_clock_start_;
    e.steps = steps_here_ - epoch_steps_start_;
    e.sums = state_.epoch_sums;
    ValidationMetrics v;
    {
      const auto off = log_.clock().off();
      if (config_.train.validate && data_.test.numel() > 0) {
        EBM_PROFILE_RANGE("validate");
        v = backend_->validate(data_.test, state_.epoch);
      }
    }
    if (config_.train.validate) e.validation = v;
    else v.max_abs_f = validation_max_abs_f();  // the guard checks every checkpoint on it
    // weights the guard is about to refuse are not worth sampling
    if (reports_.eval_due(e.epoch) && guard_.within(v.max_abs_f)) {
      e.quality = reports_.evaluate(*backend_, state_.step);
      e.jem = reports_.evaluate_classifier(*backend_, data_);
    }
    const double reg = e.sums[kSumSteps] > 0 ? e.sums[kSumReg] / e.sums[kSumSteps] : 0.0;  // the epoch's mean
    e.drift_ratio = guard_.epoch_drift(reg, state_.epoch_reg);
    if (log_.tty()) progress(true);  // finish the live line; in a log the summary below says it all
    log_.epoch_summary(e);
    if (!guard_.within(v.max_abs_f)) {
      guard_.found(state_.step, "validation at the end of epoch " + std::to_string(e.epoch), v.max_abs_f);
      return false;
    }
    if (guard_.drift_on() && e.sums[kSumSteps] > 0) {  // the slow drift
      if (!guard_.check_drift(state_.step, e.epoch, reg, state_.epoch_reg)) return false;
      if (guard_.normal_epoch(reg, state_.epoch_reg)) state_.epoch_reg.push_back(reg);  // into this epoch's checkpoint
    }
    last_epoch_sums_ = state_.epoch_sums;
    state_.epoch += 1;
    state_.batch = 0;
    state_.epoch_sums.fill(0.0);
    checkpoint_after_next_step({"epoch_" + std::to_string(e.epoch), "last"});
    if (root()) reports_.sample_grid(*backend_, e.epoch, state_.step);  // the other ranks go on and wait
    if (root()) reports_.energy_histograms(*backend_, data_.test, state_.step);
    reports_.curves();
    return true;
  }

  const TrainRunOptions& options_;
  Config config_;
  SingleProcessCommunicator single_;
  Communicator& comm_;
  Advice advice_;              // what to do next, said in ebm_train's flags or a Trainer's arguments
  RunFolder folder_;           // rank 0 writes it
  RunLog log_;                 // metrics.jsonl, TensorBoard, the console, the clock
  NetSpec net_;
  DivergenceGuard guard_;      // good states, rollbacks
  CheckpointKeeper keeper_;    // checkpoints waiting for the guard's verdict
  EpochReports reports_;       // sample grids, histograms, train.eval, curves
  std::unique_ptr<Backend> backend_;
  std::string kind_;           // "cpu" or "cuda": whose RNG layout the backend's state is in
  std::string fallback_;       // what to fall back on, said when the run ended diverged
  Dataset data_;               // the data set, loaded by start()
  bool in_epoch_ = false;      // begin_epoch has run for state_.epoch
  std::optional<int> result_;  // the RunResult, once the run has ended
  int64_t data_images_ = 0;
  uint64_t data_fingerprint_ = 0;
  TrainState state_;           // the counters and running sums; the tensors live in the backend
  EpochSums last_epoch_sums_{};
  int64_t start_step_ = 0;
  double lr_now_ = 0;          // the learning rate the backend holds now
  int64_t batches_per_epoch_ = 0, total_steps_ = 0, steps_here_ = 0, epoch_steps_start_ = 0;
  double epoch_clock_start_ = 0;
};

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
