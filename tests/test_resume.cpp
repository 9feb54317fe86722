// A resume alone (host/train/resume.hpp): which settings may change and which are refused (naming the key and
// both values), the state the changes live in, and what the run says about it — from a checkpoint written here.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/error.hpp"
#include "host/train/resume.hpp"
#include "tests/test_support.hpp"

namespace ebm {
namespace {

Config small() {
  Config c;
  c.model.channels = {4, 8};
  c.buffer.capacity = 16;
  c.buffer.initial = 4;
  return c;
}

// A checkpoint of a run at step 30 whose rollbacks left lr 2.5e-05 and seed 3000051 (config: 1e-4, 42).
std::string write_checkpoint(const test::TempDir& tmp, const Config& c) {
  CpuBackend be(engine_options_for(c));
  TrainState s = test::state_of(be, c);
  s.step = 30;
  s.lr = 2.5e-5;
  s.seed = 3000051;
  s.rollbacks = 2;
  const std::string dir = tmp / "ck";
  save_checkpoint(dir, net_spec_for(c), s, c);
  return dir;
}

// A damaged train_state.safetensors (counters no run reaches, a negative second moment, NaN in the buffer or the
// weights) is refused when it is read, naming the file, the tensor and the element, and not trained on until the
// guard blames the learning rate.
TEST(Resume, ADamagedTrainStateIsRefusedNamingWhat) {
  test::TempDir tmp("ebm_resume_damaged");
  const Config c = small();
  const NetSpec net = net_spec_for(c);
  CpuBackend be(engine_options_for(c));
  const TrainState good = test::state_of(be, c);
  const auto refused = [&](const char* name, const std::function<void(TrainState&)>& damage,
                           std::vector<std::string> parts) {
    TrainState s = good;
    s.step = 30, s.epoch = 2, s.batch = 1, s.adam.t = 30;
    damage(s);
    const std::string dir = tmp / name;
    save_checkpoint(dir, net, s, c);
    test::expect_user_error([&] { load_train_state(dir, net); }, parts);
  };
  refused("huge", [](TrainState& s) { s.step = s.epoch = s.batch = s.adam.t = int64_t{1} << 62; },
          {"train_state.safetensors: impossible counters (step 4611686018427387904", "resume an earlier checkpoint"});
  refused("epochs", [](TrainState& s) { s.epoch = 31; }, {"impossible counters (step 30, epoch 31"});
  refused("adam_v", [](TrainState& s) { s.adam.v[3] = -1.0f; },
          {"train_state.safetensors: element 3 of 'adam.v' is -1, expected finite values >= 0"});
  refused("adam_m", [](TrainState& s) { s.adam.m[5] = INFINITY; }, {"element 5 of 'adam.m' is inf"});
  refused("buffer", [](TrainState& s) { s.buffer.data[7] = NAN; }, {"element 7 of 'buffer' is nan"});
  refused("weights", [](TrainState& s) { s.params[0] = NAN; },
          {"model.safetensors: element 0 of 'convs.0.weight' is nan", "cannot be trained on"});
  refused("weights_later", [&](TrainState& s) { s.params[size_t(net.tensors()[1].offset) + 2] = INFINITY; },
          {"element 2 of '" + net.tensors()[1].name + "' is inf"});
  TrainState s = good;  // and the same state undamaged loads
  s.step = 30, s.epoch = 2, s.batch = 1, s.adam.t = 30;
  save_checkpoint(tmp / "good", net, s, c);
  EXPECT_EQ(load_train_state(tmp / "good", net).step, 30);
}

TEST(Resume, SettingsThatMayChangeAndThoseRefused) {
  const Config was = small();
  Config now = was;
  now.train.lr = 5e-5;
  now.sampler.steps = 40;
  const std::vector<SettingChange> ch = resume_changes(was, now, "ck");
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[0].key, "sampler.steps");  // key order
  EXPECT_EQ(ch[1].key, "train.lr");
  EXPECT_EQ(ch[1].from, 1e-4);
  now.model.channels = {8, 8};
  try {
    resume_changes(was, now, "ck");
    FAIL() << "a new network was accepted";
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()), "--resume ck: model.channels is [4,8] in the checkpoint but [8,8] now; a resumed run "
                                     "keeps its network (model.*, data.pad_to) — start a new run (another output_dir) to change it");
  }
  now = was;
  now.data.batch_size = 64;
  EXPECT_THROW(resume_changes(was, now, "ck"), UserError);
}

TEST(Resume, AnUnchangedRateIsKeptAChangedOneReplacesItAndBothAreSaid) {
  test::TempDir tmp("ebm_resume");
  const Config c = small();
  const std::string ck = write_checkpoint(tmp, c);
  Resume r = read_resume(ck, c, 1);
  EXPECT_EQ(r.state.step, 30);
  EXPECT_DOUBLE_EQ(r.state.lr, 2.5e-5) << "rollbacks' rate is kept when train.lr is unchanged";
  EXPECT_EQ(r.state.rollbacks, 0) << "a resumed run counts its own rollbacks";
  EXPECT_FALSE(r.state.rng.empty());
  EXPECT_EQ(r.note, "note: this run keeps its learning rate 2.5e-05 (train.lr 0.0001 lowered by rollbacks); keeps its seed "
                    "3000051 (seed 42 changed by rollbacks)");
  EXPECT_EQ(resume_line(r, 30), "");

  Config now = c;
  now.train.lr = 1e-3;
  now.seed = 7;
  r = read_resume(ck, now, 1);
  EXPECT_DOUBLE_EQ(r.state.lr, 1e-3);
  EXPECT_EQ(r.state.seed, 7u);
  EXPECT_TRUE(r.state.rng.empty()) << "a new seed: fresh streams";
  EXPECT_EQ(resume_line(r, 30), "resume: settings changed from the checkpoint's, applied from step 31: seed 42 -> 7, "
                                "train.lr 0.0001 -> 0.001");
  const nlohmann::json rec = resume_record(r, 30);
  EXPECT_EQ(rec["event"], "resume");
  EXPECT_EQ(rec["checkpoint"], ck);
  EXPECT_EQ(rec["changed"]["seed"], nlohmann::json({42, 7}));
}

TEST(Resume, EmaTurnedOnStartsFromTheParametersAndSpectralNormCannotAppear) {
  test::TempDir tmp("ebm_resume");
  const Config c = small();
  const std::string ck = write_checkpoint(tmp, c);
  Config now = c;
  now.train.ema_decay = 0.9;
  const Resume r = read_resume(ck, now, 1);
  EXPECT_NE(r.note.find("note: train.ema_decay is on and " + ck + " holds no EMA weights: the EMA starts from its "
                        "parameters at step 30"),
            std::string::npos) << r.note;
  now = c;
  now.model.spectral_norm = true;
  EXPECT_THROW(read_resume(ck, now, 1), UserError);
}

}  // namespace
}  // namespace ebm
