#include "host/training_run.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/error.hpp"
#include "engine/profiling.hpp"
#include "engine/rng.hpp"
#include "host/backend_factory.hpp"
#include "host/checkpoint.hpp"
#include "host/dataset.hpp"
#include "host/png_image.hpp"

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

EngineOptions engine_options(const Config& c) {
  EngineOptions o;
  o.net = net_spec_for(c);
  o.seed = c.seed;
  o.batch_size = c.data.batch_size;
  o.sampler = {c.sampler.steps, float(c.sampler.step_size), float(c.sampler.noise), float(c.sampler.grad_clip)};
  o.buffer_capacity = c.buffer.capacity;
  o.buffer_initial = c.buffer.initial;
  o.reinit_prob = c.buffer.reinit_prob;
  o.lr = c.train.lr; o.beta1 = c.train.beta1; o.beta2 = c.train.beta2; o.eps = c.train.eps;
  o.alpha = c.train.alpha;
  o.real_noise = c.train.real_noise;
  o.tf32 = c.cuda.tf32;
  o.device = c.cuda.device;
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

class TrainingRun {
 public:
  explicit TrainingRun(const TrainRunOptions& o) : o_(o), cfg_(o.config), out_(cfg_.output_dir) {}

  int run() {
    check_writable(out_);
    if (o_.resume.empty() && fs::exists(out_ / "last"))
      user_fail("output_dir \"", out_.string(), "\" already holds a run (", (out_ / "last").string(),
                "); continue it with --resume ", (out_ / "last").string(),
                ", or start a new one elsewhere with --set output_dir=DIR");
    const NetSpec net = net_spec_for(cfg_);
    TrainState resumed;
    if (!o_.resume.empty()) resumed = load_train_state(o_.resume, net);  // before anything is written

    Dataset data = [&] {
      EBM_PROFILE_RANGE("load_data");
      return load_dataset(cfg_.data);
    }();
    std::cout << "data: train " << shape_str(data.train.shape) << " from " << data.train_path << ", test "
              << shape_str(data.test.shape) << "\n";
    if (data.train.dim(0) == 0) user_fail(data.train_path, ": no training images");

    be_ = make_backend(cfg_.backend, engine_options(cfg_));
    kind_ = be_->describe().rfind("cuda", 0) == 0 ? "cuda" : "cpu";
    std::cout << "backend: " << be_->describe() << "\n" << net.summary() << "\n";
    be_->set_train_data(data.train);
    bpe_ = be_->batches_per_epoch();
    total_steps_ = cfg_.train.epochs * bpe_;
    if (cfg_.train.max_steps > 0) total_steps_ = std::min(total_steps_, cfg_.train.max_steps);

    std::ofstream(out_ / "config.json") << config_to_json(cfg_).dump(2) << "\n";
    if (!o_.resume.empty()) {
      restore(resumed);
      s_ = resumed;
      truncate_metrics(out_ / "metrics.jsonl", s_.step);
      std::cout << "resumed from " << o_.resume << " at step " << s_.step << " (epoch " << s_.epoch + 1 << ", batch "
                << s_.batch << ")\n";
    } else {
      s_.lr = cfg_.train.lr;
      s_.seed = cfg_.seed;
      std::ofstream(out_ / "metrics.jsonl", std::ios::trunc);
    }
    metrics_.open(out_ / "metrics.jsonl", std::ios::app);
    good_ = snapshot();
    net_ = net;
    tty_ = isatty(fileno(stdout));
    return loop(data);
  }

 private:
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
      std::cout << "note: checkpoint RNG state is from the " << s.rng_backend << " backend; the " << kind_
                << " backend continues with fresh streams from seed " << s.seed << "\n";
      be_->reseed(s.seed);
    }
  }

  void save(const std::string& name) {
    EBM_PROFILE_RANGE("checkpoint");
    TrainState st = snapshot();
    save_checkpoint((out_ / name).string(), net_, st, cfg_);
    good_ = std::move(st);
  }

  void log(const nlohmann::json& j) {
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
    std::cout << (tty_ ? "\n" : "") << "ebm_train: " << why_ << "\n";
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
      std::cout << "rolled back to step " << s_.step << " (rollback " << n << "/" << d.max_rollbacks << "), lr "
                << fmt("%.3g", s_.lr) << ", seed " << s_.seed << "\n";
      log({{"event", "rollback"}, {"step", s_.step}, {"lr", s_.lr}, {"seed", s_.seed}, {"rollbacks", n}});
      return -1;  // go on
    }
    std::cout << "the last good checkpoint is kept: " << (out_ / "last").string() << " (step " << good_.step
              << "); try a lower train.lr or train.divergence.action=rollback\n";
    return kRunDiverged;
  }

  // Saves last/, logs why, returns 0: a run stopped by max_steps or a signal is a clean exit.
  int stop(const std::string& reason) {
    if (!drain()) return diverged();
    save("last");
    log({{"event", "stopped"}, {"step", s_.step}, {"reason", reason}});
    progress(true);
    std::cout << (tty_ ? "\n" : "") << "stopped (" << reason << ") at step " << s_.step << "; checkpoint "
              << (out_ / "last").string() << "\n";
    curves();
    return kRunOk;
  }

  int loop(const Dataset& data) {
    t_start_ = t_print_ = Clock::now();
    if (s_.epoch >= cfg_.train.epochs || (cfg_.train.max_steps > 0 && s_.step >= cfg_.train.max_steps)) {
      std::cout << "nothing to do: the run is complete (step " << s_.step << ", epoch " << s_.epoch << "/"
                << cfg_.train.epochs << ")\n";
      return kRunOk;
    }
    while (s_.epoch < cfg_.train.epochs) {
      be_->begin_epoch(s_.epoch);
      const auto t_epoch = Clock::now();
      bool rolled_back = false;
      while (s_.batch < bpe_) {
        if (cfg_.train.max_steps > 0 && s_.step >= cfg_.train.max_steps) return stop("train.max_steps");
        if (o_.stop && o_.stop->load()) return stop("signal");
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
    std::cout << "done: " << s_.step << " steps; checkpoint " << (out_ / "last").string() << "\n";
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
    std::cout << (tty_ ? "\n" : "") << "Epoch " << epoch << "/" << cfg_.train.epochs << " - " << fmt("%.1f", seconds)
              << "s " << fmt("%.0f", ms_per_step()) << "ms/step - cdiv: " << fmt("%.4f", mean(2))
              << " - fake: " << fmt("%.4f", mean(4)) << " - loss: " << fmt("%.4f", mean(0))
              << " - real: " << fmt("%.4f", mean(3)) << " - reg: " << fmt("%.4f", mean(1));
    nlohmann::json rec = {{"event", "epoch"}, {"epoch", epoch}, {"step", s_.step}, {"loss", mean(0)},
                          {"reg", mean(1)}, {"cdiv", mean(2)}, {"real", mean(3)}, {"fake", mean(4)},
                          {"seconds", seconds}};
    if (cfg_.train.validate) {
      std::cout << " - val_cdiv: " << fmt("%.4f", v.cdiv) << " - val_fake: " << fmt("%.4f", v.fake)
                << " - val_real: " << fmt("%.4f", v.real);
      rec["val_cdiv"] = v.cdiv;
      rec["val_real"] = v.real;
      rec["val_fake"] = v.fake;
    }
    std::cout << "\n";
    log(rec);
    s_.epoch += 1;
    s_.batch = 0;
    s_.epoch_sums.fill(0.0);
    save("epoch_" + std::to_string(epoch));
    save("last");
    sample_grid(epoch);
    curves();
  }

  const TrainRunOptions& o_;
  Config cfg_;
  fs::path out_;
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
