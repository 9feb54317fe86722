// ebm_train's run end to end on a tiny net and data set: exact resume, the divergence guard, and the
// bad inputs that must fail with one clear message and leave existing checkpoints untouched.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <fstream>
#include <sstream>
#include <tuple>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "host/eval/sampling.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/dataset.hpp"
#include "host/io/idx.hpp"
#include "host/io/png_image.hpp"
#include "host/io/safetensors.hpp"
#include "host/io/tensorboard.hpp"
#include "host/train/divergence_guard.hpp"  // drift_ratio
#include "host/train/training_run.hpp"
#include "tests/sanitizers.hpp"  // kSanitized
#include "tests/test_support.hpp"
#if EBM_HAVE_TENSORBOARD
#include "host/io/tensorboard_event.pb.h"  // generated (build/proto/)
#endif

namespace fs = std::filesystem;
using namespace ebm;

namespace {

using test::slurp;

class TrainingRunTest : public ::testing::Test {
 protected:

  Config config(const std::string& out) const {
    Config c;
    c.output_dir = (root_ / out).string();
    c.data.dir = (root_ / "data").string();
    c.data.batch_size = 16;  // 40 images: batches of 16, 16 and a partial 8
    c.model.channels = {4, 8};
    c.sampler.steps = 3;
    c.buffer.capacity = 64;
    c.buffer.initial = 16;
    c.train.epochs = 3;
    c.train.log_every = 1;
    c.generate.n = 4;
    c.generate.steps = 3;
    c.backend = "cpu";
    return c;
  }

  // A run into `out` at learning rate `lr` under the guard's bound `max_abs_f`, stopping or rolling back.
  Config guarded(const std::string& out, double lr, double max_abs_f, const std::string& action = "stop") const {
    Config c = config(out);
    c.train.lr = lr;
    c.train.divergence.max_abs_f = max_abs_f;
    c.train.divergence.action = action;
    return c;
  }

  // train.eval every 2 of 4 epochs (3 batches each), 30 samples, on 40 glyph images of 3 classes in root_/glyphs
  Config glyph_eval_config(const std::string& out) const {
    test::write_glyph_dataset(root_ / "glyphs", 40, 40, 3);
    Config c = config(out);
    c.data.dir = (root_ / "glyphs").string();
    c.train.eval.every = 2;
    c.train.eval.n = 30;
    c.train.epochs = 4;
    return c;
  }
  // A run with the evaluator's classifier small enough to train in seconds.
  static TrainRunOptions with_small_classifier(const Config& c) {
    TrainRunOptions o;
    o.config = c;
    o.classifier.channels = {4, 8};
    o.classifier.images = 640;
    o.classifier.batch = 32;
    return o;
  }

  int run_with_resume(const Config& c, const std::string& resume) {
    TrainRunOptions o;
    o.config = c;
    o.resume = resume;
    return run_training(o);
  }

  int run(const Config& c, const std::string& resume = "") {
    TrainRunOptions o;
    o.config = c;
    if (!resume.empty()) o.resume = resume;
    return run_training(o);
  }

  struct Captured {
    int code;
    std::string out, err;  // what the run printed on stdout, and on stderr (divergence reports)
  };
  Captured run_captured(const Config& c, const std::string& resume = "") {
    TrainRunOptions o;
    o.config = c;
    if (!resume.empty()) o.resume = resume;
    return run_captured(o);
  }
  Captured run_captured(const TrainRunOptions& o) {
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    int code = -1;
    try {
      code = run_training(o);
    } catch (...) {
      ::testing::internal::GetCapturedStdout();
      ::testing::internal::GetCapturedStderr();
      throw;
    }
    std::string out = ::testing::internal::GetCapturedStdout();
    return {code, out, ::testing::internal::GetCapturedStderr()};
  }

  // max |f| under a checkpoint's weights over the training and test images (what ebm_score would report
  // for them, negated); NaN when any is NaN/inf.
  double max_abs_energy(const std::string& checkpoint) const {
    const Model m = load_model(checkpoint);
    EngineOptions o = engine_options_for(m.config);
    o.buffer_initial = o.buffer_capacity = 16;
    CpuBackend be(o);
    be.set_params(m.params);
    double worst = 0;
    for (const char* set : {"data/train-images-idx3-ubyte.gz", "data/t10k-images-idx3-ubyte.gz"})
      for (float f : be.energy(load_idx_images((root_ / set).string(), 32))) {
        if (!std::isfinite(f)) return NAN;
        worst = std::max(worst, double(std::fabs(f)));
      }
    return worst;
  }

  test::TinyDataRoot tmp_;
  const fs::path& root_ = tmp_.path;
};

}  // namespace

TEST_F(TrainingRunTest, ResumeIsBitExactAcrossAnEpochBoundary) {
  Config straight = config("straight");
  straight.train.max_steps = 5;
  ASSERT_EQ(run(straight), 0);
  Config part = config("parts");
  part.train.max_steps = 2;
  ASSERT_EQ(run(part), 0);
  part.train.max_steps = 5;  // 3 steps per epoch: the resumed part crosses into epoch 2
  ASSERT_EQ(run(part, (root_ / "parts/last").string()), 0);
  EXPECT_EQ(slurp(root_ / "straight/last/model.safetensors"), slurp(root_ / "parts/last/model.safetensors"));
  EXPECT_EQ(slurp(root_ / "straight/last/train_state.safetensors"), slurp(root_ / "parts/last/train_state.safetensors"));
  EXPECT_EQ(slurp(root_ / "straight/epoch_1/model.safetensors"), slurp(root_ / "parts/epoch_1/model.safetensors"));
  EXPECT_EQ(fs::exists(root_ / "parts/samples/epoch_1.png"), png_available());  // skipped without libpng
  EXPECT_TRUE(fs::exists(root_ / "parts/config.json"));
}

// The training recipe on (EMA and spectral norm): a resumed run equals an uninterrupted one bit for bit, and
// model.safetensors holds the sampling weights, which the raw θ, θ_ema and u of train_state give back.
TEST_F(TrainingRunTest, ResumeIsBitExactWithEmaAndSpectralNorm) {
  auto recipe = [&](const std::string& out) {
    Config c = config(out);
    c.train.ema_decay = 0.8;
    c.model.spectral_norm = true;
    return c;
  };
  Config straight = recipe("straight");
  straight.train.max_steps = 5;
  ASSERT_EQ(run(straight), 0);
  Config part = recipe("parts");
  part.train.max_steps = 2;
  ASSERT_EQ(run(part), 0);
  part.train.max_steps = 5;  // across the epoch boundary (3 steps per epoch)
  ASSERT_EQ(run(part, (root_ / "parts/last").string()), 0);
  EXPECT_EQ(slurp(root_ / "straight/last/model.safetensors"), slurp(root_ / "parts/last/model.safetensors"));
  EXPECT_EQ(slurp(root_ / "straight/last/train_state.safetensors"), slurp(root_ / "parts/last/train_state.safetensors"));
  EXPECT_EQ(slurp(root_ / "straight/epoch_1/model.safetensors"), slurp(root_ / "parts/epoch_1/model.safetensors"));

  const std::string dir = (root_ / "straight/last").string();
  const Model m = load_model(dir);
  const TrainState s = load_train_state(dir, m.net);
  ASSERT_EQ(s.ema.size(), s.params.size());
  ASSERT_EQ(int64_t(s.sn_u.size()), 4 + 8 + 1);
  EngineOptions o = engine_options_for(m.config);
  ASSERT_TRUE(o.spectral_norm);
  ASSERT_EQ(o.ema_decay, 0.8);
  CpuBackend be(o);
  be.set_params(s.params);
  be.set_ema(s.ema);
  be.set_sn_state(s.sn_u);
  EXPECT_EQ(be.sampling_params(), m.params) << "model.safetensors holds eff(θ_ema, u)";
  EXPECT_NE(m.params, s.params);
  EXPECT_EQ(SafeTensors::load(dir + "/model.safetensors").metadata.at("weights"), "ema+spectral_norm");
  // The tools run model.safetensors as it is: their backend has neither feature.
  const EngineOptions tool = tool_engine_options(m);
  EXPECT_EQ(tool.ema_decay, 0.0);
  EXPECT_FALSE(tool.spectral_norm);
}

