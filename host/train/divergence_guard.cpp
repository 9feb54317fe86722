#include "host/train/divergence_guard.hpp"

#include <algorithm>
#include <cmath>

#include "engine/loss.hpp"
#include "host/eval/sampling.hpp"  // newest_buffer_rows
#include "host/eval/scoring.hpp"
#include "host/train/run_log.hpp"

namespace ebm {

bool DivergenceGuard::within(double max_abs_f) const { return std::isfinite(max_abs_f) && max_abs_f <= c_.max_abs_f; }

bool DivergenceGuard::check_step(int64_t step, double loss, double max_abs_f) {
  if (std::isfinite(loss) && within(max_abs_f)) return true;
  found(step, "", std::isfinite(loss) ? max_abs_f : NAN);
  return false;
}

void DivergenceGuard::found(int64_t step, const std::string& where, double max_abs_f) {
  step_ = step;
  why_ = "diverged at step " + std::to_string(step) + (where.empty() ? "" : " (" + where + ")") + ": " +
         (std::isfinite(max_abs_f) ? "|f| reached " + fmt("%.4g", max_abs_f) + " > train.divergence.max_abs_f = " +
                                         fmt("%.4g", c_.max_abs_f)
                                   : std::string("the energy is NaN/inf"));
}

double drift_level(const std::vector<double>& history, int window) {
  const size_t n = std::min(history.size(), size_t(std::max(window, 0)));
  if (n < 3) return 0;
  std::vector<double> last(history.end() - std::ptrdiff_t(n), history.end());
  std::sort(last.begin(), last.end());
  return n % 2 ? last[n / 2] : 0.5 * (last[n / 2 - 1] + last[n / 2]);
}

double drift_ratio(const std::vector<double>& history, double reg, int window) {
  const double level = drift_level(history, window);
  return level > 0 ? reg / level : 0;
}

std::optional<double> DivergenceGuard::epoch_drift(double reg, const std::vector<double>& history) const {
  if (!drift_on()) return std::nullopt;
  const double level = drift_level(history, c_.drift_window);
  return level > 0 ? std::optional<double>(reg / level) : std::nullopt;
}

bool DivergenceGuard::check_drift(int64_t step, int64_t epoch, double reg, const std::vector<double>& history) {
  const std::optional<double> drift = epoch_drift(reg, history);
  if (!drift || !(*drift > c_.drift_factor)) return true;
  const double ratio = *drift;
  const int64_t n = int64_t(std::min(history.size(), size_t(c_.drift_window)));
  step_ = step;
  drifted_ = true;
  why_ = "drifted at step " + std::to_string(step) + " (the end of epoch " + std::to_string(epoch) +
         "): the regulariser's epoch mean " + fmt("%.4g", reg) + " is " + fmt("%.3g", ratio) + "x its level " +
         fmt("%.4g", drift_level(history, c_.drift_window)) + " (the median of the last " + std::to_string(n) +
         " normal epochs) > train.divergence.drift_factor = " + fmt("%.4g", c_.drift_factor) +
         ": the real and sampled energies are parting";
  return false;
}

bool DivergenceGuard::normal_epoch(double reg, const std::vector<double>& history) const {
  const std::optional<double> drift = epoch_drift(reg, history);
  return !drift || *drift <= std::sqrt(c_.drift_factor);
}

void DivergenceGuard::passed(TrainState s) {
  // the epoch ends, and the first good state (a fresh run's start, a resumed state), which a drift in the
  // first drift_lookback epochs goes back to
  if (drift_on() && (epoch_ends_.empty() || (s.batch == 0 && epoch_ends_.back().epoch < s.epoch))) {
    epoch_ends_.push_back(s);
    if (epoch_ends_.size() > size_t(c_.drift_lookback)) epoch_ends_.erase(epoch_ends_.begin());
  }
  good_ = std::move(s);
}

std::optional<TrainState> DivergenceGuard::roll_back(int64_t rollbacks, bool may_roll_back) {
  if (!may_roll_back || c_.action != "rollback" || rollbacks >= c_.max_rollbacks || !good_) return std::nullopt;
  const int64_t n = rollbacks + 1;
  TrainState back = drifted_ && !epoch_ends_.empty() ? epoch_ends_.front() : *good_;
  back.rollbacks = n;
  back.lr = good_->lr * c_.lr_factor;
  back.seed = good_->seed + 1000003ull * uint64_t(n);
  // what came after the state gone back to was abandoned
  std::erase_if(epoch_ends_, [&](const TrainState& s) { return s.step > back.step; });
  good_ = back;
  drifted_ = false;
  return back;
}

std::string DivergenceGuard::fallback(const FallbackFacts& f) const {
  const std::string lr = "train.lr (now " + fmt("%.3g", f.lr) + ")";
  const std::string hint = c_.action == "stop" ? "; try a lower " + lr + " or train.divergence.action=rollback"
                                               : "; try a lower " + lr + " or another seed";
  const std::string good =
      !f.before_drift ? "the last good checkpoint is "
      : f.within_lookback ? "the earliest checkpoint kept from before the drift (within train.divergence.drift_lookback "
                            "epochs of it: train.keep_checkpoints pruned older ones) is "
                          : "the newest checkpoint from before the drift is ";
  if (f.saved_step >= 0 && f.python_api)
    return good + f.last + " (step " + std::to_string(f.saved_step) +
           "): resume it with a lower learning rate, e.g. Trainer(config, resume=\"" + f.last +
           "\", overrides={\"train.lr\": " + fmt("%.3g", f.lr * 0.5) + "})" +
           (c_.action == "stop" ? " (or add \"train.divergence.action\": \"rollback\" to the overrides)" : "");
  if (f.saved_step >= 0)
    return good + f.last + " (step " + std::to_string(f.saved_step) +
           "): resume it with a lower learning rate, e.g. --resume " + f.last + " --set train.lr=" + fmt("%.3g", f.lr * 0.5) +
           (c_.action == "stop" ? " (or set train.divergence.action=rollback)" : "");
  if (f.resumed)
    return "this run wrote no checkpoint; the one it resumed from, " + *f.resumed + " (step " +
           std::to_string(f.start_step) + "), is unchanged" +
           (good_ ? "" : ", but its own weights already fail the guard with these settings (the first step after "
                         "resuming diverged): raise train.divergence.max_abs_f or resume an earlier checkpoint") +
           (good_ ? hint : "");
  if (!good_)
    return "no good checkpoint exists: the starting weights already fail the guard (step " +
           std::to_string(f.start_step + 1) + "'s forward pass); raise train.divergence.max_abs_f or change model.*";
  return "no good checkpoint exists yet: the run diverged before its first checkpoint was written" + hint;
}

double probe_max_abs_f(Backend& backend, const NetSpec& net, const Config& config, const Tensor& train,
                       const Tensor& buffer, const std::vector<int32_t>& buffer_classes, uint64_t seed, int64_t step) {
  const int64_t b = config.data.batch_size;
  const std::vector<float> real = backend.energy(image_rows(train, net, b, /*newest=*/false));
  const uint64_t stream = seed ^ 0x5bd1e995u ^ uint64_t(step);
  Tensor fake;
  if (buffer_classes.empty()) {
    fake = image_rows(buffer, net, b, /*newest=*/true);  // the newest rows are written last
    backend.sample(fake, engine_options_for(config).sampler, stream);
  } else {  // buffer.per_class: each class's newest, on its class's energy
    std::vector<int32_t> classes;
    fake = newest_buffer_rows({buffer, buffer_classes}, b, net.outputs, classes);
    backend.sample(fake, engine_options_for(config).sampler, stream, 0, nullptr, &classes);
  }
  const std::vector<float> refined = backend.energy(fake);
  return guard_max(max_abs_f(real.data(), int64_t(real.size())), max_abs_f(refined.data(), int64_t(refined.size())));
}

}  // namespace ebm
