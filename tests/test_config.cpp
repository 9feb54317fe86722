// Config: defaults = DESIGN §5, the shipped configs load, every type and range rule rejects with the
// full key path, --set overrides, file errors, and the JSON round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "host/io/config.hpp"

#include "tests/test_support.hpp"

using namespace ebm;
using json = nlohmann::json;

namespace {

// The UserError message `f` throws, or "(no error)".
std::string user_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_CONTAINS(haystack, needle)                                               \
  do {                                                                                  \
    const std::string h_ = (haystack);                                                  \
    EXPECT_NE(h_.find(needle), std::string::npos) << "message: " << h_ << "\nwanted: " << (needle); \
  } while (0)

std::string config_path(const std::string& name) { return std::string(EBM_SOURCE_DIR) + "/configs/" + name; }

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "ebm_test_config_" + name;
  std::ofstream(path) << text;
  return path;
}

// Dotted paths of every leaf, in schema order.
void leaf_paths(const json& j, const std::string& prefix, std::vector<std::string>& out) {
  for (const auto& [k, v] : j.items()) {
    const std::string p = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object()) leaf_paths(v, p, out);
    else out.push_back(p);
  }
}

}  // namespace

TEST(ConfigDefaults, MatchDesignSection5) {
  const Config c;
  EXPECT_EQ(c.backend, "auto");
  EXPECT_EQ(c.seed, 42u);
  EXPECT_EQ(c.output_dir, "runs/mnist");
  EXPECT_EQ(c.data.dataset, "mnist");
  EXPECT_EQ(c.data.dir, "data/mnist");
  EXPECT_EQ(c.data.pad_to, 32);
  EXPECT_EQ(c.data.batch_size, 128);
  EXPECT_EQ(c.data.limit, 0);
  EXPECT_EQ(c.model.channels, (std::vector<int>{16, 32, 64, 64}));
  EXPECT_EQ(c.model.kernel_size, 3);
  EXPECT_EQ(c.model.stride, 2);
  EXPECT_EQ(c.model.activation, "swish");
  EXPECT_EQ(c.model.outputs, 1);
  EXPECT_EQ(c.sampler.steps, 100);
  EXPECT_EQ(c.sampler.step_size, 10.0);
  EXPECT_EQ(c.sampler.noise, 0.005);
  EXPECT_EQ(c.sampler.grad_clip, 0.03);
  EXPECT_EQ(c.buffer.capacity, 8192);
  EXPECT_EQ(c.buffer.initial, 128);
  EXPECT_EQ(c.buffer.reinit_prob, 0.05);
  EXPECT_EQ(c.train.epochs, 10);
  EXPECT_EQ(c.train.lr, 1e-4);
  EXPECT_EQ(c.train.beta1, 0.9);
  EXPECT_EQ(c.train.beta2, 0.999);
  EXPECT_EQ(c.train.eps, 1e-7);
  EXPECT_EQ(c.train.alpha, 0.1);
  EXPECT_EQ(c.train.real_noise, 0.005);
  EXPECT_EQ(c.train.max_steps, 0);
  EXPECT_EQ(c.generate.n, 16);
  EXPECT_EQ(c.generate.steps, 500);
  EXPECT_EQ(c.generate.step_size, 20.0);
  EXPECT_EQ(c.generate.noise, 0.005);
  // Beyond §5: the engine's own knobs.
  EXPECT_EQ(c.train.log_every, 10);
  EXPECT_EQ(c.train.checkpoint_every, 0);
  EXPECT_TRUE(c.train.validate);
  EXPECT_TRUE(c.train.tensorboard);
  EXPECT_EQ(c.train.comm_timeout_s, 120.0);
  EXPECT_EQ(c.train.divergence.max_abs_f, 1e4);
  EXPECT_EQ(c.train.divergence.action, "stop");
  EXPECT_EQ(c.train.divergence.lr_factor, 0.5);
  EXPECT_EQ(c.train.divergence.max_rollbacks, 3);
  EXPECT_EQ(c.train.divergence.drift_factor, 0.0);  // the slow-drift guard: off
  EXPECT_EQ(c.train.divergence.drift_window, 10);
  EXPECT_EQ(c.train.divergence.drift_lookback, 4);
  EXPECT_EQ(c.train.ema_decay, 0.0);  // the training recipe: off
  EXPECT_FALSE(c.model.spectral_norm);
  EXPECT_FALSE(c.cuda.tf32);
  EXPECT_EQ(c.cuda.device, 0);
  EXPECT_EQ(c.cuda.langevin, "layers");  // fused: once GPU parity is shown
}

TEST(ConfigDefaults, EmptyUserConfigGivesDefaults) {
  EXPECT_EQ(config_from_json(json::object(), "x.json"), Config{});
  EXPECT_EQ(config_from_json(config_defaults_json(), "x.json"), Config{});
}