TEST_F(TrainingRunTest, WithoutTheRecipeCheckpointsHoldNoRecipeState) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  const std::string dir = (root_ / "run/last").string();
  const SafeTensors st = SafeTensors::load(dir + "/train_state.safetensors");
  EXPECT_FALSE(st.has("params"));
  EXPECT_FALSE(st.has("ema"));
  EXPECT_FALSE(st.has("sn.u.0"));
  EXPECT_EQ(SafeTensors::load(dir + "/model.safetensors").metadata.count("weights"), 0u);
}

TEST_F(TrainingRunTest, ResumeTurningEmaOnStartsItFromTheParametersAndSaysSo) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  const TrainState before = load_train_state((root_ / "run/last").string(), net_spec_for(c));
  c.train.max_steps = 3;
  c.train.ema_decay = 0.5;
  const Captured r = run_captured(c, (root_ / "run/last").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("holds no EMA weights: the EMA starts from its parameters at step 2"), std::string::npos) << r.out;
  const TrainState after = load_train_state((root_ / "run/last").string(), net_spec_for(c));
  ASSERT_EQ(after.ema.size(), after.params.size());
  std::vector<float> want = before.params;  // θ_ema = θ at step 2, then one update with θ at step 3
  for (size_t i = 0; i < want.size(); ++i) want[i] = float(std::fma(0.5, double(want[i]), 0.5 * double(after.params[i])));
  EXPECT_EQ(after.ema, want);
  // ... and off again: the EMA is dropped, the checkpoint is a plain one.
  c.train.max_steps = 4;
  c.train.ema_decay = 0;
  ASSERT_EQ(run(c, (root_ / "run/last").string()), 0);
  EXPECT_TRUE(load_train_state((root_ / "run/last").string(), net_spec_for(c)).ema.empty());
}

TEST_F(TrainingRunTest, ResumeTurningSpectralNormOnIsRefused) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  c.model.spectral_norm = true;
  c.train.max_steps = 2;
  try {
    run(c, (root_ / "run/last").string());
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.spectral_norm is false in the checkpoint but true now"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
}

TEST_F(TrainingRunTest, ACheckpointFromBeforeTheRecipeResumes) {
  // config.json without model.spectral_norm and train.ema_decay (written before they existed): both off.
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  const fs::path cfg = root_ / "run/last/config.json";
  auto j = nlohmann::json::parse(slurp(cfg));
  j["model"].erase("spectral_norm");
  j["train"].erase("ema_decay");
  std::ofstream(cfg) << j.dump(2);
  c.train.max_steps = 2;
  const Captured r = run_captured(c, (root_ / "run/last").string());
  EXPECT_EQ(r.code, 0) << r.out;
}

TEST_F(TrainingRunTest, CheckpointLoadsBackWithPyTorchNames) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  const Model m = load_model((root_ / "run/last").string());
  EXPECT_EQ(m.config.model.channels, (std::vector<int>{4, 8}));
  EXPECT_EQ(int64_t(m.params.size()), m.net.num_params);
  const TrainState s = load_train_state((root_ / "run/last").string(), m.net);
  EXPECT_EQ(s.step, 1);
  EXPECT_EQ(s.adam.t, 1);
  EXPECT_EQ(s.buffer.dim(0), 16 + 16) << "initial images plus one written-back batch";
}

TEST_F(TrainingRunTest, DivergenceStopsAndKeepsTheLastGoodCheckpoint) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  c.train.max_steps = 4;
  c.train.divergence.max_abs_f = 1e-12;  // any energy "diverges"
  EXPECT_EQ(run(c, (root_ / "run/last").string()), kRunDiverged);
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
  EXPECT_NE(slurp(root_ / "run/metrics.jsonl").find("\"event\":\"diverged\""), std::string::npos);
}

// --- the divergence guard: a checkpoint the run keeps, or rolls back to, has passed it ---

TEST_F(TrainingRunTest, ValidationFlagsTheFirstEpochAndNothingIsKept) {
  // One step per epoch (the issue's data.limit=128 at batch 128): step 1's own forward pass (on the initial
  // weights) is well within the bound, but the weights it produces give |f| ≈ 8.5 on the test set. The run
  // used to keep them as "the last good checkpoint".
  Config c = guarded("run", 0.5, 5);
  c.data.batch_size = 40;
  const Captured r = run_captured(c);
  EXPECT_EQ(r.code, kRunDiverged);
  EXPECT_FALSE(fs::exists(root_ / "run/last"));
  EXPECT_FALSE(fs::exists(root_ / "run/epoch_1"));
  EXPECT_NE(r.err.find("diverged at step 1 (validation at the end of epoch 1): |f| reached"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no good checkpoint exists yet"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("(step 0)"), std::string::npos) << "names no checkpoint that does not exist: " << r.err;
  std::istringstream log(slurp(root_ / "run/metrics.jsonl"));
  double val_max = 0;
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "epoch") val_max = j["val_max_abs_f"].get<double>();
    if (j["event"] == "step") {
      EXPECT_LT(j["fake"].get<double>(), 5.0);
    }
  }
  EXPECT_GT(val_max, 5.0) << "the epoch record shows the value the guard flagged";
}

TEST_F(TrainingRunTest, NaNWeightsAreNeverKept) {
  // lr 1e30 with a bound no finite value exceeds: the weights after step 1 give NaN/inf everywhere.
  Config c = guarded("run", 1e30, 1e308);
  c.train.checkpoint_every = 1;
  EXPECT_EQ(run(c), kRunDiverged);
  EXPECT_FALSE(fs::exists(root_ / "run/last")) << "the only candidate (step 1) failed the next forward pass";
  EXPECT_NE(slurp(root_ / "run/metrics.jsonl").find("NaN/inf"), std::string::npos);
}

TEST_F(TrainingRunTest, EveryKeptCheckpointPassesTheGuard) {
  // Runs that diverge after some good steps — in a training step's forward pass or at an epoch end's
  // validation: whatever they keep scores within the bound on the data.
  const std::pair<double, double> cases[] = {{0.02, 2.0}, {0.05, 5.0}, {0.1, 5.0}, {0.2, 2.0}};  // lr, bound
  for (const auto& [lr, bound] : cases) {
    const std::string name = "run_" + std::to_string(lr);
    Config c = guarded(name, lr, bound);
    c.train.checkpoint_every = 1;
    EXPECT_EQ(run(c), kRunDiverged) << "lr " << lr;
    int found = 0;
    for (const char* kept : {"last", "epoch_1", "epoch_2", "epoch_3"}) {
      const fs::path dir = root_ / name / kept;
      if (!fs::exists(dir)) continue;
      ++found;
      const double worst = max_abs_energy(dir.string());
      EXPECT_TRUE(std::isfinite(worst)) << dir;
      EXPECT_LE(worst, bound) << dir << " was kept but scores beyond the bound";
    }
    EXPECT_GT(found, 0) << "lr " << lr << ": expected some good steps before the divergence";
  }
}

