// What a training run tells: metrics.jsonl (one JSON record per line, cut back when a resume or a rollback
// rewrites history), TensorBoard's event files beside it (train.tensorboard), the console (the progress line
// with its ETA, the epoch summary) and the clock they read (training time, with what is not training left
// out). Rank 0 writes; on the other ranks every call is a no-op and out()/err() discard.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/backend.hpp"
#include "host/eval/eval_quality.hpp"
#include "host/eval/jem_eval.hpp"

namespace ebm {

class TensorBoardWriter;

// "%.4f"-style formatting of one number (printf's format `f`).
std::string fmt(const char* f, double v);
// A duration for people: "42s", "3m07s", "2h05m"; "?" for a negative or non-finite one.
std::string duration_str(double seconds);
// The means the progress line shows, from sums over an epoch (EpochSums: loss reg cdiv real fake count [ce accuracy]):
// "loss L reg R cdiv C real R fake F" (4 decimals; zeros before the first step).
std::string metrics_text(const EpochSums& sums);

// Training time: the seconds since start() less those spent in off() sections (validation, pictures,
// checkpoints, the guard's probe: left out of ms/step and the ETA). Nested sections count once.
class RunClock {
 public:
  using Now = std::function<double()>;  // seconds on a monotonic clock
  explicit RunClock(Now now = {});
  void start();
  double training_seconds() const;
  double ms_per_step(int64_t steps) const;  // 0 before the first step
  double now() const { return now_(); }

  class Section {
   public:
    explicit Section(RunClock& c) : c_(c), start_(c.now_()) { ++c_.depth_; }
    ~Section() {
      if (--c_.depth_ == 0) c_.off_s_ += c_.now_() - start_;
    }
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;

   private:
    RunClock& c_;
    double start_;
  };
  Section off() { return Section(*this); }

 private:
  Now now_;
  double start_ = 0, off_s_ = 0;
  int depth_ = 0;
};

// The progress line's facts (step of total, the epoch shown of epochs, the means of `sums`).
struct Progress {
  int64_t step = 0, total_steps = 0, epoch = 0;
  int epochs = 0;
  double ms_per_step = 0;
  EpochSums sums{};
};

// The epoch summary's facts: its line "Epoch E/N - 12.3s 45ms/step - cdiv: ... [- val_*] [- IS - FID]" and
// its metrics.jsonl records ("epoch", and "eval" with train.eval).
struct EpochSummary {
  int epoch = 0, epochs = 0;
  int64_t step = 0, steps = 0;  // the run's step count; steps trained in this epoch by this process
  double seconds = 0;           // training time of the epoch
  EpochSums sums{};
  std::optional<ValidationMetrics> validation;  // train.validate
  std::optional<QualityReport> quality;         // train.eval, when due and scored
  std::optional<JemReport> jem;                 // train.eval of a train.objective "jem" run: the classifier's measures
  std::optional<double> drift_ratio;            // train.divergence.drift_factor on, with a level: drift_ratio
};

class RunLog {
 public:
  // `dir`: the run folder; `root`: whether this rank writes; out/err: the console (rank 0's); on_record: called
  // with each record appended to metrics.jsonl.
  RunLog(std::filesystem::path dir, bool root, std::ostream& out, std::ostream& err,
         std::function<void(const nlohmann::json&)> on_record = {});
  ~RunLog();

  std::ostream& out() { return root_ ? out_ : quiet_; }
  std::ostream& err() { return root_ ? err_ : quiet_; }
  RunClock& clock() { return clock_; }
  // Training starts now: the clock and the progress line's timer.
  void start_clock();
  // A live line rewritten in place (a terminal), or one line per report (a log).
  void set_tty(bool tty) { tty_ = tty; }
  bool tty() const { return tty_; }

  // metrics.jsonl: empty for a fresh run, or cut back after `step` for a resumed one; then open for appending.
  void open_metrics(std::optional<int64_t> resumed_at);
  // TensorBoard: the event files in tb/ cut back to `step` as metrics.jsonl is (also with `enabled` off: no step of
  // an abandoned history stays there), and with it on, appended to from here. A build without protobuf says so
  // once and trains on.
  void open_tensorboard(int64_t step, bool enabled);
  TensorBoardWriter* tensorboard() { return tb_.get(); }

  // Appends one record (and its scalars to TensorBoard).
  void record(const nlohmann::json& j);
  // A rollback to `step`: the step and epoch records past it go, the events that say why (diverged, rollback) stay;
  // TensorBoard likewise.
  void rewind(int64_t step);

  // The progress line, at most every 0.2 s on a terminal and 15 s in a log, unless `force`.
  void progress(const Progress& p, bool force);
  // The epoch summary line and its records.
  void epoch_summary(const EpochSummary& e);

 private:
  std::filesystem::path dir_;
  bool root_;
  std::ostream &out_, &err_;
  std::ostream quiet_{nullptr};  // no buffer: discards what it is given
  std::function<void(const nlohmann::json&)> on_record_;
  std::ofstream metrics_;
  std::unique_ptr<TensorBoardWriter> tb_;
  RunClock clock_;
  double printed_at_ = 0;
  bool tty_ = false;
};

// metrics.jsonl without the records past `step` (a resume from an earlier checkpoint, or a rollback, rewrites
// history); with `keep_events`, only the step and epoch records go, and the events that say why stay. A torn
// line (a killed run's last) goes too. Rewritten atomically; a missing file is left missing.
void truncate_metrics(const std::filesystem::path& file, int64_t step, bool keep_events = false);

}  // namespace ebm
