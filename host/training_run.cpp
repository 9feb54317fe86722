#include "host/training_run.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/communicator.hpp"
#include "engine/error.hpp"
#include "engine/profiling.hpp"
#include "engine/rng.hpp"
#include "host/backend_factory.hpp"
#include "host/checkpoint.hpp"
#include "host/dataset.hpp"
#include "host/distributed.hpp"
#include "host/png_image.hpp"
#ifdef EBM_HAVE_CUDA
#include "kernels/cuda_backend.hpp"
#endif

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

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

void check_writable(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) user_fail("output_dir \"", dir.string(), "\": cannot create it (", ec.message(), ")");
  const fs::path probe = dir / (".write_test." + std::to_string(getpid()));
  std::ofstream f(probe);
  f << "ok";
  f.close();
  if (!f) user_fail("output_dir \"", dir.string(), "\": not writable");
  fs::remove(probe, ec);
}

// metrics.jsonl without the records past `step` (a resume from an earlier checkpoint rewrites history).
void truncate_metrics(const fs::path& file, int64_t step) {
  std::ifstream in(file);
  if (!in) return;
  std::ostringstream kept;
  std::string line;
  while (std::getline(in, line)) {
    try {
      const auto j = nlohmann::json::parse(line);
      if (j.value("step", int64_t(0)) > step) continue;
    } catch (const std::exception&) {
      continue;  // a torn last line from a killed run
    }
    kept << line << "\n";
  }
  in.close();
  std::ofstream(file, std::ios::trunc) << kept.str();
}

// With several ranks every rank runs this same loop in lockstep: the same steps, the same collectives in
// the same order (inside train_step and validate, the stop flag each step, the checkpoint gather), and the
// same decisions, taken from all-reduced metrics. Rank 0 alone owns the run directory and the console.
class TrainingRun {
 public:
  explicit TrainingRun(const TrainRunOptions& o)
      : o_(o), cfg_(o.config), out_(cfg_.output_dir), comm_(o.comm ? *o.comm : single_) {}

  int run() {
    comm_.set_timeout(cfg_.train.comm_timeout_s);
    const NetSpec net = net_spec_for(cfg_);
    TrainState resumed;
    // Rank 0's checks of the run directory and the checkpoint to resume come before anything is written; an
    // error there is every rank's error.
    agree(comm_, [&] {
      check_writable(out_);
      if (o_.resume.empty() && fs::exists(out_ / "last"))
        user_fail("output_dir \"", out_.string(), "\" already holds a run (", (out_ / "last").string(),
                  "); continue it with --resume ", (out_ / "last").string(),
                  ", or start a new one elsewhere with --set output_dir=DIR");
      if (!o_.resume.empty()) resumed = load_train_state(o_.resume, net, comm_.size());
    }, /*root_only=*/true);
    if (distributed() && !o_.resume.empty()) resumed = share_resumed(resumed);

    Dataset data;
    agree(comm_, [&] {  // every rank reads the whole set: each needs N and the epoch's permutation
      EBM_PROFILE_RANGE("load_data");
      data = load_dataset(cfg_.data);
      if (data.train.dim(0) == 0) user_fail(data.train_path, ": no training images");
    });
    out() << "data: train " << shape_str(data.train.shape) << " from " << data.train_path << ", test "
          << shape_str(data.test.shape) << "\n";

    agree(comm_, [&] {
      be_ = make_backend(cfg_.backend, engine_options(cfg_, comm_));
      kind_ = be_->describe().rfind("cuda", 0) == 0 ? "cuda" : "cpu";
      if (distributed() && !be_->data_parallel())
        user_fail("backend ", kind_, ": this build's ", kind_, " backend does not train data-parallel; run the ",
                  comm_.size(), " ranks with --backend cpu, or run one process");
    });
    out() << "backend: " << be_->describe() << "\n";
    if (distributed())
      out() << "data-parallel: " << comm_.size() << " ranks, global batch " << int64_t(cfg_.data.batch_size) * comm_.size()
            << " (" << cfg_.data.batch_size << " per rank), replay buffer " << cfg_.buffer.capacity / comm_.size()
            << " images per rank\n";
    out() << net.summary() << std::endl;  // a log being tailed shows the run has started
    be_->set_train_data(data.train);
    bpe_ = be_->batches_per_epoch();
    total_steps_ = cfg_.train.epochs * bpe_;
    if (cfg_.train.max_steps > 0) total_steps_ = std::min(total_steps_, cfg_.train.max_steps);

    if (root()) std::ofstream(out_ / "config.json") << config_to_json(cfg_).dump(2) << "\n";
    if (!o_.resume.empty()) {
      resumed.rank_buffers.clear();  // this rank's own shard is in resumed.buffer
      resumed.rank_rngs.clear();
      restore(resumed);
      s_ = resumed;
      if (root()) truncate_metrics(out_ / "metrics.jsonl", s_.step);
      out() << "resumed from " << o_.resume << " at step " << s_.step << " (epoch " << s_.epoch + 1 << ", batch "
            << s_.batch << ")\n";
    } else {
      s_.lr = cfg_.train.lr;
      s_.seed = cfg_.seed;
      if (root()) std::ofstream(out_ / "metrics.jsonl", std::ios::trunc);
    }
    if (root()) metrics_.open(out_ / "metrics.jsonl", std::ios::app);
    good_ = snapshot();
    net_ = net;
    tty_ = root() && !distributed() && isatty(fileno(stdout));  // mpirun gives ranks a pty, but its output is a log
    return loop(data);
  }