TEST(ConfigDefaults, SchemaListsEveryKeyWithItsType) {
  const json s = config_defaults_json();
  std::vector<std::string> paths;
  leaf_paths(s, "", paths);
  const std::vector<std::string> expected{
      "backend", "buffer.capacity", "buffer.initial", "buffer.per_class", "buffer.reinit_prob", "cuda.chain", "cuda.deterministic", "cuda.device", "cuda.graphs", "cuda.langevin", "cuda.precision", "cuda.tf32",
      "data.batch_size", "data.dataset", "data.dir", "data.limit", "data.pad_to", "data.shift", "generate.n",
      "generate.noise", "generate.step_size", "generate.steps", "model.activation", "model.channels",
      "model.kernel_size", "model.outputs", "model.spectral_norm", "model.stride", "output_dir", "sampler.grad_clip",
      "sampler.noise",
      "sampler.step_size", "sampler.steps", "seed", "train.alpha", "train.beta1", "train.beta2",
      "train.cd_weight", "train.ce_weight", "train.checkpoint_every", "train.comm_timeout_s", "train.divergence.action",
      "train.divergence.drift_factor", "train.divergence.drift_lookback", "train.divergence.drift_window", "train.divergence.lr_factor",
      "train.divergence.max_abs_f", "train.divergence.max_rollbacks", "train.ema_decay", "train.epochs", "train.eps",
      "train.eval.every", "train.eval.n", "train.eval.ood", "train.keep_checkpoints", "train.log_every", "train.lr", "train.lr_gamma",
      "train.lr_min_factor", "train.lr_schedule", "train.lr_step_epochs", "train.lr_warmup_steps", "train.max_steps",
      "train.objective", "train.real_noise", "train.tensorboard",
      "train.validate"};
  EXPECT_EQ(paths, expected);
  EXPECT_TRUE(s["seed"].is_number_unsigned());
  EXPECT_TRUE(s["data"]["limit"].is_number_integer());
  EXPECT_TRUE(s["sampler"]["step_size"].is_number_float());  // 10.0 stays a float: it is the type
  EXPECT_TRUE(s["train"]["validate"].is_boolean());
  EXPECT_TRUE(s["train"]["tensorboard"].is_boolean());
  EXPECT_TRUE(s["train"]["ema_decay"].is_number_float());  // 0.0: ema_decay=0.99 is accepted
  EXPECT_TRUE(s["model"]["spectral_norm"].is_boolean());
  EXPECT_TRUE(s["model"]["channels"].is_array());
  EXPECT_TRUE(s["backend"].is_string());
}

TEST(ConfigFiles, MnistIsTheSeedRun) {
  EXPECT_EQ(load_config(config_path("mnist.json"), {}), Config{});
}

TEST(ConfigFiles, MnistQuickIsTheSameNetSmaller) {
  const Config c = load_config(config_path("mnist-quick.json"), {});
  Config want;
  want.output_dir = "runs/mnist-quick";  // ~3 min on 2 cores: 40 Langevin steps, 3x the seed's lr
  want.train.epochs = 10;
  want.train.lr = 3e-4;
  want.train.log_every = 20;
  want.sampler.steps = 40;
  want.buffer.capacity = 4096;
  EXPECT_EQ(c, want);
}

TEST(ConfigFiles, FashionMnistChangesOnlyTheData) {
  const Config c = load_config(config_path("fashion-mnist.json"), {});
  Config want;
  want.output_dir = "runs/fashion-mnist";
  want.data.dataset = "fashion-mnist";
  want.data.dir = "data/fashion-mnist";
  EXPECT_EQ(c, want);
}

TEST(ConfigTypes, FloatKeysAcceptIntegers) {
  const Config c = config_from_json(json::parse(R"({"train": {"lr": 1, "beta1": 0}})"), "x.json");
  EXPECT_EQ(c.train.lr, 1.0);
  EXPECT_EQ(c.train.beta1, 0.0);
}

TEST(ConfigTypes, WrongTypesAreRejectedWithKeyPathAndValue) {
  struct Case {
    const char* user;
    const char* want;
  };
  const Case cases[] = {
      {R"({"sampler": {"steps": "abc"}})", R"(x.json: "sampler.steps" must be an integer, got "abc")"},
      {R"({"sampler": {"steps": 1.5}})", R"("sampler.steps" must be an integer, got 1.5)"},
      {R"({"sampler": {"steps": 2.0}})", R"("sampler.steps" must be an integer, got 2.0)"},
      {R"({"sampler": {"steps": 99999999999999999999}})",
       R"("sampler.steps" must be an integer that fits in 64 bits, got 1e+20)"},
      {R"({"seed": 1e19})", R"("seed" must be an integer, got 1e+19)"},  // below 2^64: a float, not too large
      {R"({"seed": 99999999999999999999})", R"("seed" must be an integer below 2^64, got 1e+20)"},
      {R"({"seed": null})", R"("seed" must be an integer, got null)"},
      {R"({"data": {"limit": true}})", R"("data.limit" must be an integer, got true)"},
      {R"({"train": {"lr": "fast"}})", R"("train.lr" must be a number, got "fast")"},
      {R"({"train": {"lr": true}})", R"("train.lr" must be a number, got true)"},
      {R"({"train": {"divergence": {"max_abs_f": [1]}}})", R"("train.divergence.max_abs_f" must be a number)"},
      {R"({"train": {"validate": 1}})", R"("train.validate" must be true or false, got 1)"},
      {R"({"train": {"tensorboard": "yes"}})", R"("train.tensorboard" must be true or false, got "yes")"},
      {R"({"cuda": {"tf32": "true"}})", R"("cuda.tf32" must be true or false, got "true")"},
      {R"({"model": {"spectral_norm": 1}})", R"("model.spectral_norm" must be true or false, got 1)"},
      {R"({"train": {"ema_decay": "0.99"}})", R"("train.ema_decay" must be a number, got "0.99")"},
      {R"({"backend": 3})", R"("backend" must be a string, got 3)"},
      {R"({"data": {"dir": ["a"]}})", R"("data.dir" must be a string, got ["a"])"},
      {R"({"model": {"channels": 16}})", R"("model.channels" must be an array, got 16)"},
      {R"({"model": {"channels": [16, "a"]}})", R"("model.channels[1]" must be an integer, got "a")"},
      {R"({"model": {"channels": [16, 1.5]}})", R"("model.channels[1]" must be an integer, got 1.5)"},
      {R"({"model": {"outputs": 2.5}})", R"("model.outputs" must be an integer, got 2.5)"},
      {R"({"model": {"outputs": "10"}})", R"("model.outputs" must be an integer, got "10")"},
      {R"({"data": 5})", R"("data" must be an object, got 5)"},
      {R"({"train": {"divergence": "stop"}})", R"("train.divergence" must be an object, got "stop")"},
      {R"([1, 2])", R"(x.json: the config must be a JSON object, got [1,2])"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.user);
    EXPECT_CONTAINS(user_error([&] { config_from_json(json::parse(c.user), "x.json"); }), c.want);
  }
}

