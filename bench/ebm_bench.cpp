// ebm_bench: times the seed's Langevin step and training step on one backend; one JSON line out.
//   ebm_bench [--backend cpu|cuda|auto] [--batch 128] [--langevin-steps 100] [--channels [16,32,64,64]]
//             [--iters 10] [--warmup 2] [--langevin fused|layers|both] [--chain auto|resident|tiled|generic|all]
// Train step: --warmup steps, then --iters steps timed as one run ending in a read-back (the mean; no host
// sync between steps, as in training). Langevin step: the median over --iters back-to-back pairs of a 2k-step and
// a k-step chain of their difference / k, so sample()'s upload, download and sync cancel. JSON also says which backend ran and whether CUDA graphs
// were on ("graphs": a failed capture falls back to eager, which the device check must not time unknowingly),
// and which Langevin path ran ("langevin": "layers" or "fused", cuda.langevin; a net past the fused kernel's
// budget runs "layers"). On cuda the default times both paths: the top-level figures are the per-layer path's
// (the config's default), "fused" holds the fused chain's, "fused_speedup" the ratios. "chain" names the fused
// kernel that ran (cuda.chain; engine/langevin_chain_plan.hpp); --chain all times each, under "chains".
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.hpp"  // cpu_kernel_isa
#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/config.hpp"
#include "host/tools/cli.hpp"
#include "host/tools/tool_main.hpp"
#include "nlohmann/json.hpp"

using namespace ebm;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kUsage =
    "usage: ebm_bench [--backend cpu|cuda|auto] [--batch 128] [--langevin-steps 100] [--channels [16,32,64,64]]\n"
    "                 [--iters 10] [--warmup 2] [--langevin fused|layers|both] [--chain auto|resident|tiled|generic|all]\n"
    "Times one training step (Langevin chains, loss, Adam) and one Langevin step of the seed's network on\n"
    "one backend, printed as one JSON line: after --warmup steps (at least 2: the eager first step and the\n"
    "CUDA graph capture are never timed), --iters training steps as one run ending in one read-back; the\n"
    "Langevin step as the median over --iters pairs of a k- and a 2k-step chain, back to back, of their\n"
    "difference over k, k = min(--langevin-steps, 20) (null when timing noise hides it, or with 0 steps).\n"
    "--batch, --langevin-steps\n"
    "and --channels set (and take what is allowed for) data.batch_size, sampler.steps and model.channels;\n"
    "the rest is the default config. epoch_s_mnist extrapolates to one epoch of 60,000 images.\n"
    "--langevin (cuda; default both): the per-layer Langevin path, the fused chain kernel (cuda.langevin), or\n"
    "both, the fused one's figures under \"fused\"; \"langevin\" says which path ran.\n"
    "--chain (with a fused chain; default auto): which fused kernel (cuda.chain); all: each of resident, tiled\n"
    "and generic, their figures under \"chains\"; \"chain\" says which kernel ran (a net a kernel does not take runs\n"
    "the next one, as training would).\n";

// The MNIST training set's size: an epoch is ceil(kMnistTrain / batch) steps.
constexpr int64_t kMnistTrain = 60000;

struct Flags {
  std::string backend = "cpu";
  Config config;  // the defaults with --batch, --langevin-steps and --channels applied
  int iters = 10, warmup = 2;
  std::string langevin = "both";  // layers | fused | both (cuda); the cpu backend runs per layer
  std::string chain = "auto";     // auto | resident | tiled | generic | all: the fused kernel (cuda.chain)
};