TEST_F(TrainingRunTest, RollbackGoesToAVerifiedStateAndRecovers) {
  // The issue's case: checkpoints every step and rollback. Step 1's weights blow up the next forward pass,
  // so they are never the rollback target; the run returns to the initial state (checked by step 1's
  // forward pass) with a far lower learning rate and finishes. It used to return to step 1 each time and
  // diverge again at step 2, whatever the lr.
  Config c = guarded("run", 1e30, 1e6, "rollback");
  c.train.max_steps = 6;
  c.train.checkpoint_every = 1;
  c.train.divergence.lr_factor = 1e-33;  // 1e30 → 1e-3
  EXPECT_EQ(run(c), kRunOk);
  const std::string log = slurp(root_ / "run/metrics.jsonl");
  EXPECT_EQ(test::count(log, "\"event\":\"rollback\""), 1u) << log;
  EXPECT_NE(log.find("{\"event\":\"rollback\",\"lr\":0.001,\"rollbacks\":1,\"seed\":1000045,\"step\":0}"),
            std::string::npos)
      << "back to step 0 with seed 42 + 1000003: " << log;
  const TrainState s = load_train_state((root_ / "run/last").string(), net_spec_for(c));
  EXPECT_EQ(s.step, 6);
  EXPECT_EQ(s.rollbacks, 1);
  EXPECT_DOUBLE_EQ(s.lr, 1e-3);
  EXPECT_LE(max_abs_energy((root_ / "run/last").string()), 1e6);
}

TEST_F(TrainingRunTest, RollbackLowersTheLearningRateThenGivesUp) {
  Config c = guarded("run", 1e30, 1e6, "rollback");
  c.train.max_steps = 3;
  c.train.divergence.max_rollbacks = 2;
  const Captured r = run_captured(c);
  EXPECT_EQ(r.code, kRunDiverged);
  const std::string log = slurp(root_ / "run/metrics.jsonl");
  EXPECT_EQ(test::count(log, "\"event\":\"rollback\""), 2u) << log;
  EXPECT_NE(log.find("\"lr\":2.5e+29"), std::string::npos) << "1e30 halved twice: " << log;
  EXPECT_NE(r.err.find("gave up after 2 rollbacks"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(root_ / "run/last"));
}

TEST_F(TrainingRunTest, StartingWeightsThatFailTheGuardAreSaidPlainly) {
  // A bound below any energy: no state is good, so there is nothing to roll back to.
  Config c = guarded("run", 1e-4, 1e-12, "rollback");
  c.train.max_steps = 3;
  const Captured r = run_captured(c);
  EXPECT_EQ(r.code, kRunDiverged);
  EXPECT_NE(r.err.find("the starting weights already fail the guard"), std::string::npos) << r.err;
  EXPECT_EQ(test::count(slurp(root_ / "run/metrics.jsonl"), "\"event\":\"rollback\""), 0u);
  EXPECT_FALSE(fs::exists(root_ / "run/last"));
}

TEST_F(TrainingRunTest, ADivergenceAfterResumeKeepsTheResumedCheckpointAndSaysSo) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  c.train.max_steps = 6;
  c.train.lr = 1e30;  // the recovery recipe backwards: step 3's weights fail step 4's forward pass
  c.train.divergence.max_abs_f = 1e6;
  c.train.checkpoint_every = 1;
  const std::string before = slurp(root_ / "run/last/train_state.safetensors");
  const Captured r = run_captured(c, (root_ / "run/last").string());
  EXPECT_EQ(r.code, kRunDiverged);
  EXPECT_EQ(slurp(root_ / "run/last/train_state.safetensors"), before);
  EXPECT_NE(r.err.find("this run wrote no checkpoint; the one it resumed from"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(step 2), is unchanged"), std::string::npos) << r.err;
}

TEST_F(TrainingRunTest, ARollbackFoundByTheLastProbeTrainsOn) {
  // The weights of the run's last step fail the probe before the last checkpoint: the run rolls back and
  // trains to max_steps again (it used to return the rollback's −1 as its exit code: 255).
  Config c = guarded("run", 0.1, 5, "rollback");
  c.train.max_steps = 4;
  const Captured r = run_captured(c);
  EXPECT_EQ(r.code, kRunOk) << r.out << r.err;
  EXPECT_NE(r.err.find("diverged at step 4 (its weights, probed before the last checkpoint)"), std::string::npos) << r.err;
  const TrainState s = load_train_state((root_ / "run/last").string(), net_spec_for(c));
  EXPECT_EQ(s.step, 4);
  EXPECT_GE(s.rollbacks, 1);
  EXPECT_LE(max_abs_energy((root_ / "run/last").string()), 5.0);
  const std::string log = slurp(root_ / "run/metrics.jsonl");
  EXPECT_NE(log.find(R"("event":"diverged","message":"diverged at step 4)"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("step":4})"), std::string::npos) << "the diverged record names the step it failed at";
}

TEST_F(TrainingRunTest, AfterARollbackTheMetricsHoldOneRecordPerStep) {
  Config c = guarded("run", 0.1, 5, "rollback");
  c.train.max_steps = 6;
  ASSERT_EQ(run(c), kRunOk);
  std::istringstream log(slurp(root_ / "run/metrics.jsonl"));
  std::map<int64_t, int> steps;
  int rollbacks = 0;
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "step") ++steps[j["step"].get<int64_t>()];
    rollbacks += j["event"] == "rollback";
  }
  EXPECT_GE(rollbacks, 1);
  for (const auto& [step, n] : steps) EXPECT_EQ(n, 1) << "step " << step << " logged " << n << " times";
  EXPECT_EQ(steps.size(), 6u);
#if EBM_HAVE_TENSORBOARD
  // tb/ is cut back at the rollback as metrics.jsonl is: train/loss once for each step logged there.
  std::map<int64_t, int> tb_steps;
  for (const auto& f : fs::directory_iterator(root_ / "run/tb")) {
    const std::string bytes = slurp(f.path());
    for (std::string_view r : scan_tfrecords(bytes).records) {
      ebm::tensorboard::Event e;
      ASSERT_TRUE(e.ParseFromArray(r.data(), int(r.size())));
      for (const auto& v : e.summary().value()) tb_steps[e.step()] += v.tag() == "train/loss";
    }
  }
  std::erase_if(tb_steps, [](const auto& kv) { return kv.second == 0; });
  EXPECT_EQ(tb_steps, steps);
#endif
}

// --- resume with new settings: the recovery recipe ---

TEST_F(TrainingRunTest, ResumeAppliesANewLearningRateFromTheNextStep) {
  // The issue's case: steps 3–4 ran at the checkpoint's 1e-4 while config.json recorded 1e-3.
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  fs::copy(root_ / "run", root_ / "copy", fs::copy_options::recursive);
  c.train.max_steps = 4;
  c.train.lr = 1e-3;
  const Captured r = run_captured(c, (root_ / "run/last").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("applied from step 3: train.lr 0.0001 -> 0.001"), std::string::npos) << r.out;

  std::istringstream log(slurp(root_ / "run/metrics.jsonl"));
  int steps_at_new_lr = 0, resume_events = 0;
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "step") {
      EXPECT_DOUBLE_EQ(j["lr"].get<double>(), j["step"].get<int>() <= 2 ? 1e-4 : 1e-3) << line;
    }
    if (j["event"] == "step" && j["step"].get<int>() > 2) ++steps_at_new_lr;
    if (j["event"] == "resume") {
      ++resume_events;
      EXPECT_EQ(j["step"], 2);
      EXPECT_EQ(j["changed"].dump(), R"({"train.lr":[0.0001,0.001],"train.max_steps":[2,4]})");
    }
  }
  EXPECT_EQ(steps_at_new_lr, 2);
  EXPECT_EQ(resume_events, 1);
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(slurp(root_ / "run/config.json"))["train"]["lr"].get<double>(), 1e-3);

  // The same two steps by hand on the backend, from the step-2 checkpoint at lr 1e-3: bit for bit.
  const NetSpec net = net_spec_for(c);
  const TrainState at2 = load_train_state((root_ / "copy/last").string(), net);
  const Dataset data = load_dataset(c.data);
  CpuBackend be(engine_options_for(c));
  be.set_train_data(data.train);
  be.set_params(at2.params);
  be.set_adam(at2.adam);
  be.set_buffer(at2.buffer);
  be.set_rng_state(at2.rng);
  be.set_lr(1e-3);
  be.begin_epoch(0);
  be.train_step(2);  // the partial last batch of epoch 1 (16, 16, 8)
  be.begin_epoch(1);
  be.train_step(0);
  const TrainState at4 = load_train_state((root_ / "run/last").string(), net);
  EXPECT_EQ(at4.params, be.params());
  EXPECT_DOUBLE_EQ(at4.lr, 1e-3);
}