 private:
  bool root() const { return comm_.rank() == 0; }
  bool distributed() const { return comm_.size() > 1; }
  // The console: rank 0's; the other ranks' lines go nowhere.
  std::ostream& out() { return root() ? std::cout : quiet_; }

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
    const bool mine = o_.stop && o_.stop->load();
    return distributed() ? any_rank(comm_, mine) : mine;
  }
  TrainState snapshot() {
    TrainState s = s_;
    s.params = be_->params();
    s.adam = be_->adam();
    s.buffer = be_->buffer();
    s.rng = be_->rng_state();
    s.rng_backend = kind_;
    return s;
  }

  void restore(const TrainState& s) {
    be_->set_params(s.params);
    be_->set_adam(s.adam);
    be_->set_buffer(s.buffer);
    be_->set_lr(s.lr);
    if (s.rng_backend == kind_) {
      be_->set_rng_state(s.rng);
    } else {  // another backend's streams cannot be continued here: same seed, fresh streams
      out() << "note: checkpoint RNG state is from the " << s.rng_backend << " backend; the " << kind_
                << " backend continues with fresh streams from seed " << s.seed << "\n";
      be_->reseed(s.seed);
    }
  }

  // Collective with several ranks: each sends rank 0 its state; rank 0 checks that they agree on all but
  // their shards (the same steps on all-reduced gradients: a difference is a bug) and writes the checkpoint
  // with every rank's replay-buffer shard and RNG state.
  void save(const std::string& name) {
    EBM_PROFILE_RANGE("checkpoint");
    TrainState st = snapshot();
    if (!distributed()) {
      save_checkpoint((out_ / name).string(), net_, st, cfg_);
      good_ = std::move(st);
      return;
    }
    const std::vector<std::string> parts = comm_.gather(pack_train_state(st), 0);
    if (root()) {
      TrainState all = st;
      for (int r = 0; r < comm_.size(); ++r) {
        TrainState p = unpack_train_state(parts[size_t(r)]);
        if (p.params != st.params || p.adam.m != st.adam.m || p.adam.v != st.adam.v || p.adam.t != st.adam.t ||
            p.step != st.step || p.epoch != st.epoch || p.batch != st.batch)
          fail_at("every rank's state equals rank 0's", __FILE__, __LINE__,
                  "at step " + std::to_string(st.step) + ", rank " + std::to_string(r) +
                      "'s parameters, Adam state or counters differ from rank 0's: the ranks drifted apart");
        all.rank_buffers.push_back(std::move(p.buffer));
        all.rank_rngs.push_back(std::move(p.rng));
      }
      save_checkpoint((out_ / name).string(), net_, all, cfg_);
    }
    good_ = std::move(st);
  }

  void log(const nlohmann::json& j) {
    if (!root()) return;
    metrics_ << j.dump() << "\n";
    metrics_.flush();
  }

  // Reads back the steps run since the last call; false (and `why_`) when one of them diverged.
  bool drain() {
    EBM_PROFILE_RANGE("metrics");
    const auto ms = be_->drain_metrics();
    int64_t step = s_.step - int64_t(ms.size());
    for (const StepMetrics& m : ms) {
      ++step;
      if (!std::isfinite(m.loss) || !std::isfinite(m.max_abs_f) || m.max_abs_f > cfg_.train.divergence.max_abs_f) {
        why_ = "diverged at step " + std::to_string(step) + ": " +
               (std::isfinite(m.max_abs_f) && std::isfinite(m.loss)
                    ? "|f| reached " + fmt("%.4g", m.max_abs_f) + " > train.divergence.max_abs_f = " +
                          fmt("%.4g", cfg_.train.divergence.max_abs_f)
                    : std::string("the energy or loss is NaN/inf"));
        return false;
      }
      const double v[5] = {m.loss, m.reg, m.cdiv, m.real, m.fake};
      for (int i = 0; i < 5; ++i) s_.epoch_sums[i] += v[i];
      s_.epoch_sums[5] += 1;
      last_ = m;
      if (step % cfg_.train.log_every == 0)
        log({{"event", "step"}, {"step", step}, {"epoch", s_.epoch + 1}, {"loss", m.loss}, {"reg", m.reg},
             {"cdiv", m.cdiv}, {"real", m.real}, {"fake", m.fake}, {"lr", s_.lr}, {"ms_per_step", ms_per_step()}});
    }
    return true;
  }

  double ms_per_step() const {
    const double s = std::chrono::duration<double, std::milli>(Clock::now() - t_start_).count();
    return steps_here_ > 0 ? s / double(steps_here_) : 0.0;
  }

  double mean(int i) const { return s_.epoch_sums[5] > 0 ? s_.epoch_sums[i] / s_.epoch_sums[5] : 0.0; }

  std::string metrics_str() const {
    return "loss " + fmt("%.4f", mean(0)) + " reg " + fmt("%.4f", mean(1)) + " cdiv " + fmt("%.4f", mean(2)) +
           " real " + fmt("%.4f", mean(3)) + " fake " + fmt("%.4f", mean(4));
  }

  void progress(bool force) {
    if (!root()) return;
    const double since = std::chrono::duration<double>(Clock::now() - t_print_).count();
    if (!force && !(tty_ ? since > 0.2 : since > 15.0)) return;
    t_print_ = Clock::now();
    const double eta = ms_per_step() * double(total_steps_ - s_.step) / 1000.0;
    std::cout << (tty_ ? "\r\033[K" : "") << "step " << s_.step << "/" << total_steps_ << "  epoch " << s_.epoch + 1
              << "/" << cfg_.train.epochs << "  " << fmt("%.1f", ms_per_step()) << " ms/step  ETA "
              << duration_str(eta) << "  " << metrics_str() << (tty_ ? "" : "\n") << std::flush;
  }

  void sample_grid(int epoch) {
    const GenerateConfig& g = cfg_.generate;
    Tensor x({g.n, net_.in_c, net_.in_h, net_.in_w});
    Rng init(cfg_.seed + uint64_t(epoch), RngStream::kInit);
    init.offset = uint64_t(1) << 48;  // far from the parameter initialisation's blocks
    init.uniform(x.ptr(), x.numel(), -1.0f, 1.0f);
    be_->sample(x, {g.steps, float(g.step_size), float(g.noise), float(cfg_.sampler.grad_clip)},
                cfg_.seed + uint64_t(epoch));
    const std::vector<float> f = be_->energy(x);
    std::vector<std::string> labels;
    for (float v : f) labels.push_back("E=" + fmt("%.3f", -v));
    const int cols = int(std::ceil(std::sqrt(double(g.n))));
    fs::create_directories(out_ / "samples");
    const std::string path = (out_ / "samples" / ("epoch_" + std::to_string(epoch) + ".png")).string();
    write_png(path, image_grid(x.ptr(), g.n, net_.in_h, net_.in_w, cols, labels, 3));
    std::cout << "  samples: " << path << "\n";
  }

  // Training curves from metrics.jsonl (so they survive resumes): step values and epoch means.
  void curves() {
    if (!root()) return;
    std::ifstream in(out_ / "metrics.jsonl");
    std::vector<PlotSeries> s = {{"loss", {}, {}}, {"cdiv", {}, {}}, {"real", {}, {}}, {"fake", {}, {}}};
    std::string line;
    while (std::getline(in, line)) {
      try {
        const auto j = nlohmann::json::parse(line);
        if (j.value("event", "") != "step") continue;
        for (auto& ser : s) {
          ser.x.push_back(j.at("step").get<double>());
          ser.y.push_back(j.at(ser.name).get<double>());
        }
      } catch (const std::exception&) {
      }
    }
    if (s[0].x.size() < 2) return;
    write_png((out_ / "curves.png").string(), line_plot(s, "training (per logged step)", "step"));
  }

  int diverged() {
    out() << (tty_ ? "\n" : "") << "ebm_train: " << why_ << "\n";
    log({{"event", "diverged"}, {"step", s_.step}, {"message", why_}});
    const auto& d = cfg_.train.divergence;
    if (d.action == "rollback" && s_.rollbacks < d.max_rollbacks) {
      const int64_t n = good_.rollbacks + 1;
      TrainState back = good_;
      back.rollbacks = n;
      back.lr = good_.lr * d.lr_factor;
      back.seed = good_.seed + 1000003ull * uint64_t(n);
      restore(back);
      be_->reseed(back.seed);
      be_->drain_metrics();
      s_ = back;
      good_ = back;
      out() << "rolled back to step " << s_.step << " (rollback " << n << "/" << d.max_rollbacks << "), lr "
                << fmt("%.3g", s_.lr) << ", seed " << s_.seed << "\n";
      log({{"event", "rollback"}, {"step", s_.step}, {"lr", s_.lr}, {"seed", s_.seed}, {"rollbacks", n}});
      return -1;  // go on
    }
    out() << "the last good checkpoint is kept: " << (out_ / "last").string() << " (step " << good_.step
              << "); try a lower train.lr or train.divergence.action=rollback\n";
    return kRunDiverged;
  }

  // Saves last/, logs why, returns 0: a run stopped by max_steps or a signal is a clean exit.
  int stop(const std::string& reason) {
    if (!drain()) return diverged();
    save("last");
    log({{"event", "stopped"}, {"step", s_.step}, {"reason", reason}});
    progress(true);
    out() << (tty_ ? "\n" : "") << "stopped (" << reason << ") at step " << s_.step << "; checkpoint "
              << (out_ / "last").string() << "\n";
    curves();
    return kRunOk;
  }

  int loop(const Dataset& data) {
    t_start_ = t_print_ = Clock::now();
    if (s_.epoch >= cfg_.train.epochs || (cfg_.train.max_steps > 0 && s_.step >= cfg_.train.max_steps)) {
      out() << "nothing to do: the run is complete (step " << s_.step << ", epoch " << s_.epoch << "/"
                << cfg_.train.epochs << ")\n";
      return kRunOk;
    }
    while (s_.epoch < cfg_.train.epochs) {
      be_->begin_epoch(s_.epoch);
      const auto t_epoch = Clock::now();
      bool rolled_back = false;
      while (s_.batch < bpe_) {
        if (cfg_.train.max_steps > 0 && s_.step >= cfg_.train.max_steps) return stop("train.max_steps");
        if (stop_requested()) return stop("signal");
        if (s_.step == o_.profile_begin) be_->set_profiling(true);
        {
          EBM_PROFILE_RANGE("step");
          be_->train_step(s_.batch);
        }
        ++s_.step;
        ++s_.batch;
        ++steps_here_;
        if (s_.step == o_.profile_end) be_->set_profiling(false);
        const bool ckpt = cfg_.train.checkpoint_every > 0 && s_.step % cfg_.train.checkpoint_every == 0;
        if (ckpt || s_.step % cfg_.train.log_every == 0 || s_.batch == bpe_) {
          if (!drain()) {
            const int r = diverged();
            if (r >= 0) return r;
            rolled_back = true;
            break;
          }
          progress(false);
          if (ckpt) save("last");
        }
      }
      if (rolled_back) continue;
      end_epoch(data, std::chrono::duration<double>(Clock::now() - t_epoch).count());
    }
    out() << "done: " << s_.step << " steps; checkpoint " << (out_ / "last").string() << "\n";
    return kRunOk;
  }

  void end_epoch(const Dataset& data, double seconds) {
    const int epoch = int(s_.epoch) + 1;
    ValidationMetrics v;
    if (cfg_.train.validate && data.test.numel() > 0) {
      EBM_PROFILE_RANGE("validate");
      v = be_->validate(data.test, s_.epoch);
    }
    if (tty_) progress(true);  // finish the live line; in a log the summary below says it all
    out() << (tty_ ? "\n" : "") << "Epoch " << epoch << "/" << cfg_.train.epochs << " - " << fmt("%.1f", seconds)
              << "s " << fmt("%.0f", ms_per_step()) << "ms/step - cdiv: " << fmt("%.4f", mean(2))
              << " - fake: " << fmt("%.4f", mean(4)) << " - loss: " << fmt("%.4f", mean(0))
              << " - real: " << fmt("%.4f", mean(3)) << " - reg: " << fmt("%.4f", mean(1));
    nlohmann::json rec = {{"event", "epoch"}, {"epoch", epoch}, {"step", s_.step}, {"loss", mean(0)},
                          {"reg", mean(1)}, {"cdiv", mean(2)}, {"real", mean(3)}, {"fake", mean(4)},
                          {"seconds", seconds}};
    if (cfg_.train.validate) {
      out() << " - val_cdiv: " << fmt("%.4f", v.cdiv) << " - val_fake: " << fmt("%.4f", v.fake)
                << " - val_real: " << fmt("%.4f", v.real);
      rec["val_cdiv"] = v.cdiv;
      rec["val_real"] = v.real;
      rec["val_fake"] = v.fake;
    }
    out() << "\n";
    log(rec);
    s_.epoch += 1;
    s_.batch = 0;
    s_.epoch_sums.fill(0.0);
    save("epoch_" + std::to_string(epoch));
    save("last");
    if (root()) sample_grid(epoch);  // the other ranks go on to the next epoch's first collective and wait
    curves();
  }

  const TrainRunOptions& o_;
  Config cfg_;
  fs::path out_;
  SingleProcessCommunicator single_;
  Communicator& comm_;
  std::ostream quiet_{nullptr};  // no buffer: discards what it is given
  NetSpec net_;
  std::unique_ptr<Backend> be_;
  std::string kind_, why_;
  TrainState s_, good_;
  StepMetrics last_;
  int64_t bpe_ = 0, total_steps_ = 0, steps_here_ = 0;
  std::ofstream metrics_;
  bool tty_ = false;
  Clock::time_point t_start_, t_print_;
};

}  // namespace

int run_training(const TrainRunOptions& o) { return TrainingRun(o).run(); }

}  // namespace ebm