Flags parse(int argc, char** argv, bool& help) {
  Args a(argc, argv, {"--backend", "--batch", "--langevin-steps", "--iters", "--warmup", "--channels", "--langevin", "--chain"},
         {"--help"});
  help = a.has("--help");
  Flags f;
  if (help) return f;
  if (!a.positional().empty()) user_fail("unexpected argument '", a.positional()[0], "' (see --help)");
  f.backend = a.str("--backend", f.backend);
  if (f.backend != "auto" && f.backend != "cpu" && f.backend != "cuda")
    user_fail("option --backend expects auto, cpu or cuda, got \"", f.backend, "\"");
  // Each flag is read and bounded by its config key's own rule, so the bench runs only what training can.
  if (a.has("--batch")) f.config.data.batch_size = config_from_flag("--batch", "data.batch_size", a.str("--batch", "")).data.batch_size;
  if (a.has("--langevin-steps"))
    f.config.sampler.steps = config_from_flag("--langevin-steps", "sampler.steps", a.str("--langevin-steps", "")).sampler.steps;
  if (a.has("--channels"))
    f.config.model.channels = config_from_flag("--channels", "model.channels", a.str("--channels", "")).model.channels;
  f.langevin = a.str("--langevin", f.langevin);
  if (f.langevin != "layers" && f.langevin != "fused" && f.langevin != "both")
    user_fail("option --langevin expects fused, layers or both, got \"", f.langevin, "\"");
  if (f.backend == "cpu" && f.langevin == "fused") user_fail("--langevin fused needs --backend cuda (or auto)");
  f.chain = a.str("--chain", f.chain);
  if (f.chain != "all") f.config.cuda.chain = config_from_flag("--chain", "cuda.chain", "\"" + f.chain + "\"").cuda.chain;
  if (f.chain != "auto" && f.langevin == "layers") user_fail("--chain ", f.chain, " needs a fused chain (--langevin fused or both)");
  f.iters = int(a.integer("--iters", f.iters, 1, 100000));
  f.warmup = int(a.integer("--warmup", f.warmup, 2, 100000));  // at least the eager first step and the capture
  return f;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// One backend's figures, with cuda.langevin fused or not, and cuda.chain `chain` (a config value).
nlohmann::json measure(const Flags& f, bool fused, const std::string& chain) {
  Config config = f.config;
  config.cuda.chain = chain;
  EngineOptions opt = engine_options_for(config);
  opt.buffer_initial = opt.batch_size;
  opt.fused_langevin = fused;
  const NetSpec& net = opt.net;
  auto be = make_backend(f.backend, opt);

  // A synthetic training set: timing does not depend on pixel values.
  Tensor train({int64_t(opt.batch_size) * (f.iters + std::max(f.warmup, 2)), net.in_c, net.in_h, net.in_w});
  Rng(1, RngStream::kInit).uniform(train.ptr(), train.numel(), -1, 1);
  be->set_train_data(train);
  be->begin_epoch(0);

  // Training steps: the warm-up (the first step loads kernels and cuDNN engines, the second captures the
  // graph), then `iters` steps timed as one run with a single read-back at the end — as training runs them
  // (metrics are drained every train.log_every steps), with no per-step host sync in the measurement.
  const int warmup = f.warmup;  // at least 2 (parse_flags): never the eager first step or the capture
  for (int i = 0; i < warmup; ++i) be->train_step(i);
  be->drain_metrics();
  const auto t0 = Clock::now();
  for (int i = 0; i < f.iters; ++i) be->train_step(warmup + i);
  be->drain_metrics();
  const double ms_step = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / f.iters;

  // Langevin steps alone: sample() also uploads x, downloads it and synchronises, a fixed cost per call, so
  // chains of k and 2k steps are timed and the per-step figure is their difference over k: the median over `iters`
  // pairs, after the warm-up, each pair a k-step and a 2k-step call back to back (the machine's speed drifts on a
  // shared host: a pair sees one speed, where all the short calls and then all the long ones saw two). With
  // --langevin-steps 0 there is nothing to time.
  const int k = std::min(opt.sampler.steps, 20);
  nlohmann::json ms_langevin = nullptr;
  if (k > 0) {
    Tensor x({opt.batch_size, net.in_c, net.in_h, net.in_w});
    auto chain_ms = [&](int steps, int i) {
      SamplerParams sp = opt.sampler;
      sp.steps = steps;
      Rng(2 + i, RngStream::kInit).uniform(x.ptr(), x.numel(), -1, 1);
      const auto t = Clock::now();
      be->sample(x, sp, 7 + i);
      return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    };
    std::vector<double> diff;
    for (int i = 0; i < std::max(f.warmup, 2) + f.iters; ++i) {  // 2: the second call of a shape captures
      const double short_ms = chain_ms(k, i), long_ms = chain_ms(2 * k, i);
      if (i >= std::max(f.warmup, 2)) diff.push_back(long_ms - short_ms);
    }
    const double d = median(diff);
    if (d > 0) ms_langevin = d / k;  // else timing noise hides it: no figure
  }
  const int64_t epoch_steps = (kMnistTrain + opt.batch_size - 1) / opt.batch_size;
  const BackendFacts facts = be->facts();
  nlohmann::json out = {{"backend", be->describe()},
                        {"kind", backend_name(facts.kind)},
                        // the CPU kernels' instruction set, and the vector-kernel copy chosen at run time where it
                        // is another (engine/cpu/cpu_backend.hpp); null on the GPU
                        {"cpu_kernels", facts.kind == BackendKind::kCpu ? nlohmann::json(cpu_kernel_isa()) : nullptr},
                        {"graphs", facts.graphs},
                        {"graph_captures", facts.graph_captures},
                        {"deterministic", facts.deterministic},
                        {"langevin", facts.fused_langevin ? "fused" : "layers"},
                        {"chain", facts.fused_langevin ? nlohmann::json(chain_kernel_name(facts.chain_kernel)) : nullptr},
                        {"batch", opt.batch_size},
                        {"langevin_steps", opt.sampler.steps},
                        {"channels", f.config.model.channels},
                        {"params", net.num_params},
                        {"iters", f.iters},
                        {"warmup", std::max(f.warmup, 2)},
                        {"ms_per_train_step", ms_step},
                        {"ms_per_langevin_step", ms_langevin},
                        {"epoch_steps_mnist", epoch_steps},
                        {"epoch_s_mnist", ms_step * double(epoch_steps) / 1000.0}};
  return out;
}

int run(const Flags& f) {
  const std::string chain = f.chain == "all" ? "auto" : f.chain;
  nlohmann::json out;
  if (f.langevin != "both") {
    out = measure(f, f.langevin == "fused", chain);
  } else {
    out = measure(f, false, chain);
    if (out["kind"] == "cuda") {  // the cpu backend has one path
      nlohmann::json fused = measure(f, true, chain);
      auto ratio = [&](const char* key) -> nlohmann::json {
        if (!out[key].is_number() || !fused[key].is_number() || fused[key].get<double>() <= 0) return nullptr;
        return out[key].get<double>() / fused[key].get<double>();
      };
      out["fused_speedup"] = {{"train_step", ratio("ms_per_train_step")}, {"langevin_step", ratio("ms_per_langevin_step")}};
      out["fused"] = {{"langevin", fused["langevin"]}, {"chain", fused["chain"]}, {"backend", fused["backend"]},
                      {"graphs", fused["graphs"]}, {"ms_per_train_step", fused["ms_per_train_step"]},
                      {"ms_per_langevin_step", fused["ms_per_langevin_step"]}, {"epoch_s_mnist", fused["epoch_s_mnist"]}};
    }
  }
  if (f.chain == "all" && out["kind"] == "cuda") {
    for (const char* k : {"resident", "tiled", "generic"}) {
      const nlohmann::json m = measure(f, true, k);
      out["chains"][k] = {{"chain", m["chain"]}, {"langevin", m["langevin"]}, {"graphs", m["graphs"]},
                          {"ms_per_train_step", m["ms_per_train_step"]},
                          {"ms_per_langevin_step", m["ms_per_langevin_step"]}};
    }
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return tool_main("ebm_bench", kUsage, argc, argv, parse, run); }