TEST_F(TrainingRunTest, ACosineScheduleWithWarmupSetsEachStepsRateAndResumesExactly) {
  // 3 epochs of 3 batches: T = 9 steps, warm-up W = 2, cosine to 0 over p = (t − 2)/7.
  Config c = config("straight");
  c.train.lr = 1e-3;
  c.train.lr_schedule = "cosine";
  c.train.lr_warmup_steps = 2;
  ASSERT_EQ(run(c), 0);
  const double pi = std::acos(-1.0);
  std::map<int, double> lr;
  std::istringstream log(slurp(root_ / "straight/metrics.jsonl"));
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "step") lr[j["step"].get<int>()] = j["lr"].get<double>();
  }
  ASSERT_EQ(lr.size(), 9u);
  EXPECT_DOUBLE_EQ(lr[1], 1e-3 * 0.5);  // t = 0: warm-up (0+1)/2
  EXPECT_DOUBLE_EQ(lr[2], 1e-3);        // t = 1: warm-up done, p = 0
  EXPECT_DOUBLE_EQ(lr[3], 1e-3);        // t = 2: p = 0
  EXPECT_NEAR(lr[6], 1e-3 * 0.5 * (1 + std::cos(pi * 3 / 7)), 1e-15);  // t = 5
  EXPECT_NEAR(lr[9], 1e-3 * 0.5 * (1 + std::cos(pi * 6 / 7)), 1e-15);  // t = 8, the last step

  // Stopped at step 4 and resumed: the same rates from the step count, so the same bits.
  Config part = c;
  part.output_dir = (root_ / "parts").string();
  part.train.max_steps = 4;
  ASSERT_EQ(run(part), 0);
  part.train.max_steps = 0;
  ASSERT_EQ(run(part, (root_ / "parts/last").string()), 0);
  EXPECT_EQ(slurp(root_ / "straight/last/model.safetensors"), slurp(root_ / "parts/last/model.safetensors"));
  EXPECT_EQ(slurp(root_ / "straight/last/train_state.safetensors"), slurp(root_ / "parts/last/train_state.safetensors"));

  // And the schedule did something: the constant rate ends elsewhere.
  Config flat = c;
  flat.output_dir = (root_ / "flat").string();
  flat.train.lr_schedule = "constant";
  flat.train.lr_warmup_steps = 0;
  ASSERT_EQ(run(flat), 0);
  EXPECT_NE(slurp(root_ / "straight/last/model.safetensors"), slurp(root_ / "flat/last/model.safetensors"));
}

TEST_F(TrainingRunTest, TrainEvalRecordsSampleQualityEachNthEpoch) {
  const Captured r = run_captured(with_small_classifier(glyph_eval_config("eval")));
  const std::string& out = r.out;
  ASSERT_EQ(r.code, 0) << out;
  EXPECT_NE(out.find("eval: every 2 epochs, 30 samples; classifier"), std::string::npos) << out;
  EXPECT_EQ(test::count(out, " - IS: "), 2u) << out;  // epochs 2 and 4
  EXPECT_EQ(test::count(out, " - FID: "), 2u) << out;
  std::vector<int> epochs;
  std::istringstream log(slurp(root_ / "eval/metrics.jsonl"));
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] != "eval") continue;
    epochs.push_back(j["epoch"].get<int>());
    EXPECT_EQ(j["n"], 30);
    EXPECT_GE(j["is"].get<double>(), 1.0 - 1e-9);
    EXPECT_LE(j["is"].get<double>(), 10.0 + 1e-9);
    EXPECT_GE(j["fid"].get<double>(), 0.0);
    int64_t total = 0;
    for (const auto& h : j["class_hist"]) total += h.get<int64_t>();
    EXPECT_EQ(total, 30);
    EXPECT_EQ(j["step"].get<int>(), j["epoch"].get<int>() * 3);  // 3 batches per epoch
  }
  EXPECT_EQ(epochs, (std::vector<int>{2, 4}));
  if (png_available()) {  // IS and FID charts under the training curves
    const Image curves = read_png((root_ / "eval/curves.png").string());
    EXPECT_EQ(curves.height, 3 * 400);
  }
}

TEST_F(TrainingRunTest, ARunThatEndsBeforeItsFirstEvalTrainsNoClassifier) {
  // eval every 2 epochs of 3 batches: max_steps 5 ends in epoch 2, epochs 1 ends at epoch 1, so neither evaluates and
  // neither may spend minutes training the classifier; max_steps 6 reaches epoch 2's eval, and trains it.
  auto has_classifier = [&] {
    for (const auto& e : fs::directory_iterator(root_ / "glyphs"))
      if (e.path().filename().string().rfind("classifier", 0) == 0) return true;
    return false;
  };
  Config c = glyph_eval_config("short");
  for (const auto& [max_steps, epochs, says] : {std::tuple{int64_t(5), 4, "(train.max_steps 5): no eval, no classifier"},
                                                std::tuple{int64_t(0), 1, "(train.epochs 1): no eval, no classifier"}}) {
    c.train.max_steps = max_steps;
    c.train.epochs = epochs;
    c.output_dir = (root_ / ("short" + std::to_string(max_steps))).string();
    const Captured r = run_captured(with_small_classifier(c));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find(std::string("eval: every 2 epochs, the first at the end of epoch 2; this run ends before it ") +
                         says),
              std::string::npos)
        << r.out;
    EXPECT_FALSE(has_classifier()) << r.out;
    EXPECT_EQ(slurp(fs::path(c.output_dir) / "metrics.jsonl").find("\"event\":\"eval\""), std::string::npos);
  }
  c.train.max_steps = 6;
  c.train.epochs = 4;
  c.output_dir = (root_ / "short6").string();
  const Captured r = run_captured(with_small_classifier(c));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("eval: every 2 epochs, 30 samples; classifier"), std::string::npos) << r.out;
  EXPECT_TRUE(has_classifier()) << r.out;
  EXPECT_EQ(test::count(r.out, " - IS: "), 1u) << r.out;  // epoch 2
}