TEST(ConfigTypes, NonFiniteNumbersAreRejected) {
  json j = config_defaults_json();
  j["train"]["lr"] = std::nan("");
  EXPECT_CONTAINS(user_error([&] { config_from_json(j, "x.json"); }), R"("train.lr" must be a finite number, got nan)");
  j["train"]["lr"] = INFINITY;
  EXPECT_CONTAINS(user_error([&] { config_from_json(j, "x.json"); }), R"("train.lr" must be a finite number, got inf)");
}

TEST(ConfigKeys, UnknownKeysAreRejectedWithTheKnownOnes) {
  EXPECT_CONTAINS(user_error([] { config_from_json({{"bakend", "cpu"}}, "configs/x.json"); }),
                  R"(configs/x.json: unknown key "bakend" (known keys: backend, buffer, cuda, data, )");
  EXPECT_CONTAINS(user_error([] { config_from_json(json::parse(R"({"train": {"lrr": 1}})"), "configs/x.json"); }),
                  R"(configs/x.json: unknown key "train.lrr" (known keys in "train": alpha, beta1, beta2, )");
  EXPECT_CONTAINS(
      user_error([] { config_from_json(json::parse(R"({"train": {"divergence": {"act": "stop"}}})"), "x.json"); }),
      R"(unknown key "train.divergence.act" (known keys in "train.divergence": action, drift_factor, drift_lookback, )");
  EXPECT_CONTAINS(user_error([] { config_from_json(json::parse(R"({"model": {"depth": 3}})"), "x.json"); }),
                  R"(unknown key "model.depth")");
}

