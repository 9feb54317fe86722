// ebm_sample: pictures of what a model learned — Langevin chains from uniform noise (or --init images)
// under a checkpoint's energy, a grid labelled with each sample's energy, and optionally the chains'
// trajectory from noise to digit. With --noise 0 and --init the result is deterministic.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "host/eval/backend_factory.hpp"
#include "host/eval/jem_eval.hpp"
#include "host/eval/sampling.hpp"
#include "host/eval/scoring.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/config.hpp"
#include "host/io/npy.hpp"
#include "host/io/output_files.hpp"
#include "host/io/png_image.hpp"
#include "host/tools/cli.hpp"
#include "host/tools/tool_main.hpp"

using namespace ebm;

namespace {

constexpr const char* kUsage =
    "usage: ebm_sample --checkpoint DIR [--n 16] [--steps N] [--step-size S] [--noise S] [--grad-clip G]\n"
    "                  [--seed N] [--init X.npy|buffer] [--out samples.png] [--npy out.npy]\n"
    "                  [--trajectory traj.png [--every K]] [--class Y|all] [--backend auto|cpu|cuda]\n"
    "Runs Langevin chains under the checkpoint's energy E = -f and writes a grid of the samples, each\n"
    "labelled with its energy. Defaults come from the checkpoint's config: n, steps, step size and noise\n"
    "from `generate`, grad clip from `sampler`, seed from `seed`. Chains start from uniform noise in [-1,1],\n"
    "or from the images of --init (.npy float32 in [-1,1] or uint8, or IDX; 28x28 images are padded as in\n"
    "training; --n then takes the first n, default all). --noise 0 with --init is deterministic.\n"
    "  --init buffer      start from the checkpoint's own replay buffer (train_state.safetensors): --n chains\n"
    "                     (default generate.n) from its newest images, newest first; where the run kept one\n"
    "                     ring per class (buffer.per_class), chains of class Y start from class Y's ring\n"
    "                     (--class; without it the rings in turn, the chains then on E(x) = -logsumexp f)\n"
    "  --out PATH         the sample grid (default samples.png; a build without libpng skips the default\n"
    "                     grid with a warning, and refuses a named --out or --trajectory)\n"
    "  --npy PATH         the final samples as float32 [n,1,H,W]\n"
    "  --trajectory PATH  up to 8 chains (rows) every K steps (columns, step number above each)\n"
    "  --every K          snapshot period for --trajectory (default: steps/10, rounded up)\n"
    "  --class Y|all      (a checkpoint with one output per class, train.objective \"jem\") every chain samples\n"
    "                     E(x, Y) = -f_Y(x), digits of class Y; `all`: chain i takes class i*K/n, so --n 100\n"
    "                     draws a 10x10 grid with one row per class. Without it such a model samples\n"
    "                     E(x) = -logsumexp f(x)\n"
    "  --backend B        auto (CUDA when a device is present), cpu or cuda (default auto)\n"
    "--n, --steps, --step-size, --noise, --grad-clip and --seed take what their config keys take\n"
    "(generate.n 1..4096, generate.steps >= 0, generate.step_size >= 0, generate.noise >= 0,\n"
    "sampler.grad_clip > 0, seed >= 0). Every output path is checked before any work starts.\n";

constexpr const char* kTool = "ebm_sample";

struct Flags {
  std::string checkpoint, init, out = "samples.png", npy, trajectory, backend = "auto", klass;
  bool out_named = false;  // --out given: a build without libpng refuses it; the default grid is skipped instead
  std::optional<int> n, steps;
  std::optional<long long> every;
  std::optional<uint64_t> seed;
  std::optional<double> step_size, noise, grad_clip;
};

// Usage problems (unknown flags, bad values, a missing --checkpoint, an output that cannot be written)
// throw UserError from here: exit 2, before anything is read or written.
Flags parse(int argc, char** argv, bool& help) {
  Args a(argc, argv,
         {"--checkpoint", "--n", "--steps", "--step-size", "--noise", "--grad-clip", "--seed", "--init", "--out",
          "--npy", "--trajectory", "--every", "--backend", "--class"},
         {"--help"});
  help = a.has("--help");
  Flags f;
  if (help) return f;
  if (!a.positional().empty()) user_fail("unexpected argument '", a.positional()[0], "' (see --help)");
  f.checkpoint = a.str("--checkpoint", "");
  if (f.checkpoint.empty()) user_fail("--checkpoint DIR is required (see --help)");
  f.init = a.str("--init", "");
  f.out = a.str("--out", f.out);
  f.out_named = a.has("--out");
  f.npy = a.str("--npy", "");
  f.trajectory = a.str("--trajectory", "");
  f.backend = a.str("--backend", f.backend);
  f.klass = a.str("--class", "");
  if (a.has("--class") && f.klass != "all" &&
      (f.klass.empty() || f.klass.size() > 4 || f.klass.find_first_not_of("0123456789") != std::string::npos))
    user_fail("option --class expects a class number (0, 1, ...) or all, got \"", f.klass, "\"");
  if (f.backend != "auto" && f.backend != "cpu" && f.backend != "cuda")
    user_fail("option --backend expects auto, cpu or cuda, got \"", f.backend, "\"");
  if (auto c = flag_as_key(a, "--n", "generate.n")) f.n = c->generate.n;
  if (auto c = flag_as_key(a, "--steps", "generate.steps")) f.steps = c->generate.steps;
  if (auto c = flag_as_key(a, "--step-size", "generate.step_size")) f.step_size = c->generate.step_size;
  if (auto c = flag_as_key(a, "--noise", "generate.noise")) f.noise = c->generate.noise;
  if (auto c = flag_as_key(a, "--grad-clip", "sampler.grad_clip")) f.grad_clip = c->sampler.grad_clip;
  if (auto c = flag_as_key(a, "--seed", "seed")) f.seed = c->seed;
  if (a.has("--every")) f.every = a.integer("--every", 0, 1, std::numeric_limits<int>::max());
  if (f.every && f.trajectory.empty()) user_fail("--every sets the --trajectory snapshot period: give --trajectory PATH too");

  if (f.out_named) require_png_output("--out", f.out);
  if (!f.trajectory.empty()) require_png_output("--trajectory", f.trajectory);
  std::vector<OutputFile> outputs;
  if (f.out_named || png_available()) outputs.push_back({"--out", f.out, {".png"}});
  if (!f.npy.empty()) outputs.push_back({"--npy", f.npy, {".npy"}});
  if (!f.trajectory.empty()) outputs.push_back({"--trajectory", f.trajectory, {".png"}});
  check_output_files(outputs, {{"--init", f.init == "buffer" ? std::string() : f.init}});  // buffer: the checkpoint's
  return f;
}

int run(const Flags& f) {
  const auto t0 = std::chrono::steady_clock::now();
  const Model model = load_model(f.checkpoint);
  const Config& cfg = model.config;

  SamplerParams p = generate_params(cfg);
  if (f.steps) p.steps = int(*f.steps);
  if (f.step_size) p.step_size = float(*f.step_size);
  if (f.noise) p.noise = float(*f.noise);
  if (f.grad_clip) p.grad_clip = float(*f.grad_clip);
  const uint64_t seed = f.seed.value_or(cfg.seed);

  Tensor start;
  std::string from;
  const int K = model.net.outputs;
  std::vector<int32_t> classes;
  if (!f.klass.empty()) {
    if (K < 2)
      user_fail("--class: ", f.checkpoint, " is an energy net with one output; class-conditional samples need a model ",
                "with one output per class (train.objective \"jem\")");
    if (f.klass != "all" && std::stoi(f.klass) >= K)
      user_fail("--class ", f.klass, ": ", f.checkpoint, " has classes 0 to ", K - 1);
  }
  auto classes_for = [&](int n) {  // --class all: chain i takes class i*K/n; --class Y: every chain Y
    if (f.klass == "all") return conditional_classes(n, K);
    return f.klass.empty() ? std::vector<int32_t>{} : std::vector<int32_t>(size_t(n), int32_t(std::stoi(f.klass)));
  };
  if (f.init == "buffer") {
    const ReplayBufferImages b = read_replay_buffer(f.checkpoint, model.net);
    const int n = int(f.n.value_or(cfg.generate.n));
    classes = classes_for(n);
    start = buffer_start(b, n, classes, K, f.checkpoint);
    from = "the replay buffer" + std::string(b.classes.empty() ? "" : " (a ring per class)");
  } else if (!f.init.empty()) {
    std::vector<std::string> warnings;
    start = load_images_for_net(f.init, model.net, warnings);
    for (const std::string& w : warnings) print_warning(kTool, w);
    const int64_t have = start.shape[0];
    if (f.n && *f.n > have) user_fail("--n ", *f.n, " but ", f.init, " holds ", have, " images");
    if (!f.n && have > kMaxGenerateN)
      user_fail(f.init, " holds ", have, " images, more chains than ebm_sample runs (at most ", kMaxGenerateN,
                ", the bound of generate.n): give --n N to refine the first N");
    if (f.n) {
      start.shape[0] = *f.n;
      start.data.resize(size_t(Tensor::numel_of(start.shape)));
    }
    from = f.init;
  } else {
    start = uniform_start(int(f.n.value_or(cfg.generate.n)), model.net, seed);
    from = "uniform noise";
  }
  const int n = int(start.shape[0]);
  if (classes.empty()) classes = classes_for(n);

  int every = 0;
  if (!f.trajectory.empty()) {
    // 64-bit: steps may be up to INT_MAX (generate.steps' bound), and steps + 9 must not wrap.
    const int64_t steps = p.steps;
    every = int(f.every.value_or(std::max<int64_t>(1, (steps + 9) / 10)));
    const int64_t snapshots = (steps + every - 1) / every + 1;
    if (snapshots > kMaxSnapshots)
      user_fail("--every ", every, " gives ", snapshots, " snapshots of ", steps, " steps; a trajectory picture holds at most ",
                kMaxSnapshots, " (use --every ", (steps + kMaxSnapshots - 2) / (kMaxSnapshots - 1), " or more)");
  }

  auto backend = make_backend(f.backend, tool_engine_options(model));
  backend->set_params(model.params);
  std::printf("backend: %s\n", backend->describe().c_str());
  std::printf("checkpoint: %s (%lld parameters, input %dx%d)\n", f.checkpoint.c_str(), (long long)model.net.num_params,
              model.net.in_h, model.net.in_w);
  std::printf("sampling %d chains x %d steps from %s: step size %g, noise %g, grad clip %g, seed %llu%s\n", n, p.steps,
              from.c_str(), double(p.step_size), double(p.noise), double(p.grad_clip), (unsigned long long)seed,
              f.klass.empty() ? "" : f.klass == "all" ? ", each class in turn" : (", class " + f.klass).c_str());
  std::fflush(stdout);

  const SampleRun r = run_sample(*backend, std::move(start), p, seed, every, classes.empty() ? nullptr : &classes);
  const EnergyStats s = energy_stats(r.energy);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("energy (%s) of the samples: mean %.6g, min %.6g, max %.6g  (%.1f s)\n",
              model.net.outputs == 1 ? "E = -f" : classes.empty() ? "E = -logsumexp f" : "E = -logsumexp f; the chains ran on -f_y",
              s.mean, s.min, s.max, secs);
  if (const std::string w = non_finite_energies(r.energy, "the samples"); !w.empty()) print_warning(kTool, w);

  if (OptionalPictures(kTool, "the sample grid " + f.out).enabled(std::cerr)) {
    const Image grid = sample_grid(r.x, r.energy);
    write_png(f.out, grid);
    std::printf("wrote %s (%dx%d, %d samples)\n", f.out.c_str(), grid.width, grid.height, n);
  }
  if (!f.npy.empty()) {
    write_npy(f.npy, r.x);
    std::printf("wrote %s %s float32\n", f.npy.c_str(), shape_str(r.x.shape).c_str());
  }
  if (!f.trajectory.empty()) {
    std::printf("trajectory, mean energy over the %d chains:", n);
    for (size_t k = 0; k < r.snapshot_steps.size(); ++k)
      std::printf("%s step %d: %.4g", k ? "," : "", r.snapshot_steps[k], r.snapshot_mean_energy[k]);
    std::printf("\n");
    const Image traj = trajectory_image(r.trajectory, r.snapshot_steps);
    write_png(f.trajectory, traj);
    std::printf("wrote %s (%dx%d: %d chains, a snapshot every %d steps)\n", f.trajectory.c_str(), traj.width,
                traj.height, std::min(n, 8), every);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ebm::tool_main(kTool, kUsage, argc, argv, parse, run); }