TEST_F(TrainingRunTest, ResumeWithANewSeedDrawsFreshStreams) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  for (const char* copy : {"same", "seed7", "seed7b"}) fs::copy(root_ / "run", root_ / copy, fs::copy_options::recursive);
  c.train.max_steps = 4;
  c.output_dir = (root_ / "same").string();
  ASSERT_EQ(run(c, (root_ / "same/last").string()), 0);
  c.seed = 7;
  for (const char* dir : {"seed7", "seed7b"}) {
    c.output_dir = (root_ / dir).string();
    ASSERT_EQ(run(c, (root_ / dir / "last").string()), 0);
  }
  const NetSpec net = net_spec_for(c);
  const TrainState same = load_train_state((root_ / "same/last").string(), net);
  const TrainState a = load_train_state((root_ / "seed7/last").string(), net);
  const TrainState b = load_train_state((root_ / "seed7b/last").string(), net);
  EXPECT_EQ(a.seed, 7u);
  EXPECT_EQ(a.rng[0], 7u) << "the cpu backend's streams are keyed by the new seed";
  EXPECT_EQ(same.seed, 42u);
  EXPECT_NE(a.params, same.params) << "another seed, other noise and buffer draws";
  EXPECT_EQ(a.params, b.params) << "still deterministic";
  const std::string log = slurp(root_ / "seed7/metrics.jsonl");
  const size_t at = log.find("{\"changed\"");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_EQ(nlohmann::json::parse(log.substr(at, log.find('\n', at) - at))["changed"]["seed"].dump(), "[42,7]");
}

TEST_F(TrainingRunTest, ResumeIntoAnotherFolderLeavesTheOriginalAlone) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  c.train.max_steps = 3;
  c.train.lr = 5e-5;
  c.output_dir = (root_ / "retry").string();
  ASSERT_EQ(run(c, (root_ / "run/last").string()), 0);
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
  EXPECT_EQ(load_train_state((root_ / "retry/last").string(), net_spec_for(c)).step, 3);
}

namespace {

std::string fmt_g(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

// Every file under `dir` with its bytes: a refused run must leave them all as they were.
std::map<std::string, std::string> folder_contents(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    files[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? slurp(e.path()) : "<dir>";
  return files;
}

}  // namespace

TEST_F(TrainingRunTest, ARefusedResumeNamesTheKeyAndBothValuesAndWritesNothing) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  const auto before = folder_contents(root_ / "run");
  const std::string last = (root_ / "run/last").string();
  struct Case {
    std::function<void(Config&)> change;
    std::string says;
  };
  const Case cases[] = {
      {[](Config& x) { x.model.channels = {4, 16}; }, "model.channels is [4,8] in the checkpoint but [4,16] now"},
      {[](Config& x) { x.model.kernel_size = 5; }, "model.kernel_size is 3 in the checkpoint but 5 now"},
      {[](Config& x) { x.buffer.capacity = 128; }, "buffer.capacity is 64 in the checkpoint but 128 now"},
      {[](Config& x) { x.buffer.initial = 8; }, "buffer.initial is 16 in the checkpoint but 8 now"},
      {[](Config& x) { x.data.batch_size = 8; }, "data.batch_size is 16 in the checkpoint but 8 now"},
      {[](Config& x) { x.data.limit = 30; }, "data.limit is 0 in the checkpoint but 30 now"},
      {[](Config& x) { x.data.dataset = "fashion-mnist"; }, R"(data.dataset is "mnist" in the checkpoint but "fashion-mnist" now)"},
      {[](Config& x) { x.data.pad_to = 30; }, "data.pad_to is 32 in the checkpoint but 30 now"},
  };
  for (const Case& k : cases) {
    Config changed = c;
    changed.train.max_steps = 4;
    changed.train.lr = 1e-3;  // allowed, and not applied either when another key is refused
    k.change(changed);
    test::expect_user_error([&] { run(changed, last); }, {"--resume " + last, k.says, "start a new run"});
    EXPECT_EQ(folder_contents(root_ / "run"), before) << k.says;
  }
  // A fresh output folder for a refused resume is not even created.
  Config elsewhere = c;
  elsewhere.output_dir = (root_ / "new/deeper").string();
  elsewhere.buffer.capacity = 128;
  EXPECT_THROW(run(elsewhere, last), UserError);
  EXPECT_FALSE(fs::exists(root_ / "new"));
}

TEST_F(TrainingRunTest, ResumeOnOtherDataIsRefusedAndMovedDataIsNot) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  const auto before = folder_contents(root_ / "run");
  c.train.max_steps = 3;
  fs::create_directories(root_ / "other");
  test::write_random_idx_images(root_ / "other/train-images-idx3-ubyte.gz", 40, 99);  // same count, other pixels
  fs::copy(root_ / "data/t10k-images-idx3-ubyte.gz", root_ / "other/");
  c.data.dir = (root_ / "other").string();
  test::expect_user_error([&] { run(c, (root_ / "run/last").string()); },
                          {"the checkpoint was trained on another data set (40 training images",
                           "a resumed run keeps its data set"});
  EXPECT_EQ(folder_contents(root_ / "run"), before);
  fs::copy(root_ / "data", root_ / "moved", fs::copy_options::recursive);
  c.data.dir = (root_ / "moved").string();
  EXPECT_EQ(run(c, (root_ / "run/last").string()), 0) << "the same images in another folder";
}

TEST_F(TrainingRunTest, TheOutputFolderMustFitTheRun) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  Config other = config("other");
  other.train.max_steps = 1;
  ASSERT_EQ(run(other), 0);
  const auto before = folder_contents(root_ / "run");
  const auto before_other = folder_contents(root_ / "other");
  // Another run's checkpoint resumed into this run's folder would mix the two runs.
  Config into = c;
  into.train.max_steps = 3;
  test::expect_user_error([&] { run(into, (root_ / "other/last").string()); },
                          {"already holds another run (last/", "into its own run folder or a new one"});
  // A checkpoint is not a run folder, fresh or resumed, and the checkpoint resumed is not written into.
  Config as_ckpt = c;
  as_ckpt.output_dir = (root_ / "run/last").string();
  test::expect_user_error([&] { run(as_ckpt); }, {"is a checkpoint (it holds model.safetensors), not a run folder"});
  as_ckpt.train.max_steps = 3;
  test::expect_user_error([&] { run(as_ckpt, (root_ / "run/last").string()); }, {"is a checkpoint"});
  as_ckpt.output_dir = (root_ / "run/last/sub").string();
  test::expect_user_error([&] { run(as_ckpt, (root_ / "run/last").string()); },
                          {"is inside the checkpoint being resumed"});
  // A fresh run into a folder that holds a run's epochs, even without last/.
  fs::rename(root_ / "other/last", root_ / "other/last.old");
  Config fresh = config("other");
  test::expect_user_error([&] { run(fresh); }, {"moved aside: rename", "last.old"});
  test::expect_user_error([&] { run(fresh, (root_ / "other/last").string()); },
                          {"other/last.old does: a run killed while saving moved it aside"});
  fs::rename(root_ / "other/last.old", root_ / "other/last");
  fs::remove_all(root_ / "other/last");
  test::expect_user_error([&] { run(fresh); }, {"already holds a run that wrote no checkpoint (metrics.jsonl)", "remove the folder"});
  EXPECT_EQ(folder_contents(root_ / "run"), before);
  // A run folder given as the checkpoint: the hint names its last/.
  test::expect_user_error([&] { run(into, (root_ / "run").string()); }, {"a run folder, not a checkpoint", "run/last"});
}

TEST_F(TrainingRunTest, PruningKeepsTheNewestEpochsOfThisHistory) {
  Config c = config("run");
  c.data.batch_size = 40;  // one step per epoch
  c.train.epochs = 5;
  c.train.keep_checkpoints = 0;
  ASSERT_EQ(run(c), 0);
  // Back to epoch 1 in the same folder: epochs 2 and 3 are written anew, 4 and 5 are the abandoned history.
  c.train.keep_checkpoints = 2;
  c.train.max_steps = 3;
  ASSERT_EQ(run(c, (root_ / "run/epoch_1").string()), 0);
  EXPECT_FALSE(fs::exists(root_ / "run/epoch_1"));
  for (int e : {2, 3}) EXPECT_EQ(load_train_state((root_ / "run" / ("epoch_" + std::to_string(e))).string(),
                                                  net_spec_for(c)).step, e) << "written by the resumed run";
  for (int e : {4, 5}) EXPECT_TRUE(fs::exists(root_ / "run" / ("epoch_" + std::to_string(e)))) << "not counted";
}