TEST(ConfigRanges, EveryRuleRejectsWithKeyPathAndExpectation) {
  struct Case {
    const char* set;
    const char* want;
  };
  const Case cases[] = {
      {"backend=gpu", R"("backend" must be one of auto, cpu, cuda, got "gpu")"},
      {"cuda.langevin=fast", R"("cuda.langevin" must be one of layers, fused, got "fast")"},
      {"cuda.chain=fastest", R"("cuda.chain" must be one of auto, resident, tiled, generic, got "fastest")"},
      {"cuda.precision=fp16", R"("cuda.precision" must be one of fp32, tf32, got "fp16")"},
      {"seed=-1", R"("seed" must be >= 0, got -1)"},
      {"output_dir=", R"("output_dir" must not be empty)"},
      {"data.dataset=cifar10", R"("data.dataset" must be one of mnist, fashion-mnist, got "cifar10")"},
      {"data.dir=", R"("data.dir" must not be empty)"},
      {"data.pad_to=27", R"("data.pad_to" must be >= 28, got 27)"},
      {"data.pad_to=257", R"("data.pad_to" must be <= 256, got 257)"},
      {"data.batch_size=0", R"("data.batch_size" must be >= 1, got 0)"},
      {"data.batch_size=65537", R"("data.batch_size" must be <= 65536, got 65537)"},
      {"data.limit=-1", R"("data.limit" must be >= 0, got -1)"},
      {"data.limit=18446744073709551615", R"("data.limit" must be <= 9223372036854775807)"},
      {"model.channels=[]", R"("model.channels" must not be empty)"},
      {"model.channels=[1,2,3,4,5,6,7,8,9]", R"("model.channels" must have at most 8 layers, got 9)"},
      {"model.channels=[16,0]", R"("model.channels[1]" must be >= 1, got 0)"},
      {"model.channels=[4097]", R"("model.channels[0]" must be <= 4096, got 4097)"},
      {"model.kernel_size=4", R"("model.kernel_size" must be odd, got 4)"},
      {"model.kernel_size=0", R"("model.kernel_size" must be >= 1, got 0)"},
      {"model.kernel_size=17", R"("model.kernel_size" must be <= 15, got 17)"},
      {"model.stride=0", R"("model.stride" must be >= 1, got 0)"},
      {"model.stride=5", R"("model.stride" must be <= 4, got 5)"},
      {"model.activation=relu", R"("model.activation" must be one of swish, got "relu")"},
      {"model.outputs=0", R"("model.outputs" must be >= 1, got 0)"},
      {"model.outputs=-3", R"("model.outputs" must be >= 1, got -3)"},
      {"model.outputs=1001", R"("model.outputs" must be <= 1000, got 1001)"},
      {"sampler.steps=-1", R"("sampler.steps" must be >= 0, got -1)"},
      {"sampler.steps=3000000000", R"("sampler.steps" must be <= 2147483647, got 3000000000)"},
      {"sampler.step_size=-0.5", R"("sampler.step_size" must be >= 0, got -0.5)"},
      {"sampler.noise=-1", R"("sampler.noise" must be >= 0, got -1)"},
      {"sampler.grad_clip=0", R"("sampler.grad_clip" must be > 0, got 0)"},
      {"buffer.capacity=0", R"("buffer.capacity" must be >= 1, got 0)"},
      {"buffer.initial=0", R"("buffer.initial" must be >= 1, got 0)"},
      {"buffer.initial=8193", R"("buffer.initial" must be <= buffer.capacity (8192), got 8193)"},
      {"buffer.reinit_prob=-0.1", R"("buffer.reinit_prob" must be >= 0, got -0.1)"},
      {"buffer.reinit_prob=1.5", R"("buffer.reinit_prob" must be <= 1, got 1.5)"},
      {"buffer.per_class=true", R"("buffer.per_class" needs train.objective "jem" (a class for each chain), got "cd")"},
      {"train.epochs=0", R"("train.epochs" must be >= 1, got 0)"},
      {"train.lr=0", R"("train.lr" must be > 0, got 0)"},
      {"train.lr=-1e-4", R"("train.lr" must be > 0, got -0.0001)"},
      {"train.beta1=1", R"("train.beta1" must be < 1, got 1)"},
      {"train.beta1=-0.1", R"("train.beta1" must be >= 0, got -0.1)"},
      {"train.beta2=1.0", R"("train.beta2" must be < 1, got 1.0)"},
      {"train.eps=0", R"("train.eps" must be > 0, got 0)"},
      {"train.alpha=-1", R"("train.alpha" must be >= 0, got -1)"},
      {"train.real_noise=-0.01", R"("train.real_noise" must be >= 0, got -0.01)"},
      {"train.max_steps=-1", R"("train.max_steps" must be >= 0, got -1)"},
      {"train.log_every=0", R"("train.log_every" must be >= 1, got 0)"},
      {"train.checkpoint_every=-5", R"("train.checkpoint_every" must be >= 0, got -5)"},
      {"train.comm_timeout_s=0", R"("train.comm_timeout_s" must be > 0, got 0)"},
      {"train.divergence.max_abs_f=0", R"("train.divergence.max_abs_f" must be > 0, got 0)"},
      {"train.divergence.action=ignore", R"("train.divergence.action" must be one of stop, rollback, got "ignore")"},
      {"train.divergence.lr_factor=0", R"("train.divergence.lr_factor" must be > 0, got 0)"},
      {"train.divergence.lr_factor=1.5", R"("train.divergence.lr_factor" must be <= 1, got 1.5)"},
      {"train.divergence.max_rollbacks=-1", R"("train.divergence.max_rollbacks" must be >= 0, got -1)"},
      {"train.divergence.drift_factor=-1", R"("train.divergence.drift_factor" must be >= 0, got -1)"},
      {"train.divergence.drift_factor=1",
       R"("train.divergence.drift_factor" must be 0 (off) or > 1 (a ratio to the regulariser's running level), got 1)"},
      {"train.divergence.drift_factor=0.5",
       R"("train.divergence.drift_factor" must be 0 (off) or > 1 (a ratio to the regulariser's running level), got 0.5)"},
      {"train.divergence.drift_window=2", R"("train.divergence.drift_window" must be >= 3, got 2)"},
      {"train.divergence.drift_lookback=0", R"("train.divergence.drift_lookback" must be >= 1, got 0)"},
      {"train.divergence.drift_lookback=17", R"("train.divergence.drift_lookback" must be <= 16, got 17)"},
      {"train.ema_decay=-0.1", R"("train.ema_decay" must be >= 0, got -0.1)"},
      {"train.ema_decay=1", R"("train.ema_decay" must be < 1, got 1)"},
      {"train.ema_decay=1.5", R"("train.ema_decay" must be < 1, got 1.5)"},
      {"generate.n=0", R"("generate.n" must be >= 1, got 0)"},
      {"generate.n=4097", R"("generate.n" must be <= 4096, got 4097)"},
      {"generate.steps=-1", R"("generate.steps" must be >= 0, got -1)"},
      {"generate.step_size=-1", R"("generate.step_size" must be >= 0, got -1)"},
      {"generate.noise=-1", R"("generate.noise" must be >= 0, got -1)"},
      {"cuda.device=-1", R"("cuda.device" must be >= 0, got -1)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.set);
    json j = config_defaults_json();
    apply_override(j, c.set);  // the override itself is well typed; the range check is config_from_json's
    EXPECT_CONTAINS(user_error([&] { config_from_json(j, "r.json"); }), std::string("r.json: ") + c.want);
  }
}

TEST(ConfigRanges, APerClassBufferNeedsAFirstImageForEachClass) {
  json j = config_defaults_json();
  for (const char* set : {"train.objective=jem", "model.outputs=10", "buffer.per_class=true", "buffer.initial=9"})
    apply_override(j, set);
  EXPECT_CONTAINS(user_error([&] { config_from_json(j, "r.json"); }),
                  R"(r.json: "buffer.per_class" needs buffer.initial >= model.outputs (10: one first image per class's ring), got buffer.initial 9)");
  apply_override(j, "buffer.initial=10");
  EXPECT_TRUE(config_from_json(j, "r.json").buffer.per_class);
}

TEST(ConfigRanges, TheDriftGuardNeedsTheRegulariserItWatches) {
  json j = config_defaults_json();
  for (const char* set : {"train.divergence.drift_factor=2.5", "train.alpha=0"}) apply_override(j, set);
  EXPECT_CONTAINS(user_error([&] { config_from_json(j, "r.json"); }),
                  R"(r.json: "train.divergence.drift_factor" watches the regulariser, which train.alpha = 0 switches off; )"
                  R"(set train.alpha > 0 or train.divergence.drift_factor to 0)");
  apply_override(j, "train.divergence.drift_factor=0");
  EXPECT_EQ(user_error([&] { config_from_json(j, "r.json"); }), "(no error)") << "off: alpha 0 is fine";
}

TEST(ConfigRanges, BoundaryValuesAreAccepted) {
  json j = config_defaults_json();
  for (const char* set : {"data.pad_to=28", "data.batch_size=65536", "model.channels=[1,2,3,4,5,6,7,4096]",
                          "model.kernel_size=15", "model.stride=4", "model.outputs=1000", "sampler.steps=0", "sampler.step_size=0",
                          "buffer.initial=1", "buffer.capacity=1", "buffer.reinit_prob=1", "train.beta1=0",
                          "train.divergence.lr_factor=1", "train.divergence.action=rollback", "generate.n=4096",
                          "backend=cuda", "data.dataset=fashion-mnist", "seed=18446744073709551615",
                          "train.ema_decay=0", "train.ema_decay=0.9999", "model.spectral_norm=true",
                          "train.divergence.drift_factor=1.0001", "train.divergence.drift_window=3",
                          "train.divergence.drift_lookback=1"}) {
    SCOPED_TRACE(set);
    apply_override(j, set);
    EXPECT_EQ(user_error([&] { config_from_json(j, "r.json"); }), "(no error)");
  }
  EXPECT_EQ(config_from_json(j, "r.json").seed, UINT64_MAX);
}

TEST(ConfigOverride, EachTypeIsParsed) {
  json j = config_defaults_json();
  for (const char* set : {"sampler.steps=7", "train.lr=3e-4", "train.alpha=1", "train.validate=false",
                          "cuda.tf32=true", "backend=cpu", "output_dir=runs/x", "data.dir=\"quoted dir\"",
                          "model.channels=[8,16]", "train.divergence={\"action\": \"rollback\"}"})
    apply_override(j, set);
  const Config c = config_from_json(j, "x.json");
  EXPECT_EQ(c.sampler.steps, 7);
  EXPECT_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.train.alpha, 1.0);
  EXPECT_FALSE(c.train.validate);
  EXPECT_TRUE(c.cuda.tf32);
  EXPECT_EQ(c.backend, "cpu");
  EXPECT_EQ(c.output_dir, "runs/x");
  EXPECT_EQ(c.data.dir, "quoted dir");
  EXPECT_EQ(c.model.channels, (std::vector<int>{8, 16}));
  EXPECT_EQ(c.train.divergence.action, "rollback");
  EXPECT_EQ(c.train.divergence.max_rollbacks, 3);  // an object override merges, it does not replace
}

