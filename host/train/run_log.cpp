#include "host/train/run_log.hpp"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "host/io/atomic_file.hpp"
#include "host/io/tensorboard.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace ebm {

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

namespace {
bool has_jem_sums(const EpochSums& s) { return s[kSumCe] != 0 || s[kSumAccuracy] != 0; }
}  // namespace

std::string metrics_text(const EpochSums& sums) {
  auto mean = [&](int i) { return sums[kSumSteps] > 0 ? sums[i] / sums[kSumSteps] : 0.0; };
  return "loss " + fmt("%.4f", mean(0)) + " reg " + fmt("%.4f", mean(1)) + " cdiv " + fmt("%.4f", mean(2)) +
         " real " + fmt("%.4f", mean(3)) + " fake " + fmt("%.4f", mean(4)) +
         (has_jem_sums(sums) ? " ce " + fmt("%.4f", mean(kSumCe)) + " acc " + fmt("%.4f", mean(kSumAccuracy)) : "");
}

RunClock::RunClock(Now now) : now_(std::move(now)) {
  if (!now_)
    now_ = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
}

void RunClock::start() { start_ = now_(), off_s_ = 0; }
double RunClock::training_seconds() const { return now_() - start_ - off_s_; }
double RunClock::ms_per_step(int64_t steps) const {
  return steps > 0 ? 1000 * training_seconds() / double(steps) : 0.0;
}

void truncate_metrics(const fs::path& file, int64_t step, bool keep_events) {
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

RunLog::RunLog(fs::path dir, bool root, std::ostream& out, std::ostream& err, std::function<void(const json&)> on_record)
    : dir_(std::move(dir)), root_(root), out_(out), err_(err), on_record_(std::move(on_record)) {}

RunLog::~RunLog() = default;

void RunLog::start_clock() {
  clock_.start();
  printed_at_ = clock_.now();
}

void RunLog::open_metrics(std::optional<int64_t> resumed_at) {
  if (!root_) return;
  const fs::path file = dir_ / "metrics.jsonl";
  if (resumed_at) truncate_metrics(file, *resumed_at);
  else write_file_atomic(file.string(), [](std::ofstream&) {});
  metrics_.open(file, std::ios::app);
}

void RunLog::open_tensorboard(int64_t step, bool enabled) {
  if (!root_) return;
  const std::string dir = (dir_ / "tb").string();
  if (tensorboard_available() && fs::is_directory(dir)) truncate_tensorboard_events(dir, step);
  if (!enabled) return;
  if (!tensorboard_available()) {
    out() << std::flush;
    err() << "ebm_train: warning: this build writes no TensorBoard files (train.tensorboard is on): "
          << tensorboard_missing_reason() << "; training goes on (train.tensorboard=false silences this)" << std::endl;
    return;
  }
  tb_ = std::make_unique<TensorBoardWriter>(dir, err());
}

void RunLog::record(const json& j) {
  if (!root_) return;
  metrics_ << j.dump() << "\n";
  metrics_.flush();
  if (tb_) tb_->add_metrics(j);
  if (on_record_) on_record_(j);
}

void RunLog::rewind(int64_t step) {
  if (!root_) return;
  metrics_.close();
  truncate_metrics(dir_ / "metrics.jsonl", step, /*keep_events=*/true);
  metrics_.open(dir_ / "metrics.jsonl", std::ios::app);
  if (tb_) tb_->rewind(step);
}

void RunLog::progress(const Progress& p, bool force) {
  if (!root_) return;
  const double since = clock_.now() - printed_at_;
  if (!force && !(tty_ ? since > 0.2 : since > 15.0)) return;
  printed_at_ = clock_.now();
  const double eta = p.ms_per_step * double(p.total_steps - p.step) / 1000.0;
  out() << (tty_ ? "\r\033[K" : "") << "step " << p.step << "/" << p.total_steps << "  epoch " << p.epoch << "/"
        << p.epochs << "  " << fmt("%.1f", p.ms_per_step) << " ms/step  ETA " << duration_str(eta) << "  "
        << metrics_text(p.sums) << (tty_ ? "" : "\n") << std::flush;
}

void RunLog::epoch_summary(const EpochSummary& e) {
  auto mean = [&](int i) { return e.sums[5] > 0 ? e.sums[i] / e.sums[5] : 0.0; };
  out() << (tty_ ? "\n" : "") << "Epoch " << e.epoch << "/" << e.epochs << " - " << fmt("%.1f", e.seconds) << "s "
        << fmt("%.0f", e.steps > 0 ? 1000 * e.seconds / double(e.steps) : 0.0) << "ms/step - cdiv: "
        << fmt("%.4f", mean(2)) << " - fake: " << fmt("%.4f", mean(4)) << " - loss: " << fmt("%.4f", mean(0))
        << " - real: " << fmt("%.4f", mean(3)) << " - reg: " << fmt("%.4f", mean(1));
  json rec = {{"event", "epoch"}, {"epoch", e.epoch}, {"step", e.step}, {"loss", mean(0)}, {"reg", mean(1)},
              {"cdiv", mean(2)}, {"real", mean(3)}, {"fake", mean(4)}, {"seconds", e.seconds}};
  if (has_jem_sums(e.sums)) {
    out() << " - ce: " << fmt("%.4f", mean(kSumCe)) << " - acc: " << fmt("%.4f", mean(kSumAccuracy));
    rec["ce"] = mean(kSumCe);
    rec["accuracy"] = mean(kSumAccuracy);
  }
  if (const auto& v = e.validation) {
    out() << " - val_cdiv: " << fmt("%.4f", v->cdiv) << " - val_fake: " << fmt("%.4f", v->fake)
          << " - val_real: " << fmt("%.4f", v->real);
    rec["val_cdiv"] = v->cdiv;
    rec["val_real"] = v->real;
    rec["val_fake"] = v->fake;
    rec["val_max_abs_f"] = std::isfinite(v->max_abs_f) ? json(v->max_abs_f) : json(nullptr);
  }
  if (e.drift_ratio) {
    out() << " - drift: " << fmt("%.2f", *e.drift_ratio) << "x";
    rec["drift_ratio"] = *e.drift_ratio;
  }
  if (e.quality) out() << " - IS: " << fmt("%.3f", e.quality->is) << " - FID: " << fmt("%.2f", e.quality->fid);
  if (e.jem) {
    out() << " - test_acc: " << fmt("%.4f", e.jem->accuracy) << " - ECE: " << fmt("%.4f", e.jem->ece);
    if (!e.jem->ood.empty())
      out() << " - AUROC energy/max_prob/grad_norm: " << fmt("%.4f", e.jem->auroc_energy) << "/"
            << fmt("%.4f", e.jem->auroc_max_prob) << "/" << fmt("%.4f", e.jem->auroc_grad_norm);
  }
  out() << "\n";
  record(rec);
  if (e.quality || e.jem) {
    json q = e.quality ? quality_json(*e.quality) : json::object();
    if (e.jem) {
      const json jem = jem_json(*e.jem);  // named: items() refers to it for the whole loop
      for (const auto& [k, v] : jem.items()) q[k == "accuracy" ? "test_accuracy" : k] = v;
    }
    q["event"] = "eval";
    q["epoch"] = e.epoch;
    q["step"] = e.step;
    record(q);
  }
}

}  // namespace ebm