TEST_F(TrainingRunTest, AResumeAfterRollbacksSaysWhichLearningRateItKeeps) {
  Config c = guarded("run", 0.1, 5, "rollback");
  c.train.max_steps = 6;
  ASSERT_EQ(run(c), kRunOk);
  const TrainState s = load_train_state((root_ / "run/last").string(), net_spec_for(c));
  ASSERT_GE(s.rollbacks, 1);
  ASSERT_LT(s.lr, 0.1);
  c.train.max_steps = 7;
  c.train.divergence.max_abs_f = 1e6;
  const Captured r = run_captured(c, (root_ / "run/last").string());
  ASSERT_EQ(r.code, kRunOk) << r.err;
  EXPECT_NE(r.out.find("note: this run keeps its learning rate " + fmt_g(s.lr) + " (train.lr 0.1 lowered by rollbacks)"),
            std::string::npos) << r.out;
  const TrainState after = load_train_state((root_ / "run/last").string(), net_spec_for(c));
  EXPECT_EQ(after.rollbacks, 0) << "a resumed run counts its own rollbacks";
  EXPECT_DOUBLE_EQ(after.lr, s.lr);
}

TEST_F(TrainingRunTest, AResumeOfACompleteRunWritesNothing) {
  Config c = config("run");
  c.train.max_steps = 3;
  ASSERT_EQ(run(c), 0);
  const auto before = folder_contents(root_ / "run");
  c.train.max_steps = 2;
  const Captured r = run_captured(c, (root_ / "run/last").string());
  EXPECT_EQ(r.code, kRunOk);
  EXPECT_NE(r.out.find("nothing to do: the run is complete (step 3"), std::string::npos) << r.out;
  EXPECT_EQ(folder_contents(root_ / "run"), before);
}

TEST_F(TrainingRunTest, ACheckpointThatCannotBeTrustedIsRefused) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  fs::copy(root_ / "run", root_ / "nobuf", fs::copy_options::recursive);
  auto j = nlohmann::json::parse(slurp(root_ / "nobuf/last/config.json"));
  j.erase("buffer");
  test::spit(root_ / "nobuf/last/config.json", j.dump());
  c.output_dir = (root_ / "nobuf").string();
  c.train.max_steps = 3;
  test::expect_user_error([&] { run(c, (root_ / "nobuf/last").string()); },
                          {"config.json lacks \"buffer.capacity\"", "cannot check"});
  // A train_state whose learning rate is not a learning rate.
  fs::copy(root_ / "run", root_ / "badlr", fs::copy_options::recursive);
  SafeTensors st = SafeTensors::load((root_ / "badlr/last/train_state.safetensors").string());
  const double nan = NAN;
  st.put_f64("lr", {1}, &nan);
  st.save((root_ / "badlr/last/train_state.safetensors").string());
  c.output_dir = (root_ / "badlr").string();
  test::expect_user_error([&] { run(c, (root_ / "badlr/last").string()); }, {"'lr' is nan", "learning rate > 0"});
  // A drift history that no run writes: longer than the epochs trained, or not a regulariser's mean.
  const std::pair<std::vector<double>, std::vector<std::string>> histories[] = {
      {{0.1}, {"'divergence.epoch_reg' holds 1 epochs' regulariser, but the state is after 0 epochs"}},
      {{NAN}, {"'divergence.epoch_reg' holds nan, expected finite values >= 0"}}};
  for (const auto& [history, expected] : histories) {
    fs::remove_all(root_ / "badreg");
    fs::copy(root_ / "run", root_ / "badreg", fs::copy_options::recursive);
    SafeTensors bad = SafeTensors::load((root_ / "badreg/last/train_state.safetensors").string());
    bad.put_f64("divergence.epoch_reg", {int64_t(history.size())}, history.data());
    if (std::isnan(history[0])) {  // a state after one epoch, so that the length passes
      const int64_t counters[4] = {3, 1, 0, 0};
      bad.put_i64("counters", {4}, counters);
    }
    bad.save((root_ / "badreg/last/train_state.safetensors").string());
    c.output_dir = (root_ / "badreg").string();
    test::expect_user_error([&] { run(c, (root_ / "badreg/last").string()); }, expected);
  }
}

TEST_F(TrainingRunTest, AnEmptyResumePathIsAnErrorNotAFreshStart) {
  Config c = config("run");
  c.train.max_steps = 1;
  test::expect_user_error([&] { run_with_resume(c, ""); }, {"--resume", "empty"});
  EXPECT_FALSE(fs::exists(root_ / "run"));
}

// --- disk and reporting ---

TEST_F(TrainingRunTest, KeepCheckpointsKeepsTheNewestEpochsAndLast) {
  Config c = config("run");
  c.data.batch_size = 40;  // one step per epoch
  c.train.epochs = 5;
  c.train.keep_checkpoints = 2;
  const Captured r = run_captured(c);
  ASSERT_EQ(r.code, 0) << r.out;
  for (int e = 1; e <= 5; ++e) EXPECT_EQ(fs::exists(root_ / "run" / ("epoch_" + std::to_string(e))), e >= 4) << e;
  EXPECT_TRUE(fs::exists(root_ / "run/last"));
  EXPECT_NE(r.out.find("run folder " + (root_ / "run").string() + ": "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(last/ and 2 epoch checkpoints; train.keep_checkpoints = 2)"), std::string::npos) << r.out;
  c.output_dir = (root_ / "all").string();
  c.train.keep_checkpoints = 0;
  ASSERT_EQ(run(c), 0);
  for (int e = 1; e <= 5; ++e) EXPECT_TRUE(fs::exists(root_ / "all" / ("epoch_" + std::to_string(e)))) << e;
}

TEST_F(TrainingRunTest, HalfWrittenCheckpointsOfAKilledRunAreRemoved) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  // What a run killed inside save_checkpoint leaves: a staging folder named after a pid that no longer
  // runs, and the fallback swap's .old folder. A staging folder of a live process is not touched.
  const pid_t gone = 2147483646;  // above any pid_max
  for (const std::string& d : std::vector<std::string>{"last.tmp." + std::to_string(gone),
                                                        "epoch_3.tmp." + std::to_string(gone), "last.old",
                                                        "last.tmp.1", "notes.tmp.5"})
    fs::create_directories(root_ / "run" / d / "x");
  c.train.max_steps = 2;
  const Captured r = run_captured(c, (root_ / "run/last").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(fs::exists(root_ / "run" / ("last.tmp." + std::to_string(gone))));
  EXPECT_FALSE(fs::exists(root_ / "run" / ("epoch_3.tmp." + std::to_string(gone))));
  EXPECT_FALSE(fs::exists(root_ / "run/last.old"));
  EXPECT_TRUE(fs::exists(root_ / "run/last.tmp.1")) << "pid 1 runs: its writer may still be at work";
  EXPECT_TRUE(fs::exists(root_ / "run/notes.tmp.5")) << "not a checkpoint's staging folder";
  EXPECT_NE(r.out.find("(a half-written checkpoint a killed run left)"), std::string::npos) << r.out;
}

TEST_F(TrainingRunTest, MsPerStepLeavesOutValidationAndPictures) {
  // Training steps of next to nothing (one Langevin step on a tiny net) between epoch ends that take a
  // long time (a 64-image sample grid of 3000 Langevin steps): ms/step is the steps' time alone.
  if (!png_available()) GTEST_SKIP() << "built without libpng: no sample grids, so no slow epoch ends to leave out";
  Config c = config("run");
  c.data.batch_size = 40;
  c.sampler.steps = 1;
  c.train.epochs = 2;
  c.generate.n = test::kSanitized ? 16 : 64;  // under ASan a quarter of the pictures (50 s there) keep the ratio
  c.generate.steps = 3000;
  const auto t0 = std::chrono::steady_clock::now();
  const Captured r = run_captured(c);
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.code, 0) << r.out;
  std::istringstream log(slurp(root_ / "run/metrics.jsonl"));
  double last_ms = -1, epoch_s = 0;
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "step") last_ms = j["ms_per_step"].get<double>();
    if (j["event"] == "epoch") epoch_s += j["seconds"].get<double>();
  }
  ASSERT_GT(last_ms, 0);
  EXPECT_LT(last_ms, 0.1 * wall_ms / 2) << "step 2's ms/step includes epoch 1's pictures; wall " << wall_ms << " ms";
  EXPECT_LT(epoch_s * 1000, 0.1 * wall_ms) << "epoch seconds include the pictures";
}