TEST(ConfigOverride, StringKeysKeepTextThatLooksLikeJson) {
  json j = config_defaults_json();
  apply_override(j, "output_dir=2024");
  apply_override(j, "data.dir=true");
  EXPECT_EQ(j["output_dir"], "2024");
  EXPECT_EQ(j["data"]["dir"], "true");
}

TEST(ConfigOverride, LaterOverridesWin) {
  json j = config_defaults_json();
  apply_override(j, "train.epochs=3");
  apply_override(j, "train.epochs=5");
  EXPECT_EQ(config_from_json(j, "x.json").train.epochs, 5);
}

TEST(ConfigOverride, WorksOnAPartialConfig) {
  json j = json::parse(R"({"train": {"epochs": 2}})");
  apply_override(j, "sampler.steps=5");
  apply_override(j, "train.lr=0.01");
  apply_override(j, "train.divergence.action=rollback");
  EXPECT_EQ(j, json::parse(R"({"train": {"epochs": 2, "lr": 0.01, "divergence": {"action": "rollback"}},
                               "sampler": {"steps": 5}})"));
  const Config c = config_from_json(j, "x.json");
  EXPECT_EQ(c.train.epochs, 2);
  EXPECT_EQ(c.train.lr, 0.01);
  EXPECT_EQ(c.sampler.steps, 5);
  EXPECT_EQ(c.sampler.noise, 0.005);

  json empty = json::object();
  apply_override(empty, "model.channels=[4]");
  EXPECT_EQ(config_from_json(empty, "x.json").model.channels, std::vector<int>{4});
}