TEST_F(TrainingRunTest, AStopOnAnEpochBoundaryShowsThatEpochsNumbers) {
  Config c = config("run");
  c.train.max_steps = 3;  // the end of epoch 1 (16, 16, 8)
  const Captured r = run_captured(c);
  ASSERT_EQ(r.code, 0);
  const size_t at = r.out.rfind("step 3/3");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string line = r.out.substr(at, r.out.find('\n', at) - at);
  EXPECT_NE(line.find("epoch 1/3"), std::string::npos) << line;
  EXPECT_EQ(line.find("loss 0.0000 reg 0.0000 cdiv 0.0000 real 0.0000 fake 0.0000"), std::string::npos) << line;
}

TEST_F(TrainingRunTest, AConfigTheMachineCannotHoldIsRefusedBeforeAllocating) {
  Config c = config("run");
  c.buffer.capacity = 2147483647;
  test::expect_user_error([&] { run(c); }, {"buffer.capacity", "replay buffer", "available", "lower buffer.capacity"});
  EXPECT_FALSE(fs::exists(root_ / "run")) << "refused before writing";
  c = config("run");
  c.model.channels = {4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096};
  test::expect_user_error([&] { run(c); }, {"model.channels", "parameters", "lower model.channels"});
}

TEST_F(TrainingRunTest, MissingDataNamesTheFetchCommand) {
  Config c = config("run");
  c.data.dir = (root_ / "nowhere").string();
  try {
    run(c);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("scripts/get_data.sh"), std::string::npos) << e.what();
  }
}

TEST_F(TrainingRunTest, ExistingRunIsNotOverwrittenWithoutResume) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  try {
    run(c);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
}

TEST_F(TrainingRunTest, ResumeWithAnotherNetworkNamesTheKeyAndBothValues) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  c.model.channels = {4, 16};
  c.train.max_steps = 2;
  try {
    run(c, (root_ / "run/last").string());
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.channels is [4,8] in the checkpoint but [4,16] now"), std::string::npos) << m;
  }
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
}

TEST_F(TrainingRunTest, CorruptOrMissingCheckpointFailsClearly) {
  Config c = config("run");
  c.train.max_steps = 1;
  ASSERT_EQ(run(c), 0);
  fs::resize_file(root_ / "run/last/train_state.safetensors", 100);
  const std::string before = slurp(root_ / "run/last/model.safetensors");
  c.train.max_steps = 2;
  EXPECT_THROW(run(c, (root_ / "run/last").string()), UserError);
  EXPECT_EQ(slurp(root_ / "run/last/model.safetensors"), before);
  try {
    run(c, (root_ / "no_such_checkpoint").string());
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_checkpoint"), std::string::npos);
  }
}

TEST_F(TrainingRunTest, UnwritableOutputDirFailsClearly) {
  std::ofstream(root_ / "a_file") << "x";
  Config c = config("a_file/run");  // a directory below a regular file cannot be created
  try {
    run(c);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("output_dir"), std::string::npos) << e.what();
  }
}

// model.outputs = K > 1 is a classifier's head (ebm_eval trains it through param_grad + adam_step): ebm_train
// refuses it in one line before it reads data or creates the run folder.
TEST_F(TrainingRunTest, AClassifierHeadWithoutTheJemObjectiveIsRefusedBeforeAnyWork) {
  Config c = config("classifier");
  c.model.outputs = 10;
  test::expect_user_error([&] { run(c); }, {"train.objective \"cd\"", "model.outputs is 10", "\"jem\""});
  EXPECT_FALSE(fs::exists(root_ / "classifier"));
}

// Checkpoints written before model.outputs existed lack the key: they have one output, and resume.
TEST_F(TrainingRunTest, ACheckpointOlderThanModelOutputsResumes) {
  Config c = config("run");
  c.train.max_steps = 2;
  ASSERT_EQ(run(c), 0);
  auto j = nlohmann::json::parse(slurp(root_ / "run/last/config.json"));
  ASSERT_TRUE(j["model"].contains("outputs"));
  j["model"].erase("outputs");
  test::spit(root_ / "run/last/config.json", j.dump());
  c.train.max_steps = 3;
  const Captured r = run_captured(c, (root_ / "run/last").string());
  EXPECT_EQ(r.code, kRunOk) << r.out << r.err;
  EXPECT_EQ(load_train_state((root_ / "run/last").string(), net_spec_for(c)).step, 3);
}

// --- the slow drift (train.divergence.drift_factor; host/train/divergence_guard.hpp) ---

// The epoch records' regulariser means in metrics.jsonl, epoch 1 first (one record per epoch after rollbacks).
std::vector<double> epoch_regs(const fs::path& metrics) {
  std::vector<double> regs;
  std::istringstream log(slurp(metrics));
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "epoch") regs.push_back(j["reg"].get<double>());
  }
  return regs;
}