TEST(ConfigOverride, UnknownKeysAreRejected) {
  json j = config_defaults_json();
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "train.lrr=1"); }),
                  R"(--set train.lrr=1: unknown key "train.lrr" (known keys in "train": alpha, )");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "bakend=cpu"); }),
                  R"(--set bakend=cpu: unknown key "bakend" (known keys: backend, )");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "train.divergence.x=1"); }),
                  R"(unknown key "train.divergence.x")");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "train.lr.x=1"); }), R"("train.lr" must be a number)");
  EXPECT_EQ(j, config_defaults_json());  // a rejected override leaves the config alone
}

TEST(ConfigOverride, WrongTypesAreRejected) {
  json j = config_defaults_json();
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "sampler.steps=abc"); }),
                  R"(--set sampler.steps=abc: "sampler.steps" must be an integer, got "abc")");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "sampler.steps=1.5"); }),
                  R"("sampler.steps" must be an integer, got 1.5)");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "train.lr=fast"); }), R"("train.lr" must be a number, got "fast")");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "train.validate=yes"); }),
                  R"("train.validate" must be true or false, got "yes")");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "model.channels=[8,x]"); }),
                  R"("model.channels" must be an array, got "[8,x]")");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "model.channels=[8,1.5]"); }),
                  R"("model.channels[1]" must be an integer, got 1.5)");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "train=5"); }), R"("train" must be an object, got 5)");
}

TEST(ConfigOverride, MalformedAssignmentsAreRejected) {
  json j = config_defaults_json();
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "train.lr"); }),
                  R"(--set "train.lr": expected dotted.key=value)");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "=3"); }), R"(--set "=3": the key before '=' is empty)");
  EXPECT_CONTAINS(user_error([&] { apply_override(j, "train..lr=1"); }), R"(empty part in key "train..lr")");
}

TEST(ConfigLoad, OverridesApplyToTheFile) {
  const Config c = load_config(config_path("mnist-quick.json"), {"train.epochs=1", "backend=cpu", "train.lr=1e-3"});
  EXPECT_EQ(c.train.epochs, 1);
  EXPECT_EQ(c.backend, "cpu");
  EXPECT_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.sampler.steps, 40);  // the file's values stay
}

TEST(ConfigLoad, RangeErrorsAfterOverridesSayTheyCameWithSet) {
  const std::string path = config_path("mnist.json");
  EXPECT_CONTAINS(user_error([&] { load_config(path, {"data.batch_size=0"}); }),
                  path + R"( (with --set overrides): "data.batch_size" must be >= 1, got 0)");
  EXPECT_CONTAINS(user_error([&] { load_config(path, {"train.lrr=1"}); }), R"(--set train.lrr=1: unknown key)");
}

TEST(ConfigLoad, MissingFileNamesThePath) {
  const std::string path = ::testing::TempDir() + "no_such_dir/no_such_config.json";
  const std::string msg = user_error([&] { load_config(path, {}); });
  EXPECT_CONTAINS(msg, path + ": cannot open a JSON config file");
}