TEST_F(TrainingRunTest, ASlowDriftRollsBackLookbackEpochEndsAndTrainsOn) {
  // lr 0.01 on the tiny net: the regulariser's epoch means swing (0.044, 0.029, 0.094, then 0.256 at epoch 4,
  // 5.79x the median of epochs 1-3), far below any |f| bound. drift_factor 3.3 calls epoch 4 a drift; the run
  // goes back drift_lookback = 2 epoch ends, to the end of epoch 2 (step 6: 3 steps per epoch), at half the
  // rate: epoch 4 again is 3.69x; at a quarter 2.99x, and the run trains on to the end.
  Config c = guarded("run", 0.01, 1e30, "rollback");
  c.train.epochs = 6;
  c.train.keep_checkpoints = 0;
  c.train.divergence.drift_factor = 3.3;
  c.train.divergence.drift_window = 3;
  c.train.divergence.drift_lookback = 2;
  c.train.divergence.max_rollbacks = 10;
  // last/ held step 9's drifting weights; at the rollback it holds the state gone back to, so a run killed
  // now resumes from there (the on_record hook reads it as the rollback record is written).
  std::vector<int64_t> last_at_rollback;
  TrainRunOptions o;
  o.config = c;
  o.on_record = [&](const nlohmann::json& rec) {
    if (rec["event"] == "rollback")
      last_at_rollback.push_back(load_train_state((root_ / "run/last").string(), net_spec_for(c)).step);
  };
  std::ostringstream out, err;
  o.out = &out, o.err = &err;
  const Captured r{run_training(o), out.str(), err.str()};
  EXPECT_EQ(last_at_rollback, (std::vector<int64_t>{6, 6}));
  EXPECT_EQ(r.code, kRunOk) << r.out << r.err;
  EXPECT_NE(r.err.find("ebm_train: drifted at step 12 (the end of epoch 4): the regulariser's epoch mean"),
            std::string::npos) << r.err;
  EXPECT_NE(r.out.find("rolled back to step 6 (rollback 1/10), lr 0.005, seed 1000045"), std::string::npos) << r.out;
  const std::string log = slurp(root_ / "run/metrics.jsonl");
  EXPECT_NE(log.find(R"({"event":"rollback","lr":0.005,"rollbacks":1,"seed":1000045,"step":6})"), std::string::npos)
      << log;
  EXPECT_NE(log.find(R"({"event":"rollback","lr":0.0025,"rollbacks":2,"seed":3000051,"step":6})"), std::string::npos)
      << log;
  EXPECT_EQ(test::count(log, "\"event\":\"rollback\""), 2u) << log;
  // Every epoch kept passed the guard, by drift_ratio over the normal epochs before it (those at most √3.3 =
  // 1.82x their level): the guard and its own measure agree on the run's record. The last checkpoint carries
  // the normal epochs' means.
  std::ostringstream ratios;
  const std::vector<double> regs = epoch_regs(root_ / "run/metrics.jsonl");
  ASSERT_EQ(regs.size(), 6u);
  std::vector<double> normal;
  for (size_t e = 0; e < regs.size(); ++e) {
    const double ratio = drift_ratio(normal, regs[e], 3);
    EXPECT_LE(ratio, 3.3) << "epoch " << e + 1;
    ratios << " " << ratio;
    if (drift_level(normal, 3) <= 0 || ratio <= std::sqrt(3.3)) normal.push_back(regs[e]);
  }
  EXPECT_EQ(normal, (std::vector<double>{regs[0], regs[1], regs[2]}))
      << "epochs 4 to 6 (2.99x the level and on) are not normal; ratios" << ratios.str();
  const TrainState s = load_train_state((root_ / "run/last").string(), net_spec_for(c));
  EXPECT_EQ(s.epoch_reg, normal);
  EXPECT_EQ(s.rollbacks, 2);
  EXPECT_DOUBLE_EQ(s.lr, 0.0025);
}

TEST_F(TrainingRunTest, ADriftUnderActionStopNamesTheCheckpointFromBeforeIt) {
  Config c = guarded("run", 0.01, 1e30, "stop");
  c.train.epochs = 6;
  c.train.divergence.drift_factor = 2;
  c.train.divergence.drift_window = 3;
  c.train.divergence.drift_lookback = 2;
  const Captured r = run_captured(c);
  EXPECT_EQ(r.code, kRunDiverged);
  EXPECT_NE(r.err.find("drifted at step 12 (the end of epoch 4)"), std::string::npos) << r.err;
  const std::string before = (root_ / "run/epoch_2").string();
  EXPECT_NE(r.err.find("the newest checkpoint from before the drift is " + before + " (step 6): resume it with a lower "
                       "learning rate, e.g. --resume " + before + " --set train.lr=0.005"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(fs::exists(root_ / "run/epoch_3")) << "epoch 3 passed the guard: its checkpoint stays";
  EXPECT_FALSE(fs::exists(root_ / "run/epoch_4"));
  // A resume of last/ (epoch 3) trips at the same epoch and names the same checkpoint, which is on disk though
  // older than the resumed state.
  const Captured again = run_captured(c, (root_ / "run/last").string());
  EXPECT_EQ(again.code, kRunDiverged);
  EXPECT_NE(again.err.find("drifted at step 12 (the end of epoch 4)"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("the newest checkpoint from before the drift is " + before + " (step 6)"), std::string::npos)
      << again.err;
  // With fewer checkpoints kept than drift_lookback, the one named is within the lookback, and says so.
  Config few = c;
  few.output_dir = (root_ / "few").string();
  few.train.keep_checkpoints = 1;
  const Captured pruned = run_captured(few);
  EXPECT_EQ(pruned.code, kRunDiverged);
  EXPECT_NE(pruned.err.find("the earliest checkpoint kept from before the drift (within train.divergence.drift_lookback "
                            "epochs of it: train.keep_checkpoints pruned older ones) is " + (root_ / "few/epoch_3").string() +
                            " (step 9)"),
            std::string::npos)
      << pruned.err;
  // The run's weights now are the ones the guard refused: a save of them is refused too.
  TrainRunOptions o;
  o.config = c;
  o.config.output_dir = (root_ / "saved").string();
  std::ostringstream out, err;
  o.out = &out, o.err = &err;
  Training t(o);
  std::optional<int> end;
  while (!(end = t.advance())) {}
  EXPECT_EQ(*end, kRunDiverged);
  test::expect_user_error([&] { t.save((root_ / "snap").string()); },
                          {"save: the run stopped diverged (drifted at step 12", "nothing written"});
  EXPECT_FALSE(fs::exists(root_ / "snap/train_state.safetensors"));
}

TEST_F(TrainingRunTest, ResumeIsBitExactWithTheDriftGuardsHistory) {
  auto drift = [&](const std::string& out) {
    Config c = config(out);
    c.train.epochs = 4;
    c.train.divergence.drift_factor = 1000;  // on, never tripped: the history is what is checked
    c.train.divergence.drift_window = 3;
    return c;
  };
  ASSERT_EQ(run(drift("straight")), 0);
  Config part = drift("parts");
  part.train.max_steps = 7;  // into epoch 3
  ASSERT_EQ(run(part), 0);
  EXPECT_EQ(load_train_state((root_ / "parts/last").string(), net_spec_for(part)).epoch_reg.size(), 2u);
  part.train.max_steps = 0;
  ASSERT_EQ(run(part, (root_ / "parts/last").string()), 0);
  EXPECT_EQ(slurp(root_ / "straight/last/train_state.safetensors"), slurp(root_ / "parts/last/train_state.safetensors"));
  const TrainState s = load_train_state((root_ / "straight/last").string(), net_spec_for(part));
  EXPECT_EQ(s.epoch_reg, epoch_regs(root_ / "straight/metrics.jsonl"));
  EXPECT_EQ(s.epoch_reg.size(), 4u);
  // The epoch records show the ratio once there is a level (3 epochs): epoch 4's, and none before.
  std::istringstream log(slurp(root_ / "straight/metrics.jsonl"));
  std::vector<int> with_ratio;
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] != "epoch" || !j.contains("drift_ratio")) continue;
    with_ratio.push_back(j["epoch"].get<int>());
    EXPECT_DOUBLE_EQ(j["drift_ratio"].get<double>(), drift_ratio({s.epoch_reg.begin(), s.epoch_reg.begin() + 3}, s.epoch_reg[3], 3));
  }
  EXPECT_EQ(with_ratio, std::vector<int>{4});
  // Off, the state holds no history (checkpoints as before the guard had one).
  // A resume that changes what the level measured (train.alpha scales the regulariser) starts it afresh.
  Config alpha = drift("straight");
  alpha.train.alpha = 0.2;
  alpha.train.epochs = 5;
  const Captured r = run_captured(alpha, (root_ / "straight/last").string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("note: the divergence guard's drift level starts afresh (train.alpha, drift_factor or "
                       "drift_window changed)"), std::string::npos) << r.out;
  EXPECT_EQ(load_train_state((root_ / "straight/last").string(), net_spec_for(alpha)).epoch_reg.size(), 1u);
  Config off = config("off");
  off.train.max_steps = 4;
  ASSERT_EQ(run(off), 0);
  EXPECT_FALSE(SafeTensors::load((root_ / "off/last/train_state.safetensors").string()).has("divergence.epoch_reg"));
}