TEST(ConfigLoad, MalformedJsonNamesFileLineAndColumn) {
  const std::string path = write_temp("malformed.json", "{\n  \"seed\": 1,\n  \"train\": {\"lr\": }\n}\n");
  const std::string msg = user_error([&] { load_config(path, {}); });
  EXPECT_CONTAINS(msg, path + ": invalid JSON: parse error at line 3, column");
  EXPECT_EQ(msg.find("[json.exception"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
}

TEST(ConfigLoad, FileErrorsNameTheFile) {
  const std::string path = write_temp("unknown_key.json", R"({"train": {"lrr": 1}})");
  EXPECT_CONTAINS(user_error([&] { load_config(path, {}); }), path + R"(: unknown key "train.lrr")");
  const std::string arr = write_temp("array.json", "[1]");
  EXPECT_CONTAINS(user_error([&] { load_config(arr, {}); }), arr + ": the config must be a JSON object");
  const std::string range = write_temp("range.json", R"({"model": {"stride": 9}})");
  EXPECT_CONTAINS(user_error([&] { load_config(range, {}); }), range + R"(: "model.stride" must be <= 4, got 9)");
}

TEST(ConfigRoundTrip, DefaultsAndAModifiedConfig) {
  EXPECT_EQ(config_from_json(config_to_json(Config{}), "rt"), Config{});
  EXPECT_EQ(config_to_json(config_from_json(json::object(), "rt")), config_defaults_json());

  Config c;
  c.backend = "cuda";
  c.seed = UINT64_MAX;
  c.output_dir = "runs/rt";
  c.data = {"fashion-mnist", "data/f", 64, 7, 12345};
  c.model = {{3, 5, 7}, 5, 1, "swish", 10};
  c.sampler = {17, 0.1 + 0.2, 1e-9, 2.5};
  c.buffer = {100, 100, 1.0};
  c.train.epochs = 2;
  c.train.lr = 3e-4;
  c.train.beta1 = 0.0;
  c.train.beta2 = 0.95;
  c.train.eps = 1e-12;
  c.train.alpha = 0.0;
  c.train.real_noise = 0.0;
  c.train.max_steps = 1LL << 40;
  c.train.log_every = 1;
  c.train.checkpoint_every = 250;
  c.train.validate = false;
  c.train.tensorboard = false;
  c.train.comm_timeout_s = 7.5;
  c.train.divergence = {123.5, "rollback", 0.25, 0};
  c.generate = {64, 0, 1.0 / 3.0, 0.0};
  c.cuda = {true, 3};
  c.cuda.langevin = "fused";
  EXPECT_EQ(config_from_json(config_to_json(c), "rt"), c);
  // Through text too (the run directory's config.json): doubles print to round-trip precision.
  EXPECT_EQ(config_from_json(json::parse(config_to_json(c).dump()), "rt"), c);
}

// Issue 10 item 4: a number beyond a double printed nlohmann's internal exception; a repeated key was
// silently the last one. Both are now one line naming the file and the key.
TEST(ConfigLoad, NumbersBeyondADoubleNameTheFileAndTheKey) {
  const std::string path = write_temp("lr_overflow.json", R"({"train":{"lr":1e999}})");
  EXPECT_EQ(user_error([&] { load_config(path, {}); }),
            path + R"(: "train.lr" must be a finite number, got 1e999 (beyond the range of a double))");
  const std::string neg = write_temp("neg_overflow.json", R"({"sampler": {"noise": -5e400}})");
  EXPECT_EQ(user_error([&] { load_config(neg, {}); }),
            neg + R"(: "sampler.noise" must be a finite number, got -5e400 (beyond the range of a double))");
  EXPECT_EQ(user_error([] { config_from_text(R"({"model": {"channels": [16, 1e999]}})", "c.json"); }),
            R"(c.json: "model.channels[1]" must be a finite number, got 1e999 (beyond the range of a double))");
  EXPECT_EQ(user_error([] { config_from_text("1e999", "c.json"); }),
            "c.json: invalid JSON: number 1e999 is beyond the range of a double");
  // Tiny numbers underflow to 0 as in any JSON reader: then the key's own rule speaks.
  EXPECT_EQ(user_error([] { config_from_text(R"({"train":{"lr":1e-999}})", "c.json"); }),
            R"(c.json: "train.lr" must be > 0, got 0.0)");
}

TEST(ConfigLoad, RepeatedKeysNameTheKeyPath) {
  const std::string path = write_temp("dup.json", R"({"train": {"lr": 1e-3, "epochs": 2, "lr": 1e-4}})");
  EXPECT_EQ(user_error([&] { load_config(path, {}); }), path + R"(: duplicate key "train.lr" (a key may appear once in an object))");
  EXPECT_EQ(user_error([] { config_from_text(R"({"seed": 1, "data": {}, "seed": 2})", "c.json"); }),
            R"(c.json: duplicate key "seed" (a key may appear once in an object))");
  EXPECT_EQ(user_error([] { config_from_text(R"({"train": {"divergence": {"action": "stop", "action": "rollback"}}})", "c.json"); }),
            R"(c.json: duplicate key "train.divergence.action" (a key may appear once in an object))");
  // The same key in two different objects is fine.
  EXPECT_EQ(config_from_text(R"({"sampler": {"steps": 3}, "generate": {"steps": 4}})", "c.json").generate.steps, 4);
}

TEST(ConfigLoad, ADirectoryIsNotAConfigFile) {
  const std::string dir = ::testing::TempDir();
  EXPECT_EQ(user_error([&] { load_config(dir, {}); }), dir + ": is a directory, expected a JSON config file");
}

TEST(ConfigOverride, NumbersBeyondADoubleAndRepeatedKeysNameTheKey) {
  json j = config_defaults_json();
  EXPECT_EQ(user_error([&] { apply_override(j, "train.lr=1e999"); }),
            R"(--set train.lr=1e999: "train.lr" must be a finite number, got 1e999 (beyond the range of a double))");
  EXPECT_EQ(user_error([&] { apply_override(j, R"(train={"lr": 1e999})"); }),
            R"(--set train={"lr": 1e999}: "train.lr" must be a finite number, got 1e999 (beyond the range of a double))");
  EXPECT_EQ(user_error([&] { apply_override(j, "model.channels=[8,1e999]"); }),
            R"(--set model.channels=[8,1e999]: "model.channels[1]" must be a finite number, got 1e999 (beyond the range of a double))");
  EXPECT_EQ(user_error([&] { apply_override(j, R"(train={"lr": 1, "lr": 2})"); }),
            R"(--set train={"lr": 1, "lr": 2}: duplicate key "train.lr" (a key may appear once in an object))");
  EXPECT_EQ(j, config_defaults_json());
  // A string key takes the text as it is.
  apply_override(j, "output_dir=1e999");
  EXPECT_EQ(j["output_dir"], "1e999");
  EXPECT_EQ(user_error([&] { load_config(config_path("mnist.json"), {"train.lr=1e999"}); }),
            R"(--set train.lr=1e999: "train.lr" must be a finite number, got 1e999 (beyond the range of a double))");
}

// Issue 10 item 5: a tool flag and the config key it sets take the same values (--grad-clip 0 was
// accepted while sampler.grad_clip=0 is not).
TEST(ConfigFlags, AFlagIsCheckedByItsKeysRule) {
  EXPECT_EQ(user_error([] { config_from_flag("--grad-clip", "sampler.grad_clip", "0"); }),
            R"(option --grad-clip: "sampler.grad_clip" must be > 0, got 0)");
  EXPECT_EQ(user_error([] { config_from_flag("--n", "generate.n", "4097"); }),
            R"(option --n: "generate.n" must be <= 4096, got 4097)");
  EXPECT_EQ(user_error([] { config_from_flag("--n", "generate.n", "zero"); }),
            R"(option --n: "generate.n" must be an integer, got "zero")");
  EXPECT_EQ(user_error([] { config_from_flag("--steps", "generate.steps", "-3"); }),
            R"(option --steps: "generate.steps" must be >= 0, got -3)");
  EXPECT_EQ(user_error([] { config_from_flag("--step-size", "generate.step_size", "1e999"); }),
            R"(option --step-size: "generate.step_size" must be a finite number, got 1e999 (beyond the range of a double))");
  EXPECT_EQ(user_error([] { config_from_flag("--batch", "data.batch_size", "65537"); }),
            R"(option --batch: "data.batch_size" must be <= 65536, got 65537)");
  EXPECT_EQ(user_error([] { config_from_flag("--channels", "model.channels", "[]"); }),
            R"(option --channels: "model.channels" must not be empty)");
  EXPECT_EQ(user_error([] { config_from_flag("--seed", "seed", "-1"); }), R"(option --seed: "seed" must be >= 0, got -1)");

  EXPECT_EQ(config_from_flag("--grad-clip", "sampler.grad_clip", "0.25").sampler.grad_clip, 0.25);
  EXPECT_EQ(config_from_flag("--n", "generate.n", "4096").generate.n, 4096);
  EXPECT_EQ(config_from_flag("--seed", "seed", "18446744073709551615").seed, UINT64_MAX);
  EXPECT_EQ(config_from_flag("--langevin-steps", "sampler.steps", "0").sampler.steps, 0);
  EXPECT_EQ(config_from_flag("--channels", "model.channels", "[4,8]").model.channels, (std::vector<int>{4, 8}));
  // Only the one key changes.
  Config want;
  want.generate.noise = 0;
  EXPECT_EQ(config_from_flag("--noise", "generate.noise", "0"), want);
}

TEST(ConfigFlags, EveryFlagAcceptsExactlyWhatItsKeyAccepts) {
  // The flags of ebm_sample and ebm_bench and their keys, over values on both sides of each bound.
  const std::pair<const char*, const char*> flags[] = {
      {"--n", "generate.n"},           {"--steps", "generate.steps"},   {"--step-size", "generate.step_size"},
      {"--noise", "generate.noise"},   {"--grad-clip", "sampler.grad_clip"}, {"--seed", "seed"},
      {"--batch", "data.batch_size"},  {"--langevin-steps", "sampler.steps"}, {"--channels", "model.channels"}};
  const char* values[] = {"-1", "0", "1e-9", "0.5", "1", "2", "4096", "4097", "65536", "65537", "1e6", "2147483648",
                          "1e999", "abc", "[4,8]", "[]", "[0]", "true"};
  for (const auto& [flag, key] : flags)
    for (const char* v : values) {
      SCOPED_TRACE(std::string(flag) + " " + v);
      json j = json::object();
      const bool by_set = user_error([&] { apply_override(j, std::string(key) + "=" + v); config_from_json(j, "s"); }) == "(no error)";
      const bool by_flag = user_error([&] { config_from_flag(flag, key, v); }) == "(no error)";
      EXPECT_EQ(by_flag, by_set);
    }
  // And the bound chosen for both: generate.n stops at kMaxGenerateN (--n allowed 2^20 before).
  EXPECT_EQ(kMaxGenerateN, 4096);
}

// Found by fuzzing (tests/fuzz/regressions/config): user text in a message stays on one line; text that is
// not UTF-8 is refused where JSON cannot hold it (it used to escape as an internal JSON error, or pass and
// break the run when its config was printed); nesting that would overflow the stack when printed is refused.
TEST(ConfigFuzzFindings, MessagesStayOnOneLineAndBadTextIsRefused) {
  test::expect_user_error([] { config_from_text("{\"a\\nb\": 1}", "x.json"); }, {"x.json", "unknown key \"a\\nb\""});
  test::expect_user_error([] { config_from_text("{}", "x.json", {"train.lr=a\nb"}); }, {"train.lr=a\\nb", "\"train.lr\""});
  test::expect_user_error([] { config_from_text("{}", "x.json", {"seed=\xff"}); }, {"\"seed\"", "not valid UTF-8"});
  test::expect_user_error([] { config_from_text("{}", "x.json", {"output_dir=runs/\xff"}); },
                          {"\"output_dir\"", "not valid UTF-8"});
  const std::string deep = "{\"model\": {\"channels\": " + std::string(50000, '[') + std::string(50000, ']') + "}}";
  test::expect_user_error([&] { config_from_text(deep, "deep.json"); }, {"deep.json", "nested deeper than 64 levels"});
  test::expect_user_error([&] { config_from_text("{}", "x.json", {"model.channels=" + std::string(50000, '[') +
                                                                  std::string(50000, ']')}); },
                          {"\"model.channels\" must be an array"});
}
